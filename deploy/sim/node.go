package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/swarm"
	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// errGone is what a peer that left answers: its connections are reset.
var errGone = errors.New("sim: peer gone")

// Items of keys that are not pieces.
const (
	itemWatch = -2 - iota
	itemConnect
	itemAnnounce
	itemPeers
	itemMeta
	itemOrigin
	itemDone = 1 << 30 // a watch's end comes after its HAVEs
)

// node is one host: an agent, or the seeder (node 0).
type node struct {
	sim    *Sim
	id     int
	pid    peer.ID
	self   tracker.Peer
	lat    time.Duration // one-way, to the core: a link's latency is the mean of its ends'
	up     int           // resources
	down   int
	zone   int // -1: none (the seeder)
	sw     *swarm.Swarm
	st     *memStore
	gate   *p2p.UploadGate
	ctx    context.Context
	cancel context.CancelFunc
	gone   atomic.Bool
	sent   atomic.Int64 // bytes uploaded
	subs   [][]*sub     // by layer: the watches of this node's pieces (watch.go); only the driver

	mu     sync.Mutex
	conns  map[int]bool
	done   int           // layers committed
	failed bool          // a layer's download failed
	took   time.Duration // when the last one was
}

func (n *node) link(o *node) time.Duration { return (n.lat + o.lat) / 2 }

// transport is a node's swarm.Transport: requests and answers cross links
// as events, piece bytes as flows.
type transport struct{ n *node }

var _ swarm.Transport = transport{}

func (t transport) peerOf(p peer.ID) (*node, error) {
	o := t.n.sim.byID[p]
	if o == nil {
		return nil, fmt.Errorf("sim: unknown peer %s", p)
	}
	return o, nil
}

// wait blocks until the event pushed at d with k ran, or ctx ends.
func (n *node) wait(ctx context.Context, d time.Duration, k key) error {
	ch := make(chan struct{})
	n.sim.q.after(d, k, func() { close(ch) })
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.sim.stopped:
		return errGone
	}
}

// Connect costs two round trips the first time (TCP, then TLS 1.3 with
// the muxer), nothing after.
func (t transport) Connect(ctx context.Context, ai peer.AddrInfo) error {
	o, err := t.peerOf(ai.ID)
	if err != nil {
		return err
	}
	t.n.mu.Lock()
	ok := t.n.conns[o.id]
	t.n.mu.Unlock()
	if ok && !o.gone.Load() {
		return nil
	}
	if err := t.n.wait(ctx, 4*t.n.link(o), key{kindReply, t.n.id, o.id, -1, itemConnect}); err != nil {
		return err
	}
	if o.gone.Load() {
		return errGone
	}
	t.n.mu.Lock()
	t.n.conns[o.id] = true
	t.n.mu.Unlock()
	return nil
}

type fetched struct {
	n   int64
	err error
}

// Fetch sends the request, which the peer serves through its upload gate
// (the real one); the bytes are a flow from its upload to our download.
func (t transport) Fetch(ctx context.Context, p peer.ID, dgst digest.Digest, n int, _ cid.Cid, buf []byte) ([]byte, error) {
	o, err := t.peerOf(p)
	if err != nil {
		return buf, err
	}
	me, sim := t.n, t.n.sim
	layer := sim.layerOf[dgst]
	lat := me.link(o)
	res := make(chan fetched, 1)
	asked := time.Now()
	sim.q.after(lat, key{kindArrive, o.id, me.id, layer, n}, func() {
		if o.gone.Load() {
			sim.q.after(lat, key{kindReply, me.id, o.id, layer, n}, func() { res <- fetched{0, errGone} })
			return
		}
		go o.serve(ctx, me, dgst, layer, n, res)
	})
	select {
	case r := <-res:
		sim.tr.fetched(o, time.Since(asked), r.err)
		if r.err != nil {
			return buf, r.err
		}
		return buf[:r.n], nil
	case <-ctx.Done():
		// The session cancels requests in map order: their ends reach it
		// in the order of their keys, as events.
		ch := make(chan struct{})
		sim.q.push(time.Now(), key{kindAbort, me.id, o.id, layer, n}, func() { close(ch) })
		select {
		case <-ch:
		case <-sim.stopped:
		}
		return buf, ctx.Err()
	case <-sim.stopped:
		return buf, errGone
	}
}

// serve answers a piece request of to, as the host's piece server does.
func (n *node) serve(ctx context.Context, to *node, dgst digest.Digest, layer, piece int, res chan<- fetched) {
	sim := n.sim
	lat := n.link(to)
	flowed := false
	sent, err := n.gate.Serve(p2p.WithRequester(n.ctx, to.pid), n.sw, dgst, piece, func(_ io.Reader, size int64) (int64, error) {
		if n.gone.Load() {
			return 0, errGone
		}
		flowed = true
		f := sim.net.add(key{kindFlow, n.id, to.id, layer, piece}, size, sim.path(n, to)...)
		select {
		case <-f.done:
		case <-ctx.Done():
			// The reset reaches us a link's latency later; until then
			// the bytes keep flowing.
			sim.q.after(lat, key{kindCancel, n.id, to.id, layer, piece}, func() { sim.net.cancel(f, errCancelled) })
			select {
			case <-f.done:
			case <-sim.stopped:
			}
		case <-sim.stopped:
		}
		s := f.sent()
		n.sent.Add(s)
		if n.zone != to.zone {
			sim.crossBytes.Add(s)
		}
		return s, f.err
	})
	if n.gone.Load() {
		err = errGone
	}
	sim.tr.served(n, to, layer, piece, sent, err)
	k := key{kindReply, to.id, n.id, layer, piece}
	reply := func() { res <- fetched{sent, err} }
	if err != nil && !flowed && !n.gone.Load() {
		// A refusal: behind the pieces n sends to, at the end of the instant.
		sim.later(k, func() { sim.q.push(sim.arrival(n, to), k, reply) })
		return
	}
	sim.q.push(time.Now().Add(lat), k, reply) // a piece's end, or a reset
}

// memStore is a node's content store: committed blobs, by size only.
type memStore struct {
	mu        sync.Mutex
	blobs     map[digest.Digest]int64
	ingesting map[digest.Digest]int64 // readable, not committed
}

// ingest makes a blob being fetched readable, as the store's ingest is.
func (m *memStore) ingest(d digest.Digest, size int64) {
	m.mu.Lock()
	m.ingesting[d] = size
	m.mu.Unlock()
}

var _ swarm.Store = (*memStore)(nil)

func (m *memStore) put(d digest.Digest, size int64) {
	m.mu.Lock()
	m.blobs[d] = size
	delete(m.ingesting, d)
	m.mu.Unlock()
}

func (m *memStore) OpenWritten(_ context.Context, d digest.Digest) (store.Reader, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	size, ok := m.blobs[d]
	if !ok {
		size, ok = m.ingesting[d]
	}
	if !ok {
		return nil, fmt.Errorf("%s: %w", d, store.ErrNotFound)
	}
	return zeros(size), nil
}

func (m *memStore) Stat(_ context.Context, d digest.Digest) (store.Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	size, ok := m.blobs[d]
	if !ok {
		return store.Info{}, fmt.Errorf("%s: %w", d, store.ErrNotFound)
	}
	return store.Info{Digest: d, Size: size}, nil
}

func (m *memStore) Walk(_ context.Context, fn func(store.Info) error) error {
	m.mu.Lock()
	infos := make([]store.Info, 0, len(m.blobs))
	for d, size := range m.blobs {
		infos = append(infos, store.Info{Digest: d, Size: size})
	}
	m.mu.Unlock()
	slices.SortFunc(infos, func(a, b store.Info) int { return compare(a.Digest, b.Digest) })
	for _, i := range infos {
		if err := fn(i); err != nil {
			return err
		}
	}
	return nil
}

func compare(a, b digest.Digest) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// zeros is a blob of zero bytes: the simulated pieces' content, whose CIDs
// the metainfo carries, so that what reads and checks them (a stand-in
// for the origin) finds them right.
type zeros int64

func (z zeros) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(z) {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), int64(z)-off))
	clear(p[:n])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (z zeros) Size() int64  { return int64(z) }
func (z zeros) Close() error { return nil }

// writer is a download's store.Writer: which pieces are written, no bytes.
type writer struct {
	mu      sync.Mutex
	size    int64
	psize   int64
	written []bool
	touch   func() // a write may add to the pieces the node announces (watch.go)
}

func newWriter(size, psize int64, touch func()) *writer {
	return &writer{size: size, psize: psize, written: make([]bool, piece.Count(size, psize)), touch: touch}
}

// WriteAt marks the pieces p covers whole (the swarm writes pieces, the
// simulated origin writes whole pieces too).
func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	end := off + int64(len(p))
	for n := off / w.psize; n < int64(len(w.written)); n++ {
		lo, hi := n*w.psize, min((n+1)*w.psize, w.size)
		if lo >= end {
			break
		}
		if lo >= off && hi <= end {
			w.written[n] = true
		}
	}
	w.touch()
	return len(p), nil
}

func (w *writer) ReadAt(p []byte, off int64) (int, error) { return zeros(w.size).ReadAt(p, off) }
func (w *writer) Size() int64                             { return w.size }

func (w *writer) Missing() []store.Range {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []store.Range
	for n, ok := range w.written {
		if ok {
			continue
		}
		lo, hi := int64(n)*w.psize, min(int64(n+1)*w.psize, w.size)
		if k := len(out); k > 0 && out[k-1].Off+out[k-1].Len == lo {
			out[k-1].Len += hi - lo
			continue
		}
		out = append(out, store.Range{Off: lo, Len: hi - lo})
	}
	return out
}

// buffer is the one piece buffer every swarm of the simulation shares:
// nothing writes to it.
type buffer struct{ b []byte }

func (b *buffer) Get(size int64) []byte { return b.b[:size] }
func (b *buffer) Put([]byte)            {}
