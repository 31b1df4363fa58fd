package server

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
)

// Preheating places each blob of a seed job with replicas K on K live
// agents besides the seeder, chosen by rendezvous hashing: every agent
// ranks by sha256(digest, peer ID), the K highest hold the blob. An agent
// that stops announcing drops out of the ranking after the peer TTL, and
// the next one in the order takes its place; an agent that joins moves
// only the blobs it now ranks among the K highest for. Agents learn their
// share in the answer to their announce and fetch it through the swarm.

// preheatPlan is every live agent's share, computed at most once per
// planEvery, so an announce costs a map lookup.
type preheatPlan struct {
	at     time.Time
	byPeer map[string][]tracker.PreheatItem
}

const planEvery = time.Second

// Preheat returns the blobs peer should fetch now (at most
// tracker.MaxPreheatItems): those it is placed on and does not hold. The
// answer to an API announce carries it.
func (s *Server) Preheat(peer string) []tracker.PreheatItem {
	j := s.seedJobs
	now := s.clock.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.plan.byPeer == nil || now.Sub(j.plan.at) >= planEvery || now.Before(j.plan.at) {
		j.plan = j.makePlan(now)
	}
	return j.plan.byPeer[peer]
}

// placement is one blob to place on replicas agents.
type placement struct {
	item     tracker.PreheatItem
	replicas int
}

// makePlan computes every agent's share. Caller holds j.mu.
func (j *jobs) makePlan(now time.Time) preheatPlan {
	plan := preheatPlan{at: now, byPeer: make(map[string][]tracker.PreheatItem)}
	want := make(map[digest.Digest]*placement)
	for _, nj := range j.order {
		if nj.req.Replicas == 0 || !now.Before(nj.pinUntil) || (nj.state != jobFetched && nj.state != tracker.JobDone) {
			continue
		}
		for _, t := range nj.tasks {
			d := t.spec.src.Digest
			if p := want[d]; p != nil {
				p.replicas = max(p.replicas, nj.req.Replicas)
				continue
			}
			want[d] = &placement{
				item:     tracker.PreheatItem{Digest: d, Size: t.spec.size, Registry: t.spec.src.Registry, Repo: t.spec.src.Repo},
				replicas: nj.req.Replicas,
			}
		}
	}
	if len(want) == 0 {
		return plan
	}
	agents, holds := j.s.liveAgents(now)
	for d, p := range want {
		for _, id := range Rendezvous(d, agents, p.replicas) {
			if holds[id][d] || len(plan.byPeer[id]) >= tracker.MaxPreheatItems {
				continue
			}
			plan.byPeer[id] = append(plan.byPeer[id], p.item)
		}
	}
	return plan
}

// liveAgents lists the peers that announced within the TTL, the seeder
// left out, and which blobs each holds whole.
func (s *Server) liveAgents(now time.Time) ([]string, map[string]map[digest.Digest]bool) {
	s.swarm.mu.Lock()
	defer s.swarm.mu.Unlock()
	seeders := make(map[string]bool)
	holds := make(map[string]map[digest.Digest]bool)
	for d, holders := range s.swarm.blobs {
		for id, h := range holders {
			if h.peer.seeder {
				seeders[id] = true
			}
			if h.complete && now.Sub(h.seen) < s.swarm.ttl {
				if holds[id] == nil {
					holds[id] = make(map[digest.Digest]bool)
				}
				holds[id][d] = true
			}
		}
	}
	var agents []string
	for id, p := range s.swarm.peers {
		if now.Sub(p.seen) < s.swarm.ttl && !seeders[id] {
			agents = append(agents, id)
		}
	}
	return agents, holds
}

// Rendezvous returns the k of agents that rank highest for d by
// sha256(d, agent): the same answer on every call for the same set, and
// removing one agent only moves what it held.
func Rendezvous(d digest.Digest, agents []string, k int) []string {
	type ranked struct {
		id    string
		score [sha256.Size]byte
	}
	rs := make([]ranked, len(agents))
	for i, id := range agents {
		rs[i] = ranked{id: id, score: sha256.Sum256([]byte(string(d) + "\x00" + id))}
	}
	slices.SortFunc(rs, func(a, b ranked) int { return -bytes.Compare(a.score[:], b.score[:]) })
	out := make([]string, 0, min(k, len(rs)))
	for _, r := range rs[:min(k, len(rs))] {
		out = append(out, r.id)
	}
	return out
}
