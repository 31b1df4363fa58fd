package trackertest

import (
	"context"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// Seeder is a scripted tracker.Seeder. Each Seed call for a digest plays the
// events the test queues with Emit and Finish, in order, and returns at
// Finish (or when its context ends). Events may be queued before the tracker
// calls Seed. After a Seed returns, the next one for that digest starts a
// fresh script.
type Seeder struct {
	mu      sync.Mutex
	scripts map[digest.Digest]*script
	calls   map[digest.Digest]int
	srcs    []tracker.Source
}

type script struct {
	events  chan event
	started chan struct{}
	once    sync.Once
}

type event struct {
	info *piece.Info
	done bool
	err  error
}

// scriptBuffer is how many events may be queued ahead of the Seed playing
// them; more block Emit until Seed catches up.
const scriptBuffer = 1024

var _ tracker.Seeder = (*Seeder)(nil)

// NewSeeder returns a Seeder with no scripts.
func NewSeeder() *Seeder {
	return &Seeder{scripts: make(map[digest.Digest]*script), calls: make(map[digest.Digest]int)}
}

func (s *Seeder) script(d digest.Digest) *script {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.scripts[d]
	if sc == nil {
		sc = &script{events: make(chan event, scriptBuffer), started: make(chan struct{})}
		s.scripts[d] = sc
	}
	return sc
}

func (s *Seeder) drop(d digest.Digest, sc *script) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scripts[d] == sc {
		delete(s.scripts, d)
	}
}

// Seed plays the script for src.Digest.
func (s *Seeder) Seed(ctx context.Context, src tracker.Source, progress func(*piece.Info)) error {
	s.mu.Lock()
	s.calls[src.Digest]++
	s.srcs = append(s.srcs, src)
	s.mu.Unlock()
	sc := s.script(src.Digest)
	defer s.drop(src.Digest, sc)
	sc.once.Do(func() { close(sc.started) })
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

// Emit queues a progress report for d.
func (s *Seeder) Emit(d digest.Digest, info *piece.Info) {
	s.script(d).events <- event{info: info}
}

// Finish queues the end of the seeding of d, with err as Seed's result.
func (s *Seeder) Finish(d digest.Digest, err error) {
	s.script(d).events <- event{done: true, err: err}
}

// Complete queues info as the final progress of d and a successful end.
func (s *Seeder) Complete(info *piece.Info) {
	s.Emit(info.Digest, info)
	s.Finish(info.Digest, nil)
}

// Started returns a channel closed once a Seed of d is playing the current
// script.
func (s *Seeder) Started(d digest.Digest) <-chan struct{} { return s.script(d).started }

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
	return append([]tracker.Source(nil), s.srcs...)
}
