package agent

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/registryshim"
	"github.com/shoal-dev/shoal/tracker"
)

// Seed is what the tracker asks of its seeder (server.Seeder): the agent fetches the blob from the
// origin into its store once and, reading it back as it streams in, names
// each piece by its hash as soon as the piece is there, publishing the
// growing metainfo through progress and offering the piece to the swarm.
// It serves a blob the store already holds, or resumes a partial one, the
// same way.
func (a *Agent) Seed(ctx context.Context, src tracker.Source, progress func(*piece.Info)) error {
	if a.swarm == nil {
		return fmt.Errorf("%w: agent has no swarm", tracker.ErrUnavailable)
	}
	repo := registryshim.Repo{Registry: src.Registry, Name: src.Repo}
	r, err := a.store.Open(ctx, src.Digest)
	if err != nil {
		size, err := a.up.BlobSize(ctx, src.Registry, src.Repo, src.Digest)
		if err != nil {
			return seedError(err)
		}
		if r, err = a.store.Fetch(ctx, src.Digest, size, a.seedFiller(ctx, repo, src, size)); err != nil {
			return fmt.Errorf("%w: %w", tracker.ErrUnavailable, err)
		}
	}
	defer r.Close()
	size := r.Size()
	info := &piece.Info{Digest: src.Digest, Size: size, PieceSize: piece.SizeFor(size)}
	h := piece.NewHasher(info.PieceSize, func(n int, c cid.Cid) {
		info.Pieces = append(info.Pieces, c)
		a.swarm.MarkPiece(src.Digest, size, info.PieceSize, n)
		snapshot := *info
		snapshot.Pieces = append([]cid.Cid(nil), info.Pieces...)
		progress(&snapshot)
	})
	buf := make([]byte, copyBuffer)
	if _, err := io.CopyBuffer(h, io.NewSectionReader(r, 0, size), buf); err != nil {
		return seedError(err)
	}
	return h.Close()
}

// pacedUpstream is the seeder's origin filler: the ranges the store is
// missing, seedChunk bytes to a Range request, each asked for once the
// swarm lets the seeder fetch further ahead of its uploads (Swarm.Pace).
// Waiting between requests, not inside one, keeps the upstream's silence
// timeout out of it.
func (a *Agent) pacedUpstream(repo registryshim.Repo, dgst digest.Digest) store.Filler {
	return a.rangeFiller(repo, dgst, seedChunk, a.swarm.Pace)
}

// seedChunk is how much of a blob the seeder asks the origin for at once.
const seedChunk = 4 << 20

// seedError sorts a failure into what the tracker tells agents: the origin
// does not have the blob, or it could not be reached.
func seedError(err error) error {
	if errors.Is(err, upstream.ErrBlobNotFound) || errors.Is(err, upstream.ErrRepositoryNotFound) {
		return fmt.Errorf("%w: %w", tracker.ErrNotFound, err)
	}
	return fmt.Errorf("%w: %w", tracker.ErrUnavailable, err)
}
