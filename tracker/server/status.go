package server

import (
	"bytes"
	"crypto/sha256"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
)

// seedJobLister is what a Server that runs seed jobs implements (a method
// SeedJobs on *Server, beside the jobs); Status lists them when it does.
type seedJobLister interface {
	SeedJobs() []tracker.SeedJobStatus
}

// Status reports what the tracker knows now, as GET /v1/status does: the
// swarm of every blob a live peer holds or the seeder fetches, and the live
// peers. It only reads: stale holders are left out, not dropped.
func (s *Server) Status() tracker.Status {
	now := s.clock.Now()
	st := tracker.Status{Time: now.UTC(), Swarms: []tracker.SwarmStatus{}, Agents: []tracker.AgentStatus{}}
	swarms := make(map[digest.Digest]*tracker.SwarmStatus)
	get := func(d digest.Digest) *tracker.SwarmStatus {
		sw := swarms[d]
		if sw == nil {
			sw = &tracker.SwarmStatus{Digest: d}
			swarms[d] = sw
		}
		return sw
	}

	s.swarm.mu.Lock()
	type agentCount struct {
		seeder          bool
		blobs, complete int
	}
	agents := make(map[string]*agentCount)
	for id, p := range s.swarm.peers {
		if now.Sub(p.seen) < s.swarm.ttl {
			agents[id] = &agentCount{blobs: len(p.digests)}
		}
	}
	for d, holders := range s.swarm.blobs {
		for id, h := range holders {
			if now.Sub(h.seen) >= s.swarm.ttl {
				continue
			}
			sw := get(d)
			sw.Holders++
			a := agents[id]
			if a == nil {
				continue
			}
			a.seeder = a.seeder || h.peer.seeder
			if h.complete {
				sw.Complete++
				a.complete++
			}
		}
	}
	ages := make(map[string]time.Duration, len(agents))
	for id := range agents {
		ages[id] = now.Sub(s.swarm.peers[id].seen)
	}
	s.swarm.mu.Unlock()

	s.mu.Lock()
	for d, e := range s.infos {
		if !e.seeding && swarms[d] == nil {
			continue
		}
		sw := get(d)
		sw.Seeding = e.seeding
		if e.info != nil {
			sw.SizeBytes = e.info.Size
		}
	}
	s.mu.Unlock()

	for _, sw := range swarms {
		st.Swarms = append(st.Swarms, *sw)
	}
	slices.SortFunc(st.Swarms, func(a, b tracker.SwarmStatus) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	if len(st.Swarms) > tracker.MaxStatusSwarms {
		st.SwarmsOmitted = len(st.Swarms) - tracker.MaxStatusSwarms
		st.Swarms = st.Swarms[:tracker.MaxStatusSwarms]
	}
	for id, a := range agents {
		st.Agents = append(st.Agents, tracker.AgentStatus{ID: id, Seeder: a.seeder, Blobs: a.blobs, Complete: a.complete, AgeSeconds: ages[id].Seconds()})
	}
	slices.SortFunc(st.Agents, func(a, b tracker.AgentStatus) int {
		if a.Seeder != b.Seeder {
			if a.Seeder {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	if l, ok := any(s).(seedJobLister); ok {
		st.SeedJobs = l.SeedJobs()
	}
	return st
}

func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, s.Status())
}

// statusPage serves GET /status, the page an operator watches a rollout
// on. A browser cannot send a bearer token, so the page takes the cluster
// token as the password of HTTP Basic authentication (any user name), or a
// bearer token like the API; without either it answers 401 with a Basic
// challenge, which makes the browser ask. The token never goes in a query
// string, where logs and browser history would keep it.
func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	_, pass, basic := r.BasicAuth()
	tok, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !basic {
		pass = tok
	}
	if !(basic || bearer) || !s.known(sha256.Sum256([]byte(pass))) {
		w.Header().Set("WWW-Authenticate", `Basic realm="shoal-tracker", charset="UTF-8"`)
		http.Error(w, "401 unauthorized: the status page takes the cluster token as the password", http.StatusUnauthorized)
		return
	}
	var buf bytes.Buffer
	if err := renderStatus(&buf, s.Status()); err != nil {
		s.log.Error("render status page", "error", err)
		http.Error(w, "rendering the status page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Write(buf.Bytes())
}
