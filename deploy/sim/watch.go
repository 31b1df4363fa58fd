package sim

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
)

// A watch, without a goroutine. The watched node's swarm (the real
// p2p.Source) pushes the pieces it verifies into the watch's channel; the
// driver empties the channels of the (node, layer) pairs whose pieces may
// have changed since it last looked (a write, a commit, a watch's end:
// touched), once the code is blocked, and carries what it found across
// the links in batches: one event per (watcher, layer, instant) of
// arrival, whose HAVEs reach the session in the order of their keys
// (watched node, then piece), as separate events used to.

// sub is one watch of from's pieces of a layer, for to's watcher w.
type sub struct {
	from, to *node
	layer    int
	ch       <-chan int      // from's swarm's channel of the pieces it verified
	w        p2p.Watcher     // the watching session's
	bits     *piece.Bitfield // from's pieces when the watch reached it, until w hears them
	ctx      context.Context // the watcher's: once it ends, nothing more reaches w but the end
	live     bool            // w heard the bitfield: it hears what follows
	ended    bool            // w heard the end
	// seen is what w heard (the bitfield, then each HAVE): when from
	// says it is done, w hears the rest, as p2p.Host.Follow tells its
	// watcher the pieces the peer left unannounced. reset: from left.
	seen  *piece.Bitfield
	reset bool
	last  time.Time // when what from sent last reaches w: what follows is not earlier (hol.go)
}

// haveBatch is what reaches one watcher's layer at one instant.
type haveBatch struct {
	items []haveItem
}

type haveItem struct {
	sub *sub
	n   int // itemDone: the watch's end
}

type batchKey struct {
	to, layer int
	at        int64 // Unix nanoseconds
}

// watches is the simulation's watch state: the dirty (node, layer) pairs
// (any goroutine marks them) and the batches in flight (only the driver).
type watches struct {
	mu      sync.Mutex
	dirty   map[[2]int]bool
	batches map[batchKey]*haveBatch
	haves   uint64 // HAVEs handed to watchers (only the driver)
	ends    uint64 // watch ends handed
}

// touched marks n's pieces of layer for the driver to look at.
func (s *Sim) touched(n *node, layer int) {
	s.w.mu.Lock()
	s.w.dirty[[2]int{n.id, layer}] = true
	s.w.mu.Unlock()
}

// Follow asks the peer's swarm for its bitfield a link's latency later;
// the bitfield reaches the watcher another latency later, and from then on
// what the peer's swarm pushes reaches it the same way (drain).
func (t transport) Follow(ctx context.Context, p peer.ID, dgst digest.Digest, pieces int, w p2p.Watcher) error {
	o, err := t.peerOf(p)
	if err != nil {
		return err
	}
	me, sim := t.n, t.n.sim
	layer := sim.layerOf[dgst]
	lat := me.link(o)
	res := make(chan error, 1)
	sim.q.after(lat, key{kindArrive, o.id, me.id, layer, itemWatch}, func() {
		sb, err := o.subscribe(ctx, me, layer, dgst, pieces, w)
		reply := func(at time.Time) {
			sim.q.push(at, key{kindReply, me.id, o.id, layer, itemWatch}, func() {
				if err == nil && ctx.Err() == nil {
					sb.live = true
					sb.seen = piece.NewBitfield(sb.bits.Len())
					for i := range sb.bits.Len() {
						if sb.bits.Has(i) {
							sb.seen.Set(i)
						}
					}
					w.Bits(sb.bits)
					sb.bits = nil
				}
				res <- err
			})
		}
		if err != nil {
			reply(time.Now().Add(lat))
			return
		}
		sim.laterHere(func() { reply(sim.haveAt(sb, true)) }) // the bitfield, behind the pieces o sends us
	})
	select {
	case err := <-res:
		if err == nil && ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-sim.stopped:
		return errGone
	}
}

// subscribe opens a watch of n's pieces of layer for to, as the piece
// server's watch handler does: the watch ends with the watcher's ctx, or
// when n leaves (hangUp).
func (n *node) subscribe(ctx context.Context, to *node, layer int, dgst digest.Digest, pieces int, w p2p.Watcher) (*sub, error) {
	if n.gone.Load() {
		return nil, errGone
	}
	bits, ch, err := n.sw.Watch(ctx, to.pid, dgst)
	if err != nil {
		return nil, err
	}
	sb := &sub{from: n, to: to, layer: layer, ch: ch, w: w, ctx: ctx, bits: bits}
	n.subs[layer] = append(n.subs[layer], sb)
	sim := n.sim
	context.AfterFunc(ctx, func() { sim.touched(n, layer) }) // the swarm closes the channel then
	sim.touched(n, layer)                                    // a complete blob's channel is closed already
	if bits.Len() != pieces {
		return nil, fmt.Errorf("sim: watch of %d pieces, peer has %d", pieces, bits.Len())
	}
	return sb, nil
}

// hangUp ends the watches of n's pieces, which left: what its swarm
// pushed, then the end, cross the links.
func (s *Sim) hangUp(n *node) {
	s.flush() // what n sent before it left comes first
	for layer, subs := range n.subs {
		for _, sb := range subs {
			at := s.haveAt(sb, false) // a reset: what was queued is lost, not waited for
			pieces, _ := s.poll(sb)
			for _, p := range pieces {
				s.carry(sb, p, at)
			}
			sb.reset = true
			s.carry(sb, itemDone, at)
		}
		n.subs[layer] = nil
	}
}

// drain, called by the driver once the code is blocked, empties the
// channels of the watches of every touched (node, layer), in the order of
// the pairs, and sends what it found on its way: each HAVE a link's
// latency later, plus its wait behind the pieces on the link (hol.go), a
// watch's end too (the peer's end crosses the link) or at once (the
// watcher's own end).
func (s *Sim) drain() {
	s.w.mu.Lock()
	if len(s.w.dirty) == 0 {
		s.w.mu.Unlock()
		return
	}
	pairs := make([][2]int, 0, len(s.w.dirty))
	for p := range s.w.dirty {
		pairs = append(pairs, p)
	}
	clear(s.w.dirty)
	s.w.mu.Unlock()
	slices.SortFunc(pairs, func(a, b [2]int) int {
		if a[0] != b[0] {
			return a[0] - b[0]
		}
		return a[1] - b[1]
	})
	for _, p := range pairs {
		n := s.nodes[p[0]]
		subs := n.subs[p[1]]
		kept := subs[:0]
		for _, sb := range subs {
			pieces, open := s.poll(sb)
			if !open && sb.ctx.Err() != nil {
				// The watcher's own end, at once: what was still
				// crossing the link would be dropped on arrival.
				s.carry(sb, itemDone, time.Now())
			} else if len(pieces) > 0 || !open {
				s.laterHere(func() {
					at := s.haveAt(sb, true)
					for _, n := range pieces {
						s.carry(sb, n, at)
					}
					if !open {
						s.carry(sb, itemDone, at)
					}
				})
			}
			if open {
				kept = append(kept, sb)
			}
		}
		clear(subs[len(kept):])
		n.subs[p[1]] = kept
	}
}

// poll takes the pieces waiting in sb's channel; false once the channel
// is closed.
func (s *Sim) poll(sb *sub) ([]int, bool) {
	var pieces []int
	for {
		select {
		case n, ok := <-sb.ch:
			if !ok {
				return pieces, false
			}
			pieces = append(pieces, n)
		default:
			return pieces, true
		}
	}
}

// carry adds a HAVE (or the end, itemDone) to the batch reaching sb's
// watcher at at.
func (s *Sim) carry(sb *sub, n int, at time.Time) {
	k := batchKey{sb.to.id, sb.layer, at.UnixNano()}
	b := s.w.batches[k]
	if b == nil {
		b = &haveBatch{}
		s.w.batches[k] = b
		s.q.push(at, key{kindHave, sb.to.id, -1, sb.layer, 0}, func() { s.deliver(k, b) })
	}
	b.items = append(b.items, haveItem{sb, n})
}

// deliver hands a batch to its watcher, HAVE after HAVE in the order of
// (watched node, piece), each watch's end after its HAVEs. HAVEs still
// crossing the link when the watcher closed its end are dropped, as a
// reset stream drops them.
func (s *Sim) deliver(k batchKey, b *haveBatch) {
	delete(s.w.batches, k)
	slices.SortStableFunc(b.items, func(x, y haveItem) int {
		if x.sub.from.id != y.sub.from.id {
			return x.sub.from.id - y.sub.from.id
		}
		return x.n - y.n
	})
	for _, it := range b.items {
		sb := it.sub
		switch {
		case !sb.live || sb.ended:
		case it.n == itemDone:
			sb.ended = true
			s.w.ends++
			for i := range sb.seen.Len() {
				if !sb.reset && sb.ctx.Err() == nil && !sb.seen.Has(i) {
					sb.w.Have(i)
					s.w.haves++
				}
			}
			sb.w.Ended()
		case sb.ctx.Err() == nil:
			sb.seen.Set(it.n)
			sb.w.Have(it.n)
			s.w.haves++
		}
	}
}
