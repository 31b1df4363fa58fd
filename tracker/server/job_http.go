package server

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
)

// SeedJob returns the job with id as GET /v1/seed/{id} does; ErrNotFound
// for a job the tracker does not know (never created, pruned, or created
// before the tracker restarted: jobs live in memory).
func (s *Server) SeedJob(id string) (tracker.SeedJob, error) {
	j := s.seedJobs
	j.mu.Lock()
	nj := j.byID[id]
	j.mu.Unlock()
	if nj == nil {
		return tracker.SeedJob{}, fmt.Errorf("%w: no seed job %q on this tracker (it expired, or the tracker restarted: jobs are kept in memory)", tracker.ErrNotFound, truncateMsg(id))
	}
	return j.snapshot(nj), nil
}

// SeedJobs lists the jobs the tracker keeps, newest first, for GET
// /v1/status.
func (s *Server) SeedJobs() []tracker.SeedJobStatus {
	j := s.seedJobs
	j.mu.Lock()
	order := slices.Clone(j.order)
	j.mu.Unlock()
	out := make([]tracker.SeedJobStatus, 0, len(order))
	for i := len(order) - 1; i >= 0 && len(out) < 100; i-- {
		sj := j.snapshot(order[i])
		st := tracker.SeedJobStatus{ID: sj.ID, State: sj.State, BlobsTotal: len(sj.Blobs), Error: sj.Error}
		if len(sj.Images) > 0 {
			st.Image = sj.Images[0].Ref
		}
		for _, b := range sj.Blobs {
			if b.State == tracker.BlobDone {
				st.BlobsDone++
			}
		}
		out = append(out, st)
	}
	return out
}

// snapshot reports a job now: its blobs' states, the bytes the seeder has
// of each and the live agents holding them. A job waiting for replicas is
// settled here once they hold every blob.
func (j *jobs) snapshot(nj *job) tracker.SeedJob {
	now := j.s.clock.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	out := tracker.SeedJob{
		ID: nj.id, State: nj.state, Error: nj.err, Replicas: nj.req.Replicas,
		Images: slices.Clone(nj.images), Blobs: make([]tracker.SeedBlob, len(nj.tasks)),
		Created: nj.created.UTC(), PinnedUntil: nj.pinUntil.UTC(),
	}
	if out.Images == nil {
		out.Images = []tracker.SeedImage{}
		for _, img := range nj.req.Images {
			out.Images = append(out.Images, tracker.SeedImage{Ref: img})
		}
	}
	ready := len(nj.tasks) > 0
	for i, t := range nj.tasks {
		d := t.spec.src.Digest
		b := tracker.SeedBlob{Digest: d, Size: t.spec.size, State: t.state, Error: t.err}
		switch t.state {
		case tracker.BlobDone:
			b.Bytes = b.Size
		case tracker.BlobFetching:
			b.Bytes = j.s.seededBytes(d)
		}
		if nj.req.Replicas > 0 {
			b.Holders = j.s.holders(d, now)
			ready = ready && b.Holders >= nj.req.Replicas
		}
		out.Blobs[i] = b
	}
	if nj.state == jobFetched {
		if ready {
			j.settle(nj, nil)
		}
		out.State = tracker.JobPreheat
		if ready {
			out.State = tracker.JobDone
		}
	}
	if !nj.finished.IsZero() {
		out.Finished = nj.finished.UTC()
	}
	return out
}

// seededBytes is how much of d the seeder has reported, by whole pieces.
func (s *Server) seededBytes(d digest.Digest) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.infos[d]
	if e == nil || e.info == nil {
		return 0
	}
	return min(e.info.Size, int64(len(e.info.Pieces))*e.info.PieceSize)
}

// holders counts the live agents, not the seeder, that hold all of d.
func (s *Server) holders(d digest.Digest, now time.Time) int {
	s.swarm.mu.Lock()
	defer s.swarm.mu.Unlock()
	n := 0
	for _, h := range s.swarm.blobs[d] {
		if h.complete && !h.peer.seeder && now.Sub(h.seen) < s.swarm.ttl {
			n++
		}
	}
	return n
}

// tokenRole tells which kind of token r carries.
type tokenRole int

const (
	roleNone tokenRole = iota
	roleCluster
	roleSeed
)

func (s *Server) roleOf(r *http.Request) tokenRole {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		tok = h // Harbor's auth header is sent as written
	}
	sum := sha256.Sum256([]byte(tok))
	switch {
	case tok == "":
		return roleNone
	case s.known(sum):
		return roleCluster
	case s.seedJobs.knows(sum):
		return roleSeed
	}
	return roleNone
}

// seedAuth admits seed tokens to next, and cluster tokens too when
// clusterOK (reading jobs). Each refusal says why.
func (s *Server) seedAuth(clusterOK bool, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch s.roleOf(r) {
		case roleSeed:
			next(w, r)
		case roleCluster:
			if clusterOK {
				next(w, r)
				return
			}
			s.writeError(w, fmt.Errorf("%w: this is a cluster token, for agents; seed jobs need a seed token (the tracker's --seed-token-file)", tracker.ErrForbidden))
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoal-tracker"`)
			s.writeError(w, fmt.Errorf("%w: missing or wrong seed token", tracker.ErrUnauthorized))
		}
	})
}

// seedTokenRefusal is what a seed token gets on the agents' routes.
func seedTokenRefusal() error {
	return fmt.Errorf("%w: a seed token may only create and read seed jobs (/v1/seed); agents need the cluster token", tracker.ErrForbidden)
}

func (s *Server) handleSeedCreate(w http.ResponseWriter, r *http.Request) {
	req, err := tracker.DecodeSeedRequest(http.MaxBytesReader(w, r.Body, tracker.MaxRequestBody))
	if err != nil {
		s.writeError(w, requestError(err))
		return
	}
	job, err := s.CreateSeedJob(req)
	if err != nil {
		s.writeError(w, err)
		return
	}
	w.Header().Set("Location", "/v1/seed/"+job.ID)
	s.writeJSON(w, http.StatusAccepted, job)
}

func (s *Server) handleSeedGet(w http.ResponseWriter, r *http.Request) {
	job, err := s.SeedJob(r.PathValue("id"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, job)
}

// seedRoutes adds the seed API and the webhooks to mux.
func (s *Server) seedRoutes(mux *http.ServeMux) {
	mux.Handle("POST /v1/seed", s.seedAuth(false, s.handleSeedCreate))
	mux.Handle("GET /v1/seed/{id}", s.seedAuth(true, s.handleSeedGet))
	mux.Handle("POST /v1/webhooks/distribution", s.webhookAuth(sourceDistribution, s.handleDistribution))
	mux.Handle("POST /v1/webhooks/harbor", s.webhookAuth(sourceHarbor, s.handleHarbor))
}
