package agent

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/registryshim"
	"github.com/shoal-dev/shoal/tracker"
)

// seedFiller is how the seeder fills a blob it lacks: from the agents the
// tracker says hold it whole, when there are some, else from the origin.
// A blob pushed through an agent (push.go) is held by that agent before
// anyone asks the tracker for it: the seeder takes it from there, so the
// origin sends it once, to the pusher's agent, and never again. Pieces the
// holders cannot give come from the origin, as in any stalled download.
//
// The holders' piece CIDs are their word, not the origin's, so the copy is
// checked against the digest before the filler returns: a copy that fails
// is discarded, and the digest is seeded from the origin from then on
// (distrust), so a lying holder costs one download, not the swarm.
func (a *Agent) seedFiller(ctx context.Context, repo registryshim.Repo, src tracker.Source, size int64) store.Filler {
	origin := a.pacedUpstream(repo, src.Digest)
	if a.swarm == nil || a.distrust.has(src.Digest) || !src.Digest.Algorithm().Available() {
		return origin
	}
	info := a.swarm.FromHolders(ctx, src.Digest)
	if info == nil || info.Size != size {
		return origin
	}
	return a.checkedFill(a.swarm.Filler(src, info, origin), src.Digest, size)
}

// checkedFill runs fill, then checks what it wrote against dgst; a copy
// that fails puts dgst in distrust and fails the ingest, which the store
// then discards.
func (a *Agent) checkedFill(fill store.Filler, dgst digest.Digest, size int64) store.Filler {
	return func(ctx context.Context, w store.Writer) error {
		if err := fill(ctx, w); err != nil {
			return err
		}
		got, err := dgst.Algorithm().FromReader(io.NewSectionReader(w, 0, size))
		if err != nil {
			return fmt.Errorf("seed %s: reading back the holders' copy: %w", dgst, err)
		}
		if got != dgst {
			a.distrust.add(dgst)
			a.log.Warn("holders sent a copy that fails its digest; the origin seeds it from now on", "digest", dgst, "got", got)
			return fmt.Errorf("seed %s from holders: content is %s: %w", dgst, got, store.ErrDigestMismatch)
		}
		return nil
	}
}

// maxDistrust bounds the digests remembered; beyond it the set starts over.
const maxDistrust = 1024

// digestSet is a bounded set of digests; its zero value is empty.
type digestSet struct {
	mu sync.Mutex
	m  map[digest.Digest]struct{}
}

func (s *digestSet) add(d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil || len(s.m) >= maxDistrust {
		s.m = make(map[digest.Digest]struct{})
	}
	s.m[d] = struct{}{}
}

func (s *digestSet) has(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[d]
	return ok
}
