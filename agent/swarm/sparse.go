package swarm

import (
	"context"
	"errors"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// PieceFiller writes the given pieces of a blob, each checked against
// info's CIDs before it is written: the swarm's fallback for a sparse read.
type PieceFiller func(ctx context.Context, w store.Writer, info *piece.Info, pieces []int) error

// RangeFiller returns a store.Filler, for store.FetchRange, that downloads
// only the pieces of src that cover want, and ends with store.ErrPartial
// once they are verified and written (nil if that made the blob whole). A
// lazy-pulling snapshotter reading a layer's footer and table of contents
// so gets those pieces, not the layer. If the swarm stalls, fallback gets
// the wanted pieces still missing, with the metainfo known by then.
func (s *Swarm) RangeFiller(src tracker.Source, info *piece.Info, want store.Range, fallback PieceFiller) store.Filler {
	return func(ctx context.Context, w store.Writer) error {
		err := s.download(ctx, src, info, w, &want)
		if err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrDigestMismatch) && !errors.Is(err, errWrite) {
			s.log.Warn("swarm range download stalled, finishing the range from the origin", "digest", src.Digest, "err", err)
			s.m.fallbacks.Inc()
			latest := info
			if got, merr := s.tr.MetaInfo(ctx, src, -1); merr == nil && got.Digest == info.Digest && got.Size == info.Size && got.PieceSize == info.PieceSize {
				latest = got
			}
			err = fallback(ctx, w, latest, missingPieces(w, latest, want))
		}
		if err != nil {
			return err
		}
		if len(w.Missing()) > 0 {
			return store.ErrPartial
		}
		return nil
	}
}

// covers reports whether piece n of info overlaps want.
func covers(info *piece.Info, want store.Range, n int) bool {
	off, length := info.Span(n)
	return off < want.Off+want.Len && want.Off < off+length
}

// missingPieces lists the pieces that overlap want and are not all written.
func missingPieces(w store.Writer, info *piece.Info, want store.Range) []int {
	var out []int
	gaps := w.Missing()
	for n := range info.Count() {
		if !covers(info, want, n) {
			continue
		}
		off, length := info.Span(n)
		for _, g := range gaps {
			if g.Off < off+length && off < g.Off+g.Len {
				out = append(out, n)
				break
			}
		}
	}
	return out
}
