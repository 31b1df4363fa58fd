package sim

import (
	"context"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/swarm"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// trackerLink is a node's swarm.Tracker: each call reaches the real
// tracker server a latency later, as an event, and its answer comes back
// as one. A metainfo long-poll waits at the server in a goroutine of its
// own, as an HTTP handler would.
type trackerLink struct{ n *node }

var _ swarm.Tracker = trackerLink{}

func (t trackerLink) call(ctx context.Context, blob, item int, serve func(reply func(func()))) error {
	n, sim := t.n, t.n.sim
	ch := make(chan struct{})
	sim.q.after(n.lat, key{kindTracker, n.id, -1, blob, item}, func() {
		serve(func(set func()) {
			sim.q.after(n.lat, key{kindReply, n.id, -1, blob, item}, func() { set(); close(ch) })
		})
	})
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-sim.stopped:
		return errGone
	}
}

func (t trackerLink) Announce(ctx context.Context, a tracker.Announce) (time.Duration, error) {
	var d time.Duration
	var err error
	if cerr := t.call(ctx, 0, itemAnnounce, func(reply func(func())) {
		d0, err0 := t.n.sim.srv.Announce(ctx, a)
		reply(func() { d, err = d0, err0 })
	}); cerr != nil {
		return 0, cerr
	}
	return d, err
}

func (t trackerLink) Peers(ctx context.Context, dgst digest.Digest, self string) ([]tracker.Peer, error) {
	var peers []tracker.Peer
	var err error
	if cerr := t.call(ctx, t.n.sim.layerOf[dgst], itemPeers, func(reply func(func())) {
		p0, err0 := t.n.sim.srv.Peers(ctx, dgst, self)
		reply(func() { peers, err = p0, err0 })
	}); cerr != nil {
		return nil, cerr
	}
	return peers, err
}

func (t trackerLink) MetaInfoAfter(ctx context.Context, src tracker.Source, known *piece.Info) (*piece.Info, error) {
	return t.MetaInfo(ctx, src, len(known.Pieces))
}

func (t trackerLink) MetaInfo(ctx context.Context, src tracker.Source, have int) (*piece.Info, error) {
	var info *piece.Info
	var err error
	if cerr := t.call(ctx, t.n.sim.layerOf[src.Digest], itemMeta, func(reply func(func())) {
		go func() {
			i0, err0 := t.n.sim.srv.MetaInfo(ctx, src, have)
			reply(func() {
				info, err = i0, err0
				// Pieces written before their CIDs were known are
				// announced once the metainfo that names them arrives.
				t.n.sim.touched(t.n, t.n.sim.layerOf[src.Digest])
			})
		}()
	}); cerr != nil {
		return nil, cerr
	}
	return info, err
}

// layer is one blob of the image.
type layer struct {
	src   tracker.Source
	size  int64
	psize int64
	cids  []cid.Cid // of the zero bytes of each piece
}

// seeder is the tracker's server.Seeder: it fetches a layer from the
// origin, a flow piece after piece, and names and offers each piece as it
// lands, as the agent's Seed does.
type seeder struct{ n *node }

func (sd seeder) Seed(ctx context.Context, src tracker.Source, progress func(*piece.Info)) error {
	n, sim := sd.n, sd.n.sim
	l := sim.layers[sim.layerOf[src.Digest]]
	info := &piece.Info{Digest: src.Digest, Size: l.size, PieceSize: l.psize}
	n.st.ingest(src.Digest, l.size)
	if err := sim.fromOrigin(ctx, n, l, nil, func(p int) {
		info.Pieces = append(info.Pieces, l.cids[p])
		sim.tr.origin(sim.layerOf[src.Digest], p)
		n.sw.MarkPiece(src.Digest, l.size, l.psize, p)
		sim.touched(n, sim.layerOf[src.Digest])
		snapshot := *info
		snapshot.Pieces = append([]cid.Cid(nil), info.Pieces...)
		progress(&snapshot)
	}); err != nil {
		return err
	}
	n.st.put(src.Digest, l.size)
	n.sw.Changed(src.Digest, store.Committed)
	sim.touched(n, sim.layerOf[src.Digest])
	return nil
}

// fromOrigin fetches the pieces of l (those w lacks, or all) from the
// origin to n, one stream, piece after piece, calling got for each.
func (s *Sim) fromOrigin(ctx context.Context, n *node, l *layer, w store.Writer, got func(int)) error {
	blob := s.layerOf[l.src.Digest]
	if err := n.wait(ctx, 2*n.lat, key{kindReply, n.id, -1, blob, itemOrigin}); err != nil {
		return err
	}
	count := piece.Count(l.size, l.psize)
	for p := range count {
		off := int64(p) * l.psize
		length := min(l.psize, l.size-off)
		if w != nil && !missing(w, off, length) {
			continue
		}
		if w == nil { // the seeder paces its fetch to its uploads, as the agent's seeder does
			if err := n.sw.Pace(ctx, l.src.Digest); err != nil {
				return err
			}
		}
		res := []int{s.originUp, n.down}
		if n.zone >= 0 {
			res = []int{s.originUp, s.zoneDown[n.zone], n.down}
		}
		f := s.net.add(key{kindFlow, -1, n.id, blob, p}, length, res...)
		select {
		case <-f.done:
		case <-ctx.Done():
			s.net.cancel(f, errCancelled)
			s.originBytes.Add(f.sent())
			return ctx.Err()
		case <-s.stopped:
			return errGone
		}
		s.originBytes.Add(length)
		if n.zone >= 0 {
			s.crossBytes.Add(length)
		}
		if w != nil {
			if _, err := w.WriteAt(s.buf.b[:length], off); err != nil {
				return err
			}
		}
		got(p)
	}
	return nil
}

func missing(w store.Writer, off, length int64) bool {
	for _, m := range w.Missing() {
		if m.Off < off+length && off < m.Off+m.Len {
			return true
		}
	}
	return false
}
