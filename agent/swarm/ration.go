package swarm

import (
	"context"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// ration is the seeder's record of the copies it uploaded of each piece of
// a blob. Only SeedCopies peers get a piece straight from the seeder until
// seedDoubling SeedRelax after the first of those uploads ended, twice as
// many after each further seedDoubling SeedRelax (allowed), and none gets a second copy of any
// piece while one it holds has gone to nobody; the others are refused
// (Rationed) and fetch it from those peers, which spreads the swarm's
// upload over all agents, and the seeder's link carries new pieces first.
// The record outlives the blob's download state: the seeder commits a blob
// as its last piece arrives from the origin, when no agent holds that
// piece yet, and serving it to every agent that asks would cost the
// seeder's link, the swarm's narrowest, a copy each. Once every piece was
// uploaded and every piece's copies are unbounded, the record goes.
type ration struct {
	mu      sync.Mutex
	uploads []uint8     // copies started per piece
	doneAt  []time.Time // when the first upload of a piece ended
	left    int         // pieces whose first upload has not ended
	held    []bool      // pieces the seeder holds (MarkPiece)
	unsent  int         // pieces held that no upload started yet
	last    time.Time   // the latest first end
	asked   time.Time   // the latest request for any piece
	// undelivered counts the pieces held whose first upload has not
	// ended; delivered is closed when it falls, then replaced.
	undelivered int
	delivered   chan struct{}
	stored      bool // made for a blob served from the store (storedRation)
}

func newRation(pieces int) *ration {
	return &ration{uploads: make([]uint8, pieces), doneAt: make([]time.Time, pieces), held: make([]bool, pieces), left: pieces, delivered: make(chan struct{})}
}

// ok decides whether the seeder uploads piece n once more, and counts it.
// A first copy goes out only if first, when set, agrees (firsts.grant).
func (r *ration) ok(n int, cfg Config, now time.Time, first func() bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cfg.SeedCopies == 0 || n < 0 || n >= len(r.uploads) {
		return true
	}
	r.asked = now
	// While a piece it holds has gone to nobody, the seeder sends no
	// second copy of another: its link is the only way in for that one.
	if r.uploads[n] >= uint8(cfg.SeedCopies) && r.unsent > 0 {
		return false
	}
	if int(r.uploads[n]) < r.allowed(n, cfg, now) {
		if r.uploads[n] == 0 && first != nil && !first() {
			return false
		}
		if r.uploads[n] == 0 && r.held[n] {
			r.unsent--
		}
		if r.uploads[n] < 255 {
			r.uploads[n]++
		}
		return true
	}
	return false
}

// hold records that the seeder holds piece n (from the origin).
func (r *ration) hold(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n >= 0 && n < len(r.held) && !r.held[n] {
		r.held[n] = true
		if r.uploads[n] == 0 {
			r.unsent++
		}
		if r.doneAt[n].IsZero() {
			r.undelivered++
		}
	}
}

// allowed is how many copies of piece n the seeder gives now: SeedCopies
// until seedDoubling SeedRelax after the first upload ended, then twice
// as many every seedDoubling SeedRelax, with no bound after relaxSteps
// doublings. The swarm copies a piece much faster, so the seeder's share
// of the copies stays small; and an agent that follows none of the
// piece's holders (a session follows at most MaxPeers of a large swarm)
// still gets it from the seeder in time.
func (r *ration) allowed(n int, cfg Config, now time.Time) int {
	if r.doneAt[n].IsZero() || cfg.SeedRelax <= 0 {
		if cfg.SeedRelax <= 0 && !r.doneAt[n].IsZero() {
			return 255
		}
		return cfg.SeedCopies
	}
	steps := int(now.Sub(r.doneAt[n]) / (seedDoubling * cfg.SeedRelax))
	if steps >= relaxSteps {
		return 255
	}
	return min(255, cfg.SeedCopies<<steps)
}

const (
	// seedDoubling is how many SeedRelax pass between two doublings of
	// the copies allowed. In simulation (deploy/sim, 200 MiB, 20 MB/s)
	// doubling every SeedRelax let the seeder send 2.1 copies at N = 100
	// and the rollout take 2.3 times the bound; every 4, 1.1 copies and
	// 1.7 times (N = 20: 1.0 copies, 1.7 times either way).
	seedDoubling = 4
	// relaxSteps is how many doublings after a piece's first upload the
	// seeder stops counting its copies.
	relaxSteps = 8
)

// ended records that an upload of piece n ended (well or not).
func (r *ration) ended(n int, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n >= 0 && n < len(r.doneAt) && r.doneAt[n].IsZero() {
		r.doneAt[n] = now
		r.left--
		r.last = now
		if r.held[n] {
			r.undelivered--
			close(r.delivered)
			r.delivered = make(chan struct{})
		}
	}
}

// over tells whether every piece is relaxed, or nobody asked for the
// pieces of a stored blob for as long: the record is of no more use.
func (r *ration) over(cfg Config, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	window := relaxSteps * seedDoubling * cfg.SeedRelax
	return r.left == 0 && now.Sub(r.last) > window || r.stored && now.Sub(r.asked) > window
}

// storedRation returns the seeder's record of a blob it serves whole from
// its store (a seed job's, a preheated or a pushed one, or one whose
// record ended), made afresh: no piece sent. Its pieces are not counted
// as held (hold): agents may hold some already and never ask for them, and
// the rule against second copies while a held piece went to nobody would
// then hold for good. The record goes once nobody asked for a while. The agents of a
// rollout that starts then all lack every piece, and without the record
// each would ask the seeder for the pieces only it holds, all of them:
// its link, split among them, would carry the image once per agent.
func (s *Swarm) storedRation(dgst digest.Digest, pieces int) *ration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.rations[dgst]; r != nil {
		return r
	}
	r := newRation(pieces)
	r.stored = true
	s.rations[dgst] = r
	return r
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

// Pace holds back the seeder's origin fetch of dgst while seedAhead pieces
// it holds have reached nobody yet (no upload of theirs ended) and agents
// are asking for the blob (one asked within seedIdle): it returns once an
// upload of one of them ends, the askers fall silent, or ctx ends. The seeder's link, not the origin's,
// sets the pace at which new pieces enter the swarm; what it fetches
// further ahead reaches no agent sooner, and is lost with the seeder if it
// dies (the agents then fetch those pieces from the origin a second time).
// A blob nobody asks for (a seed job, a preheat) is fetched at the
// origin's pace.
func (s *Swarm) Pace(ctx context.Context, dgst digest.Digest) error {
	if !s.seed {
		return nil
	}
	for {
		r := s.rationFor(dgst)
		if r == nil {
			return nil
		}
		now := s.clock.Now()
		r.mu.Lock()
		ahead, asked, delivered := r.undelivered, r.asked, r.delivered
		r.mu.Unlock()
		quiet := asked.Add(seedIdle)
		if ahead < seedAhead || !now.Before(quiet) {
			return nil
		}
		t := s.clock.Timer(quiet.Sub(now))
		select {
		case <-delivered:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

const (
	// seedAhead is how many pieces of a blob the seeder may hold that
	// reached nobody before it pauses fetching it: enough to keep its
	// link busy while the next ones arrive from the origin.
	seedAhead = 8
	// seedIdle is how long after the last request for a blob the seeder
	// stops pacing its fetch to its uploads.
	seedIdle = time.Second
)
