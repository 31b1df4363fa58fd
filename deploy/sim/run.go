package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing/synctest"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/swarm"
	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// Sim is one simulated rollout.
type Sim struct {
	cfg      Config
	q        *queue
	net      *network
	nodes    []*node // 0: the seeder; 1..N: agents
	byID     map[peer.ID]*node
	layers   []*layer
	layerOf  map[digest.Digest]int
	srv      Tracker
	originUp int // resource
	buf      *buffer
	stopped  chan struct{}
	start    time.Time

	originBytes atomic.Int64
	crossBytes  atomic.Int64 // bytes between hosts of different zones (or none)
	zoneUp      []int        // resources, by zone
	zoneDown    []int
	w           watches
	tr          *tracer // nil unless cfg.Trace

	here   []func() // hol.go: waits measured once the instant is over
	lateMu sync.Mutex
	lates  []late

	mu       sync.Mutex
	churned  map[int]bool
	finished int
	failed   int
	allDone  chan struct{}
}

// Tracker is the tracker the rollout runs against: the real server
// (*server.Server), in process, which agents reach through simulated links
// and which seeds through the simulation's Seeder.
type Tracker interface {
	swarm.Tracker
	Close() error
}

// Seeder is what the tracker asks to seed a blob (server.Seeder).
type Seeder interface {
	Seed(ctx context.Context, src tracker.Source, progress func(*piece.Info)) error
}

// NewTracker starts the tracker with its randomness from seed and sd as its
// seeder. Tests pass the real server's constructor (only cmd and tests link
// the tracker server).
type NewTracker func(seed uint64, sd Seeder) (Tracker, error)

// Run simulates the rollout cfg describes against the tracker newTracker
// starts. It must run inside a testing/synctest bubble (synctest.Test): its
// time is the bubble's.
func Run(cfg Config, newTracker NewTracker) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := build(cfg, newTracker)
	if err != nil {
		return nil, err
	}
	return s.run(), nil
}

func build(cfg Config, newTracker NewTracker) (*Sim, error) {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed))
	q := newQueue()
	s := &Sim{
		cfg: cfg, q: q, net: newNetwork(q, cfg.Quantum),
		byID: make(map[peer.ID]*node), layerOf: make(map[digest.Digest]int),
		stopped: make(chan struct{}), start: time.Now(), churned: make(map[int]bool), allDone: make(chan struct{}),
		w: watches{dirty: make(map[[2]int]bool), batches: make(map[batchKey]*haveBatch)},
	}
	if cfg.Trace > 0 {
		s.tr = newTracer(s, cfg.Trace)
		s.net.tr = s.tr
	}
	s.originUp = s.net.resource(cfg.OriginUp)
	for range cfg.Zones {
		s.zoneUp = append(s.zoneUp, s.net.resource(cfg.ZoneUp))
		s.zoneDown = append(s.zoneDown, s.net.resource(cfg.ZoneDown))
	}
	var maxPiece int64
	for i := range cfg.Layers {
		size := cfg.Size / int64(cfg.Layers)
		if i == cfg.Layers-1 {
			size = cfg.Size - size*int64(cfg.Layers-1)
		}
		d := digest.FromString(fmt.Sprintf("sim layer %d of seed %d", i, cfg.Seed))
		l := &layer{src: tracker.Source{Registry: "docker.io", Repo: "sim/app", Digest: d}, size: size, psize: piece.SizeFor(size)}
		sums := make(map[int64]cid.Cid)
		for p := range piece.Count(size, l.psize) {
			length := min(l.psize, size-int64(p)*l.psize)
			if _, ok := sums[length]; !ok {
				sums[length] = piece.Sum(make([]byte, length))
			}
			l.cids = append(l.cids, sums[length])
		}
		maxPiece = max(maxPiece, l.psize)
		s.layers = append(s.layers, l)
		s.layerOf[d] = i
	}
	s.buf = &buffer{b: make([]byte, maxPiece)}

	slow := map[int]bool{}
	for _, i := range rng.Perm(cfg.N)[:int(math.Round(cfg.SlowFrac*float64(cfg.N)))] {
		slow[i+1] = true
	}
	for _, i := range rng.Perm(cfg.N)[:int(math.Round(cfg.Churn*float64(cfg.N)))] {
		s.churned[i+1] = true
	}
	for i := 0; i <= cfg.N; i++ {
		key, _, err := crypto.GenerateEd25519Key(seeded{rng})
		if err != nil {
			return nil, err
		}
		pid, err := peer.IDFromPrivateKey(key)
		if err != nil {
			return nil, err
		}
		up, down := cfg.HostUp, cfg.HostDown
		pcfg := p2p.DefaultConfig()
		var opts []swarm.Option
		if i == 0 {
			up = cfg.SeederUp
			pcfg = p2p.DefaultSeederConfig()
			opts = append(opts, swarm.AsSeeder())
		} else if slow[i] {
			up, down = up*cfg.SlowScale, down*cfg.SlowScale
		}
		n := &node{sim: s, id: i, pid: pid, conns: make(map[int]bool), subs: make([][]*sub, cfg.Layers), st: &memStore{blobs: make(map[digest.Digest]int64), ingesting: make(map[digest.Digest]int64)}}
		n.lat = cfg.LatMin + time.Duration(rng.Int64N(int64(cfg.LatMax-cfg.LatMin)+1))
		n.up, n.down = s.net.resource(up), s.net.resource(down)
		n.zone = -1
		if cfg.Zones > 0 && i > 0 {
			n.zone = (i - 1) % cfg.Zones
		}
		n.self = tracker.Peer{ID: pid.String(), Addrs: []string{fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i>>16&255, i>>8&255, i&255)}}
		if n.zone >= 0 {
			n.self.Zone = fmt.Sprintf("z%d", n.zone) // announced, and preferred by its sessions
		}
		n.ctx, n.cancel = context.WithCancel(context.Background())
		opts = append(opts, swarm.WithClock(clock.New()), swarm.WithSeed(cfg.Seed), swarm.WithBuffers(s.buf))
		var tr swarm.Tracker = trackerLink{n}
		if n.sw, err = swarm.New(swarm.DefaultConfig(), tr, transport{n}, n.st, n.self, opts...); err != nil {
			return nil, err
		}
		n.gate = p2p.NewUploadGate(pcfg, clock.New(), n.ctx.Done())
		s.nodes = append(s.nodes, n)
		s.byID[pid] = n
	}
	srv, err := newTracker(cfg.Seed, seeder{s.nodes[0]})
	if err != nil {
		return nil, err
	}
	s.srv = srv
	go s.nodes[0].sw.Run(s.nodes[0].ctx)
	for _, n := range s.nodes[1:] {
		at := time.Duration(0)
		if cfg.Spread > 0 {
			at = time.Duration(rng.Int64N(int64(cfg.Spread)))
		}
		q.after(at, key{kindNode, n.id, 0, 0, 0}, func() { s.pull(n) })
		if s.churned[n.id] {
			leave := time.Duration(rng.Float64() * float64(s.bound().Min))
			q.after(leave, key{kindNode, n.id, 1, 0, 0}, func() { s.leave(n) })
		}
	}
	return s, nil
}

// path is the resources a flow from a to b crosses: a's upload, the zone
// uplinks between them, b's download.
func (s *Sim) path(a, b *node) []int {
	res := []int{a.up}
	if a.zone != b.zone {
		if a.zone >= 0 {
			res = append(res, s.zoneUp[a.zone])
		}
		if b.zone >= 0 {
			res = append(res, s.zoneDown[b.zone])
		}
	}
	return append(res, b.down)
}

// seeded reads random bytes from a seeded source: the peer keys.
type seeded struct{ r *rand.Rand }

func (s seeded) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(s.r.Uint32())
	}
	return len(p), nil
}

// pull is the agent's pull of the image: every layer at once, each through
// the swarm (metainfo, download, the origin when it stalls) into the store.
func (s *Sim) pull(n *node) {
	go n.sw.Run(n.ctx)
	for _, l := range s.layers {
		go func() {
			info, err := n.sw.MetaInfo(n.ctx, l.src)
			if err == nil {
				n.st.ingest(l.src.Digest, l.size)
				w := newWriter(l.size, l.psize, func() { s.touched(n, s.layerOf[l.src.Digest]) })
				fallback := func(ctx context.Context, w store.Writer) error { return s.fromOrigin(ctx, n, l, w, func(int) {}) }
				err = n.sw.Filler(l.src, info, fallback)(n.ctx, w)
			}
			// The store commits (and tells the swarm) in a step of its
			// own, as the real one does after the digest check.
			s.q.after(0, key{kindNode, n.id, 2, s.layerOf[l.src.Digest], 0}, func() { s.layerDone(n, l, err) })
		}()
	}
}

func (s *Sim) layerDone(n *node, l *layer, err error) {
	if err == nil {
		n.st.put(l.src.Digest, l.size)
		n.sw.Changed(l.src.Digest, store.Committed)
		s.touched(n, s.layerOf[l.src.Digest])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.churned[n.id] || n.failed {
		return
	}
	if err != nil {
		n.failed = true
		s.failed++
	} else if n.done++; n.done == len(s.layers) {
		n.took = time.Since(s.start)
		s.finished++
	}
	if s.finished+s.failed >= s.cfg.N-len(s.churned) {
		select {
		case <-s.allDone:
		default:
			close(s.allDone)
		}
	}
}

// leave takes n out mid-rollout: its process ends, its connections reset.
func (s *Sim) leave(n *node) {
	n.gone.Store(true)
	n.cancel()
	s.hangUp(n)
	s.net.enter()
	var ends []*flow
	for _, r := range []int{n.up, n.down} {
		ends = append(ends, s.net.users[r]...)
	}
	s.net.leave()
	for _, f := range ends {
		s.net.cancel(f, errGone)
	}
}

// run drives the events until every agent that stays is done, or the
// horizon, then stops everything.
func (s *Sim) run() *Result {
	horizon := s.start.Add(s.cfg.Horizon)
	timedOut := false
loop:
	for {
		synctest.Wait()
		select {
		case <-s.allDone:
			break loop
		default:
		}
		s.drain()
		select {
		case <-s.q.wake:
		default:
		}
		now := time.Now()
		if !now.Before(horizon) {
			timedOut = true
			break
		}
		e, ok := s.q.peek()
		if !ok || e.at.After(now) {
			// The instant is over: the flows its events started and
			// ended share the links from now on; the messages that left
			// wait behind them at those rates.
			s.flush()
			s.net.settle()
			e, ok = s.q.peek()
		}
		if ok && !e.at.After(now) {
			s.q.pop().fn()
			if s.cfg.Progress != nil && s.q.count%1_000_000 == 0 {
				s.mu.Lock()
				done := s.finished
				s.mu.Unlock()
				fmt.Fprintf(s.cfg.Progress, "sim: %.3fs virtual, %d events, %d agents done\n", now.Sub(s.start).Seconds(), s.q.count, done)
			}
			continue
		}
		until := horizon
		if ok && e.at.Before(until) {
			// A nanosecond late: the code's own timers due at e.at then
			// all fire, and settle, first. Woken at e.at, the driver could
			// run before the bubble had fired the others due then.
			until = e.at.Add(time.Nanosecond)
		}
		t := time.NewTimer(until.Sub(now))
		select {
		case <-t.C:
		case <-s.q.wake:
			t.Stop()
		}
	}
	virtual := time.Since(s.start)
	close(s.stopped)
	for _, n := range s.nodes {
		n.cancel()
	}
	s.srv.Close()
	return s.result(virtual, timedOut)
}

// Bound is the Kumar–Ross lower bound of a rollout's time.
type Bound struct {
	Min  time.Duration // max{S/u_s, S/min d_i, N·S/(u_s + Σu_i)}
	Pipe time.Duration // plus log2(N) piece times at the agents' upload
}

func (s *Sim) bound() Bound {
	c := s.cfg
	S := float64(c.Size)
	dmin, usum := c.HostDown, 0.0
	slow := int(math.Round(c.SlowFrac * float64(c.N)))
	if slow > 0 {
		dmin = c.HostDown * c.SlowScale
	}
	usum = float64(c.N-slow)*c.HostUp + float64(slow)*c.HostUp*c.SlowScale
	t := max(S/c.SeederUp, S/dmin, float64(c.N)*S/(c.SeederUp+usum), S/min(c.OriginUp, c.HostDown))
	psize := float64(piece.SizeFor(c.Size / int64(c.Layers)))
	pipe := t + math.Log2(float64(max(c.N, 1)))*psize/c.HostUp
	return Bound{Min: time.Duration(t * 1e9), Pipe: time.Duration(pipe * 1e9)}
}

func (s *Sim) result(virtual time.Duration, timedOut bool) *Result {
	r := &Result{Config: s.cfg, Bound: s.bound(), Virtual: virtual, TimedOut: timedOut, Events: s.q.count, Kinds: s.q.kinds, Haves: s.w.haves, Ends: s.w.ends, Trace: s.q.trace, tracer: s.tr}
	s.mu.Lock()
	for _, n := range s.nodes[1:] {
		switch {
		case s.churned[n.id]:
			r.Left++
		case n.done == len(s.layers):
			r.Done = append(r.Done, n.took)
		default:
			r.Unfinished++
		}
	}
	s.mu.Unlock()
	slices.Sort(r.Done)
	S := float64(s.cfg.Size)
	r.SeederCopies = float64(s.nodes[0].sent.Load()) / S
	r.OriginCopies = float64(s.originBytes.Load()) / S
	if s.cfg.Zones > 0 {
		r.CrossZoneCopies = float64(s.crossBytes.Load()) / S / float64(s.cfg.Zones)
	}
	for _, n := range s.nodes[1:] {
		st := n.sw.Stats()
		r.PeerBytes += st.Peer
		r.SeederBytes += st.Seeder
		r.FallbackBytes += st.Origin
	}
	return r
}
