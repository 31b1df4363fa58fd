package swarm

import (
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// ration is the seeder's record of the copies it uploaded of each piece of
// a blob. Only SeedCopies peers get a piece straight from the seeder until
// SeedRelax after the first of those uploads ended; the others are refused
// (Rationed) and fetch it from those peers, which spreads the swarm's
// upload over all agents. The record outlives the blob's download state:
// the seeder commits a blob as its last piece arrives from the origin, when
// no agent holds that piece yet, and serving it to every agent that asks
// would cost the seeder's link, the swarm's narrowest, a copy each. Once
// every piece was uploaded and relaxed, the record goes.
type ration struct {
	mu      sync.Mutex
	uploads []uint8     // copies started per piece
	doneAt  []time.Time // when the first upload of a piece ended
	left    int         // pieces whose first upload has not ended
	last    time.Time   // the latest first end
}

func newRation(pieces int) *ration {
	return &ration{uploads: make([]uint8, pieces), doneAt: make([]time.Time, pieces), left: pieces}
}

// ok decides whether the seeder uploads piece n once more, and counts it.
func (r *ration) ok(n int, cfg Config, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cfg.SeedCopies == 0 || n < 0 || n >= len(r.uploads) {
		return true
	}
	relaxed := !r.doneAt[n].IsZero() && now.Sub(r.doneAt[n]) > cfg.SeedRelax
	if int(r.uploads[n]) < cfg.SeedCopies || relaxed {
		if r.uploads[n] < 255 {
			r.uploads[n]++
		}
		return true
	}
	return false
}

// ended records that an upload of piece n ended (well or not).
func (r *ration) ended(n int, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n >= 0 && n < len(r.doneAt) && r.doneAt[n].IsZero() {
		r.doneAt[n] = now
		r.left--
		r.last = now
	}
}

// over tells whether every piece is relaxed: the record is of no more use.
func (r *ration) over(cfg Config, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.left == 0 && now.Sub(r.last) > cfg.SeedRelax
}

// rationFor returns the seeder's record of dgst, nil if it has none (a
// blob it seeds from its store only, or whose pieces are all relaxed: the
// record is dropped then).
func (s *Swarm) rationFor(dgst digest.Digest) *ration {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rations[dgst]
	if r != nil && r.over(s.cfg, s.clock.Now()) {
		delete(s.rations, dgst)
		return nil
	}
	return r
}
