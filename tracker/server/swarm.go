package server

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
)

// swarm remembers which peers hold which blobs. Expiry is lazy: a handout
// drops the stale holders of its blob, and an announce sweeps everything at
// most once per TTL, so memory stays bounded without a timer goroutine and a
// fake clock drives it all in tests.
type swarm struct {
	pace    func(peers int) (interval, ttl time.Duration) // Config.pace
	onPairs func(delta int)                               // keeps the peer-blob gauge in step
	rng     *rand.Rand                                    // nil: the global source; set: under mu, and handouts sorted first

	mu        sync.Mutex
	ttl       time.Duration // paced with the swarm's size on each announce
	interval  time.Duration // what announces are answered now
	blobs     map[digest.Digest]map[string]*holding
	peers     map[string]*announced // each peer's last announce
	lastSweep time.Time
	// oldest is, by blob, a time no holder was seen before (seen only
	// grows): expire skips the scan while none can be stale.
	oldest map[digest.Digest]time.Time
	// byID is, by blob, its holders in order of peer ID: a handout draws
	// from them without copying them (drawn), and a seeded one (rng) in
	// the same order every run, as map order is random by itself.
	byID map[digest.Digest]*ordered
}

// ordered are a blob's holders in order of peer ID, in handout's groups:
// complete peers and seeders first, the others rest.
type ordered struct{ first, rest []*holding }

// announced is what a peer listed last: an announce is its whole list, so
// a blob it leaves out is withdrawn.
type announced struct {
	digests []digest.Digest
	seen    time.Time
	sum     [32]byte   // sha256 of the announce's body; zero in process
	holds   []*holding // what the announce recorded, for touch
	zone    string     // the peer's zone, for its handouts (zone.go)
}

type holding struct {
	peer     *ident // shared by every blob of one announce; never mutated
	have     int
	complete bool
	seen     time.Time
	gone     bool // dropped from its blob's holders (touch then takes the full path)
}

type ident struct {
	id     string
	addrs  []string
	seeder bool
	zone   string
}

func newSwarm(pace func(int) (time.Duration, time.Duration), onPairs func(int)) *swarm {
	s := &swarm{pace: pace, onPairs: onPairs, blobs: make(map[digest.Digest]map[string]*holding), peers: make(map[string]*announced),
		oldest: make(map[digest.Digest]time.Time), byID: make(map[digest.Digest]*ordered)}
	s.interval, s.ttl = pace(0)
	return s
}

// announce records a validated announce made at now and returns the
// interval to tell its peer, paced by the peers listed. sum is the hash of
// its body, for touch.
func (s *swarm) announce(a tracker.Announce, now time.Time, sum [32]byte) time.Duration {
	who := &ident{id: a.Peer.ID, addrs: a.Peer.Addrs, seeder: a.Peer.Seeder, zone: a.Peer.Zone}
	s.mu.Lock()
	defer s.mu.Unlock()
	added := -s.withdraw(a, now)
	holds := make([]*holding, 0, len(a.Blobs))
	for _, b := range a.Blobs {
		holders := s.blobs[b.Digest]
		if holders == nil {
			holders = make(map[string]*holding)
			s.blobs[b.Digest] = holders
			s.oldest[b.Digest] = now
		} else if now.Before(s.oldest[b.Digest]) {
			s.oldest[b.Digest] = now // a clock that went back
		}
		if _, ok := holders[who.id]; !ok {
			added++
		}
		h := &holding{peer: who, have: b.Have, complete: b.Complete, seen: now}
		holders[who.id] = h
		s.place(b.Digest, h)
		holds = append(holds, h)
	}
	p := s.peers[a.Peer.ID]
	p.sum, p.holds, p.zone = sum, holds, a.Peer.Zone
	s.onPairs(added - s.sweep(now))
	return s.interval
}

// touch renews peer id's last announce as if it were sent again at now,
// when its body hashes to sum and it is still live, and returns the interval
// to tell it; false (and nothing done) otherwise. The cheap path of an
// agent's steady announces: nothing to decode.
func (s *swarm) touch(id string, sum [32]byte, now time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[id]
	if p == nil || p.sum != sum || now.Sub(p.seen) >= s.ttl {
		return 0, false
	}
	for _, h := range p.holds {
		if h.gone {
			return 0, false
		}
	}
	for _, h := range p.holds {
		h.seen = now
	}
	p.seen = now
	s.onPairs(-s.sweep(now))
	return s.interval, true
}

// sweep drops everything stale at most once per TTL, paces the interval by
// the peers listed, and returns how many (peer, blob) it dropped. Caller
// holds mu.
func (s *swarm) sweep(now time.Time) int {
	n := 0
	if now.Sub(s.lastSweep) >= s.ttl {
		s.lastSweep = now
		for d := range s.blobs {
			n += s.expire(d, now)
		}
		for id, p := range s.peers {
			if now.Sub(p.seen) >= s.ttl {
				delete(s.peers, id)
			}
		}
	}
	s.interval, s.ttl = s.pace(len(s.peers))
	return n
}

// peerTTL is how long a silent peer stays listed now.
func (s *swarm) peerTTL() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ttl
}

// listed reports whether id announced within the TTL before now.
func (s *swarm) listed(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[id]
	return p != nil && now.Sub(p.seen) < s.ttl
}

// withdraw drops the holdings of the blobs a's peer listed last time and
// leaves out now, records its new list, and returns how many it dropped.
// Caller holds mu.
func (s *swarm) withdraw(a tracker.Announce, now time.Time) int {
	digests := make([]digest.Digest, len(a.Blobs))
	for i, b := range a.Blobs {
		digests[i] = b.Digest
	}
	prev := s.peers[a.Peer.ID]
	s.peers[a.Peer.ID] = &announced{digests: digests, seen: now}
	if prev == nil {
		return 0
	}
	listed := make(map[digest.Digest]bool, len(digests))
	for _, d := range digests {
		listed[d] = true
	}
	n := 0
	for _, d := range prev.digests {
		if listed[d] {
			continue
		}
		if holders := s.blobs[d]; holders[a.Peer.ID] != nil {
			holders[a.Peer.ID].gone = true
			delete(holders, a.Peer.ID)
			s.unplace(d, a.Peer.ID)
			n++
			if len(holders) == 0 {
				s.drop(d)
			}
		}
	}
	return n
}

// expire drops the stale holders of d and returns how many. Caller holds mu.
func (s *swarm) expire(d digest.Digest, now time.Time) int {
	holders := s.blobs[d]
	if now.Sub(s.oldest[d]) < s.ttl {
		return 0 // none can be stale
	}
	n := 0
	oldest := now
	for id, h := range holders {
		if now.Sub(h.seen) >= s.ttl {
			h.gone = true
			delete(holders, id)
			s.unplace(d, id)
			n++
		} else if h.seen.Before(oldest) {
			oldest = h.seen
		}
	}
	s.oldest[d] = oldest
	if len(holders) == 0 {
		s.drop(d)
	}
	return n
}

// drop forgets blob d, which no one holds. Caller holds mu.
func (s *swarm) drop(d digest.Digest) {
	delete(s.blobs, d)
	delete(s.oldest, d)
	delete(s.byID, d)
}

// place records h in its blob's holders by ID, in place of the peer's
// earlier holding: where it was when its group stays (a peer announcing
// progress), else moved. Caller holds mu.
func (s *swarm) place(d digest.Digest, h *holding) {
	o := s.byID[d]
	if o == nil {
		o = &ordered{}
		s.byID[d] = o
	}
	g, other := &o.rest, &o.first
	if h.complete || h.peer.seeder {
		g, other = other, g
	}
	i, found := slices.BinarySearchFunc(*g, h.peer.id, byPeerID)
	if found {
		(*g)[i] = h
		return
	}
	if j, found := slices.BinarySearchFunc(*other, h.peer.id, byPeerID); found {
		*other = slices.Delete(*other, j, j+1)
	}
	*g = slices.Insert(*g, i, h)
}

// unplace removes peer id from d's holders by ID. Caller holds mu.
func (s *swarm) unplace(d digest.Digest, id string) {
	if o := s.byID[d]; o != nil {
		for _, g := range []*[]*holding{&o.first, &o.rest} {
			if i, found := slices.BinarySearchFunc(*g, id, byPeerID); found {
				*g = slices.Delete(*g, i, i+1)
			}
		}
	}
}

func byPeerID(h *holding, id string) int { return strings.Compare(h.peer.id, id) }

// drawn is a partial Fisher-Yates shuffle of g without self, as handout
// draws from a group, without moving g's elements: the few positions the
// draws moved are kept aside. It appends to out what the shuffle of a
// copy would, up to max.
func drawn(g []*holding, self string, out []tracker.Peer, max int, draw func(int) int) []tracker.Peer {
	skip, n := -1, len(g)
	if i, found := slices.BinarySearchFunc(g, self, byPeerID); found {
		skip, n = i, n-1
	}
	type moved struct {
		at int
		h  *holding
	}
	var aside []moved
	get := func(k int) *holding {
		for _, m := range aside {
			if m.at == k {
				return m.h
			}
		}
		if skip >= 0 && k >= skip {
			k++
		}
		return g[k]
	}
	set := func(k int, h *holding) {
		for i := range aside {
			if aside[i].at == k {
				aside[i].h = h
				return
			}
		}
		aside = append(aside, moved{k, h})
	}
	for i := 0; i < n && len(out) < max; i++ {
		j := i + draw(n-i)
		hi, hj := get(i), get(j)
		set(i, hj)
		set(j, hi)
		out = append(out, hj.handed(false))
	}
	return out
}

// handout returns at most max live holders of d other than self: complete
// peers and seeders first, then the others, each group in random order so
// that askers spread their load instead of all hitting the same peers. To
// a peer that announced a zone, the peers of its zone come first, with a
// few of other zones (zonedHandout).
func (s *swarm) handout(d digest.Digest, self string, max int, now time.Time) []tracker.Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onPairs(-s.expire(d, now))
	zone := ""
	if p := s.peers[self]; p != nil {
		zone = p.zone
	}
	draw := rand.IntN
	if s.rng != nil {
		draw = s.rng.IntN // a seeded tracker (the simulator's) hands out the same peers every run
	}
	o := s.byID[d]
	if o == nil {
		o = &ordered{} // nobody holds d: an empty handout, not null
	}
	if zone == "" {
		out := make([]tracker.Peer, 0, min(max, len(o.first)+len(o.rest)))
		out = drawn(o.first, self, out, max, draw)
		return drawn(o.rest, self, out, max, draw)
	}
	without := func(g []*holding) []*holding {
		out := make([]*holding, 0, len(g))
		for _, h := range g {
			if h.peer.id != self {
				out = append(out, h)
			}
		}
		return out
	}
	first, rest := without(o.first), without(o.rest)
	return zonedHandout(zone, first, rest, make([]tracker.Peer, 0, min(max, len(first)+len(rest))), max, draw)
}

// handed is h as a handout names it, with its zone or without (to a peer
// that announced none: an agent of a version before zones rejects the
// field).
func (h *holding) handed(zone bool) tracker.Peer {
	p := tracker.Peer{ID: h.peer.id, Addrs: h.peer.addrs, Seeder: h.peer.seeder, Complete: h.complete, Have: h.have}
	if zone {
		p.Zone = h.peer.zone
	}
	return p
}
