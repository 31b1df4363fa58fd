package agent

import (
	"context"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/swarm"
	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/registryshim"
)

var _ registryshim.RangeBackend = (*Agent)(nil)

// BlobRange serves a read of [off, off+n) of a blob. One the store lacks
// is fetched only as far as the pieces that cover the range, from peers or
// with checked Range requests upstream, and served as soon as those pieces
// match their CIDs; the partial blob stays in the store, and later reads
// fill the rest. Without a swarm there are no piece hashes to check bytes
// against before the whole blob's digest, so the read is a whole-blob one.
func (a *Agent) BlobRange(ctx context.Context, repo registryshim.Repo, dgst digest.Digest, off, n int64) (registryshim.Blob, error) {
	if _, err := a.authorizeBlob(ctx, repo, dgst); err != nil {
		return nil, ociError(err)
	}
	if _, err := a.store.Stat(ctx, dgst); err == nil {
		return a.Blob(ctx, repo, dgst)
	}
	src, info, err := a.swarmInfo(ctx, repo, dgst)
	if err != nil {
		return nil, err
	}
	if info == nil {
		return a.Blob(ctx, repo, dgst)
	}
	a.metrics.blobs.WithLabelValues("range").Inc()
	want := store.Range{Off: off, Len: n}
	r, err := a.store.FetchRange(ctx, dgst, info.Size, a.swarm.RangeFiller(src, info, want, a.checkedUpstream(repo, dgst)))
	if err != nil {
		return nil, storeError(err)
	}
	return r, nil
}

// checkedUpstream fetches pieces from the upstream, one Range request each,
// and writes a piece only once it matches its CID.
func (a *Agent) checkedUpstream(repo registryshim.Repo, dgst digest.Digest) swarm.PieceFiller {
	return func(ctx context.Context, w store.Writer, info *piece.Info, pieces []int) error {
		for _, n := range pieces {
			if n >= len(info.Pieces) {
				return ociError(fmt.Errorf("%w: piece %d of %s has no known hash yet", upstream.ErrUnavailable, n, dgst))
			}
			off, length := info.Span(n)
			body, err := a.up.BlobRange(ctx, repo.Registry, repo.Name, dgst, off, length)
			if err != nil {
				return ociError(err)
			}
			buf := make([]byte, length)
			got, err := io.ReadFull(body, buf)
			body.Close()
			a.countOrigin(int64(got))
			if err == nil {
				err = piece.Verify(info.Pieces[n], buf)
			}
			if err != nil {
				return ociError(fmt.Errorf("%w: upstream piece %d of %s: %w", upstream.ErrUnavailable, n, dgst, err))
			}
			if _, err := w.WriteAt(buf, off); err != nil {
				return err
			}
		}
		return nil
	}
}
