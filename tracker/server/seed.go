package server

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// entry is what the tracker knows of one digest's metainfo. Guarded by
// Server.mu. info is replaced, never mutated, so it may be read unlocked
// once taken.
type entry struct {
	digest  digest.Digest
	info    *piece.Info   // latest progress; nil until the first
	body    []byte        // info as JSON, encoded once per change for every waiter
	changed chan struct{} // closed and replaced on every change of info or state
	seeding bool          // a Seed is running for it
	counted bool          // holds a slot of Server.seeding and stays out of the LRU
	gen     int           // counts seedings, so a late progress of an old one is ignored

	err   error // last seeding's failure, answered until errAt+SeedErrorTTL
	errOf tracker.Source
	errAt time.Time

	elem *list.Element // in Server.lru once settled
}

// view is what an asker learns from watch.
type view struct {
	info    *piece.Info // nil while nothing is known
	body    []byte      // info as JSON
	changed <-chan struct{}
	gen     int
}

// watch returns what is known of src.Digest, with a channel closed when that
// changes and the current seeding generation. It starts a seeding if nothing
// is known, nothing is under way and no failure for src is remembered: one
// younger than SeedErrorTTL, or the one of generation seen, which the asker
// was waiting on (so it hears the failure even with no error TTL).
func (s *Server) watch(src tracker.Source, seen int) (view, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return view{}, fmt.Errorf("%w: tracker shutting down", tracker.ErrUnavailable)
	}
	if s.seeder == nil {
		return view{}, fmt.Errorf("%w: tracker not started", tracker.ErrUnavailable)
	}
	e := s.infos[src.Digest]
	switch {
	case e == nil:
		e = &entry{digest: src.Digest, changed: make(chan struct{})}
	case e.elem != nil:
		s.lru.MoveToFront(e.elem)
	}
	switch {
	case e.seeding, e.info != nil && e.info.Complete():
	case e.err != nil && e.errOf == src && (e.gen == seen || s.clock.Now().Sub(e.errAt) < s.cfg.SeedErrorTTL):
		return view{gen: e.gen}, e.err
	case s.seeding >= s.cfg.MaxSeeding:
		return view{}, fmt.Errorf("%w: %d seedings under way, try again later", tracker.ErrUnavailable, s.seeding)
	default:
		s.infos[src.Digest] = e
		s.startSeed(e, src)
	}
	return view{info: e.info, body: e.body, changed: e.changed, gen: e.gen}, nil
}

// startSeed runs one seeding of src in a goroutine owned by the server: its
// context is the server's, not the asker's, so an impatient first asker does
// not cancel the download everyone else waits for. Caller holds mu.
func (s *Server) startSeed(e *entry, src tracker.Source) {
	e.seeding, e.counted = true, true
	s.seeding++
	e.gen++
	e.info, e.body, e.err = nil, nil, nil
	if e.elem != nil {
		s.lru.Remove(e.elem)
		e.elem = nil
	}
	gen := e.gen
	s.seeds.Add(1)
	go func() {
		defer s.seeds.Done()
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.SeedTimeout)
		defer cancel()
		start := time.Now()
		s.log.Info("seeding", "digest", src.Digest, "registry", src.Registry, "repo", src.Repo)
		err := s.seeder.Seed(ctx, src, func(info *piece.Info) { s.progress(e, gen, info) })
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w: seeding stopped: %w", tracker.ErrUnavailable, context.Cause(ctx))
		}
		s.finish(e, gen, src, err, time.Since(start))
	}()
}

// progress stores a seeder's report if it is consistent with what is known:
// same blob, pieces only grow, known pieces never change. Anything else is a
// seeder bug or a corrupt origin; it is logged and ignored rather than let it
// fork the swarm's view of the blob.
func (s *Server) progress(e *entry, gen int, info *piece.Info) {
	if info == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.gen != gen || !e.seeding {
		return
	}
	if err := consistent(e.digest, e.info, info); err != nil {
		s.log.Warn("ignoring seeder progress", "digest", e.digest, "error", err)
		return
	}
	if e.info != nil && len(info.Pieces) <= len(e.info.Pieces) {
		return
	}
	// The seeder may reuse its slice; keep our own copy.
	own := &piece.Info{Digest: info.Digest, Size: info.Size, PieceSize: info.PieceSize, Pieces: slices.Clone(info.Pieces)}
	body, err := own.Marshal()
	if err != nil {
		s.log.Error("encode metainfo", "digest", e.digest, "error", err)
		return
	}
	e.info, e.body = own, append(body, '\n')
	if own.Complete() {
		// Every byte came from the origin: only the digest check is left,
		// so the seeding no longer holds a slot, and the Info is cacheable
		// before the askers it wakes ask again.
		s.settle(e)
	}
	e.notify()
}

func consistent(d digest.Digest, old, info *piece.Info) error {
	if err := info.Validate(); err != nil {
		return err
	}
	if info.Digest != d {
		return fmt.Errorf("digest %s, want %s", info.Digest, d)
	}
	if old == nil {
		return nil
	}
	if info.Size != old.Size || info.PieceSize != old.PieceSize {
		return fmt.Errorf("size %d/%d changed from %d/%d", info.Size, info.PieceSize, old.Size, old.PieceSize)
	}
	for n := range min(len(old.Pieces), len(info.Pieces)) {
		if !info.Pieces[n].Equals(old.Pieces[n]) {
			return fmt.Errorf("piece %d changed from %s to %s", n, old.Pieces[n], info.Pieces[n])
		}
	}
	return nil
}

func (s *Server) finish(e *entry, gen int, src tracker.Source, err error, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.seeding = false
	if err == nil && (e.info == nil || !e.info.Complete()) {
		err = fmt.Errorf("%w: seeder returned without complete metainfo", tracker.ErrUnavailable)
	}
	result := resultOK
	if err != nil {
		if !errors.Is(err, tracker.ErrNotFound) && !errors.Is(err, tracker.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", tracker.ErrUnavailable, err)
		}
		// An Info from a failed seeding may come from a corrupt origin
		// download (even a complete one, if the digest did not match); the
		// retry starts afresh.
		e.info, e.body = nil, nil
		e.err, e.errOf, e.errAt = err, src, s.clock.Now()
		result = resultOf(err)
		if s.ctx.Err() != nil {
			result = resultCanceled
		}
		s.log.Warn("seeding failed", "digest", src.Digest, "duration", took, "error", err)
	} else {
		s.log.Info("seeded", "digest", src.Digest, "bytes", e.info.Size, "duration", took)
	}
	s.metrics.seeds.WithLabelValues(result).Inc()
	s.settle(e)
	e.notify()
}

// settle ends the bookkeeping of a seeding, once: frees its slot and puts the
// entry in the LRU, evicting the least recently asked beyond MaxInfos. An
// entry evicted while its Seed still returns is left to the garbage
// collector. Caller holds mu.
func (s *Server) settle(e *entry) {
	if !e.counted {
		return
	}
	e.counted = false
	s.seeding--
	e.elem = s.lru.PushFront(e)
	for s.lru.Len() > s.cfg.MaxInfos {
		old := s.lru.Remove(s.lru.Back()).(*entry)
		old.elem = nil
		delete(s.infos, old.digest)
	}
}

func (e *entry) notify() {
	close(e.changed)
	e.changed = make(chan struct{})
}
