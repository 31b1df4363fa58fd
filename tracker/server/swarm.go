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
	// byID is, by blob, its holders in order of peer ID, when rng is set:
	// a seeded handout draws from them in that order without sorting.
	byID map[digest.Digest][]*holding
}

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
		oldest: make(map[digest.Digest]time.Time), byID: make(map[digest.Digest][]*holding)}
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

// place records h in its blob's holders by ID (a seeded swarm's), in
// place of the peer's earlier holding. Caller holds mu.
func (s *swarm) place(d digest.Digest, h *holding) {
	if s.rng == nil {
		return
	}
	hs := s.byID[d]
	i, found := slices.BinarySearchFunc(hs, h.peer.id, func(x *holding, id string) int { return strings.Compare(x.peer.id, id) })
	if found {
		hs[i] = h
		return
	}
	s.byID[d] = slices.Insert(hs, i, h)
}

// unplace removes peer id from d's holders by ID. Caller holds mu.
func (s *swarm) unplace(d digest.Digest, id string) {
	if s.rng == nil {
		return
	}
	hs := s.byID[d]
	if i, found := slices.BinarySearchFunc(hs, id, func(x *holding, id string) int { return strings.Compare(x.peer.id, id) }); found {
		s.byID[d] = slices.Delete(hs, i, i+1)
	}
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
	var first, rest []*holding
	add := func(h *holding) {
		switch {
		case h.peer.id == self:
		case h.complete || h.peer.seeder:
			first = append(first, h)
		default:
			rest = append(rest, h)
		}
	}
	draw := rand.IntN
	if s.rng != nil {
		// A seeded tracker (the simulator's) hands out the same peers
		// every run: it draws from them in order of ID (byID), as map
		// order is random by itself.
		draw = s.rng.IntN
		for _, h := range s.byID[d] {
			add(h)
		}
	} else {
		for _, h := range s.blobs[d] {
			add(h)
		}
	}
	out := make([]tracker.Peer, 0, min(max, len(first)+len(rest)))
	if zone != "" {
		return zonedHandout(zone, first, rest, out, max, draw)
	}
	for _, group := range [][]*holding{first, rest} {
		// A partial Fisher-Yates shuffle: only the picked ones are drawn.
		for i := 0; i < len(group) && len(out) < max; i++ {
			j := i + draw(len(group)-i)
			group[i], group[j] = group[j], group[i]
			out = append(out, group[i].handed(false))
		}
	}
	return out
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
