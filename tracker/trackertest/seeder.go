package trackertest

import (
	"context"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

// Seeder is a scripted tracker.Seeder. The test writes a script per digest
// with Emit (progress reports) and Finish (Seed's result); each Seed call for
// that digest plays the oldest script no other call plays, in order, and
// returns at its Finish or when its context ends. Scripts may be written
// before the tracker calls Seed; events after a Finish start the next script.
type Seeder struct {
	mu      sync.Mutex
	scripts map[digest.Digest][]*script // oldest first
	calls   map[digest.Digest]int
	srcs    []tracker.Source
}

type script struct {
	events   chan event
	started  chan struct{} // closed when a Seed takes the script
	taken    bool          // guarded by Seeder.mu
	finished bool          // guarded by Seeder.mu
}

type event struct {
	info *piece.Info
	done bool
	err  error
}

// scriptBuffer is how many events may be written ahead of the Seed playing
// them; more block Emit until Seed catches up.
const scriptBuffer = 1024

var _ server.Seeder = (*Seeder)(nil)

// NewSeeder returns a Seeder with no scripts.
func NewSeeder() *Seeder {
	return &Seeder{scripts: make(map[digest.Digest][]*script), calls: make(map[digest.Digest]int)}
}

func newScript() *script {
	return &script{events: make(chan event, scriptBuffer), started: make(chan struct{})}
}

// writing returns the script the test writes to for d. Caller holds mu.
func (s *Seeder) writing(d digest.Digest) *script {
	q := s.scripts[d]
	if len(q) == 0 || q[len(q)-1].finished {
		q = append(q, newScript())
		s.scripts[d] = q
	}
	return q[len(q)-1]
}

// Seed plays the oldest untaken script for src.Digest.
func (s *Seeder) Seed(ctx context.Context, src tracker.Source, progress func(*piece.Info)) error {
	s.mu.Lock()
	s.calls[src.Digest]++
	s.srcs = append(s.srcs, src)
	q := s.scripts[src.Digest]
	i := slices.IndexFunc(q, func(sc *script) bool { return !sc.taken })
	if i < 0 {
		q = append(q, newScript())
		s.scripts[src.Digest] = q
		i = len(q) - 1
	}
	sc := q[i]
	sc.taken = true
	s.mu.Unlock()
	close(sc.started)
	defer s.remove(src.Digest, sc)
	for {
		select {
		case ev := <-sc.events:
			if ev.done {
				return ev.err
			}
			progress(ev.info)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Seeder) remove(d digest.Digest, sc *script) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[d] = slices.DeleteFunc(s.scripts[d], func(x *script) bool { return x == sc })
	if len(s.scripts[d]) == 0 {
		delete(s.scripts, d)
	}
}

// Emit writes a progress report for d.
func (s *Seeder) Emit(d digest.Digest, info *piece.Info) {
	s.mu.Lock()
	sc := s.writing(d)
	s.mu.Unlock()
	sc.events <- event{info: info}
}

// Finish ends the script for d with err as Seed's result.
func (s *Seeder) Finish(d digest.Digest, err error) {
	s.mu.Lock()
	sc := s.writing(d)
	sc.finished = true
	s.mu.Unlock()
	sc.events <- event{done: true, err: err}
}

// Complete writes info as the final progress of d and a successful end.
func (s *Seeder) Complete(info *piece.Info) {
	s.Emit(info.Digest, info)
	s.Finish(info.Digest, nil)
}

// Started returns a channel closed once a Seed plays the script the test
// writes to for d.
func (s *Seeder) Started(d digest.Digest) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writing(d).started
}

// Calls returns how many times Seed was called for d.
func (s *Seeder) Calls(d digest.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[d]
}

// Sources returns the sources of every Seed call so far, in call order.
func (s *Seeder) Sources() []tracker.Source {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.srcs)
}
