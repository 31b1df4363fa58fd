package swarm

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/picker"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	tests := []struct {
		seeder    bool
		pieceTime time.Duration // measured; 0: nothing yet
		busy      int
		want      time.Duration
	}{
		{false, 0, 1, 100 * ms},
		{false, 0, 2, 200 * ms},
		{false, 0, 4, 800 * ms},
		{false, 0, 5, time.Second},
		{false, 0, 50, time.Second},
		{true, 0, 1, 250 * ms},
		{true, 0, 3, time.Second},
		{true, 0, 9, time.Second},
		// From a quarter of the piece time up to twice it.
		{false, 100 * ms, 1, 25 * ms},
		{false, 100 * ms, 3, 100 * ms},
		{false, 100 * ms, 4, 200 * ms},
		{false, 100 * ms, 50, 200 * ms},
		// Within the fixed bounds: slow pieces start at busyBackoff and
		// end at maxBackoff, fast ones start at a millisecond.
		{false, 3 * time.Second, 1, 100 * ms},
		{false, 3 * time.Second, 50, time.Second},
		{false, 2 * ms, 1, ms},
		{false, 2 * ms, 50, 4 * ms},
		// The seeder keeps its own (it queues requests).
		{true, 100 * ms, 1, 250 * ms},
	}
	for _, tt := range tests {
		r := &remote{seeder: tt.seeder, busy: tt.busy}
		if got := r.backoff(tt.pieceTime); got != tt.want {
			t.Errorf("backoff(seeder=%v, piece time %s, busy=%d) = %s, want %s", tt.seeder, tt.pieceTime, tt.busy, got, tt.want)
		}
	}
}

func TestMeasuredPieceTime(t *testing.T) {
	t.Parallel()
	var ss session
	ss.measured(80 * time.Millisecond)
	if ss.pieceTime != 80*time.Millisecond {
		t.Fatalf("first sample: piece time %s, want 80ms", ss.pieceTime)
	}
	for range 100 {
		ss.measured(160 * time.Millisecond)
	}
	if d := ss.pieceTime; d < 159*time.Millisecond || d > 160*time.Millisecond {
		t.Errorf("after many samples of 160ms: piece time %s", d)
	}
	ss.measured(960 * time.Millisecond)
	if d := ss.pieceTime; d != 260*time.Millisecond && (d < 259*time.Millisecond || d > 261*time.Millisecond) {
		t.Errorf("one slow sample moves the average by an eighth: %s, want about 260ms", d)
	}
}

func TestPieceTimeout(t *testing.T) {
	t.Parallel()
	const limit = time.Minute
	for _, tt := range []struct {
		seeder    bool
		pieceTime time.Duration
		want      time.Duration
	}{
		{false, 0, limit},                                // nothing measured yet
		{true, time.Second, limit},                       // a seeder's line
		{false, 100 * time.Millisecond, minPieceTimeout}, // at least
		{false, time.Second, 16 * time.Second},
		{false, 10 * time.Second, limit}, // at most
	} {
		if got := pieceTimeout(tt.seeder, tt.pieceTime, limit); got != tt.want {
			t.Errorf("pieceTimeout(seeder=%v, piece time %s) = %s, want %s", tt.seeder, tt.pieceTime, got, tt.want)
		}
	}
}

func TestPerPeer(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	cfg := DefaultConfig()
	cfg.PerPeer = 2
	for _, tt := range []struct {
		rtt, pieceTime time.Duration
		want           int
	}{
		{0, 0, 2},              // nothing measured
		{2 * ms, 0, 2},         // no piece yet
		{0, 100 * ms, 2},       // no refusal yet
		{2 * ms, 100 * ms, 1},  // a round trip well under a piece's time
		{12 * ms, 100 * ms, 1}, // 96 ms: still under
		{13 * ms, 100 * ms, 2},
		{40 * ms, 100 * ms, 2},
	} {
		ss := &session{s: &Swarm{cfg: cfg}, pieceTime: tt.pieceTime}
		if got := ss.perPeer(&remote{rtt: tt.rtt}); got != tt.want {
			t.Errorf("perPeer(rtt %s, piece time %s) = %d, want %d", tt.rtt, tt.pieceTime, got, tt.want)
		}
	}
	cfg.PerPeer = 1
	if got := (&session{s: &Swarm{cfg: cfg}}).perPeer(&remote{}); got != 1 {
		t.Errorf("PerPeer 1: perPeer %d", got)
	}
	var r remote
	r.answered(0)
	if r.rtt <= 0 {
		t.Errorf("an instant refusal leaves rtt %s: it must count as measured", r.rtt)
	}
	r.answered(8 * ms)
	if r.rtt < ms-ms/8 || r.rtt > ms+ms/8 {
		t.Errorf("after 0 and 8ms: rtt %s, want about 1ms", r.rtt)
	}
}

func TestFirstSoon(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ took, want time.Duration }{
		{0, time.Millisecond},
		{100 * time.Microsecond, time.Millisecond},
		{2 * time.Millisecond, 8 * time.Millisecond},
		{20 * time.Millisecond, 80 * time.Millisecond},
		{time.Second, busyBackoff},
	} {
		if got := firstSoon(tt.took); got != tt.want {
			t.Errorf("firstSoon(%s) = %s, want %s", tt.took, got, tt.want)
		}
	}
}

func TestBuffersReuse(t *testing.T) {
	t.Parallel()
	var p buffers
	a := p.get(1 << 20)
	if len(a) != 1<<20 {
		t.Fatalf("get(1 MiB) has %d bytes", len(a))
	}
	p.put(a[:10])
	b := p.get(512 << 10)
	if len(b) != 512<<10 || &b[0] != &a[0] {
		t.Fatalf("get after put did not reuse the free buffer")
	}
	if c := p.get(2 << 20); len(c) != 2<<20 {
		t.Fatalf("get(2 MiB) has %d bytes", len(c))
	}
	// The free list keeps at most maxFreeBuffers bytes.
	for range 2 * maxFreeBuffers / (4 << 20) {
		p.put(make([]byte, 4<<20))
	}
	if p.bytes > maxFreeBuffers {
		t.Fatalf("free list holds %d bytes, more than %d", p.bytes, maxFreeBuffers)
	}
	p.put(nil)
}

// asked is a Transport whose fetches hang until cancelled, recording who
// was asked for which piece.
type asked struct {
	mu  sync.Mutex
	got map[peer.ID][]int
}

func (a *asked) Connect(context.Context, peer.AddrInfo) error { return nil }

func (a *asked) Follow(context.Context, peer.ID, digest.Digest, int, p2p.Watcher) error {
	return errors.New("not watched")
}

func (a *asked) Fetch(ctx context.Context, p peer.ID, _ digest.Digest, n int, _ cid.Cid, _ []byte) ([]byte, error) {
	a.mu.Lock()
	a.got[p] = append(a.got[p], n)
	a.mu.Unlock()
	<-ctx.Done()
	return nil, ctx.Err()
}

// seederSession is a session of cfg over an asked transport, following a
// seeder that holds every piece of info.
func seederSession(cfg Config, info *piece.Info) (*session, *asked, context.CancelFunc) {
	tp := &asked{got: make(map[peer.ID][]int)}
	s := &Swarm{cfg: cfg, tp: tp, clock: clock.New()}
	ctx, cancel := context.WithCancel(context.Background())
	ss := testSession(ctx, s, info)
	ss.add(&remote{id: "seeder", seeder: true})
	for n := range info.Count() {
		ss.pick.PeerHas("seeder", n)
	}
	return ss, tp, cancel
}

// TestScheduleSparesSeeder: the seeder is asked only for what no agent
// peer holds, unless the session would otherwise have nothing in flight
// (its agents are all busy) or follows no agent at all.
func TestScheduleSparesSeeder(t *testing.T) {
	t.Parallel()
	info := trackertest.InfoFor(make([]byte, 4<<10), 1<<10)
	run := func(agentHas []int, agentBusy bool) (map[peer.ID][]int, time.Time) {
		cfg := DefaultConfig()
		cfg.PerPeer, cfg.MaxInFlight = 4, 8
		ss, tp, cancel := seederSession(cfg, info)
		if agentHas != nil {
			r := &remote{id: "agent"}
			if agentBusy {
				r.busyTill = time.Now().Add(time.Minute)
				// and the session has sat idle long enough to ask the
				// seeder for what agents hold
				ss.idleSince = time.Now().Add(-seederFallback)
			}
			ss.add(r)
			for _, n := range agentHas {
				ss.pick.PeerHas("agent", n)
			}
		}
		var bg sync.WaitGroup
		retry := ss.schedule(&bg)
		cancel()
		bg.Wait()
		for _, ns := range tp.got {
			slices.Sort(ns)
		}
		return tp.got, retry
	}
	if got, _ := run([]int{0, 1}, false); !slices.Equal(got["seeder"], []int{2, 3}) || !slices.Equal(got["agent"], []int{0, 1}) {
		t.Errorf("with an agent holding 0 and 1: asked %v, want the seeder for [2 3] and the agent for [0 1]", got)
	}
	if got, _ := run(nil, false); !slices.Equal(got["seeder"], []int{0, 1, 2, 3}) {
		t.Errorf("with the seeder alone: asked %v, want it for every piece", got)
	}
	got, retry := run([]int{0, 1, 2, 3}, true)
	if !slices.Equal(got["seeder"], []int{0, 1, 2, 3}) || len(got["agent"]) != 0 {
		t.Errorf("with a busy agent holding everything: asked %v, want the seeder for every piece", got)
	}
	if d := time.Until(retry); d < 50*time.Second || d > time.Minute {
		t.Errorf("retry in %s, want when the busy agent's backoff ends (1m)", d)
	}
}

// TestSeederAskOutsideWindow: a session whose window agents could fill
// still asks the seeder for one piece only it holds (its answer, mostly
// Rationed, waits behind the seeder's uploads), and asks it for more only
// in what agents leave of the window.
func TestSeederAskOutsideWindow(t *testing.T) {
	t.Parallel()
	info := trackertest.InfoFor(make([]byte, 8<<10), 1<<10)
	run := func(agentHas []int) map[peer.ID][]int {
		cfg := DefaultConfig()
		cfg.PerPeer, cfg.MaxInFlight, cfg.NodeInFlight = 2, 2, 0
		ss, tp, cancel := seederSession(cfg, info)
		ss.add(&remote{id: "agent"})
		for _, n := range agentHas {
			ss.pick.PeerHas("agent", n)
		}
		var bg sync.WaitGroup
		ss.schedule(&bg)
		if ss.toAgents() > cfg.MaxInFlight {
			t.Errorf("%d requests count against a window of %d", ss.toAgents(), cfg.MaxInFlight)
		}
		cancel()
		bg.Wait()
		return tp.got
	}
	got := run([]int{0, 1, 2, 3})
	if len(got["seeder"]) != 1 || got["seeder"][0] < 4 || len(got["agent"]) != 2 {
		t.Errorf("with an agent holding half: asked %v, want the seeder for one of 4-7, the agent for two pieces", got)
	}
	got = run([]int{0})
	if len(got["seeder"]) != 2 || len(got["agent"]) != 1 {
		t.Errorf("with an agent holding one piece: asked %v, want the seeder for two (one in the window), the agent for one", got)
	}
}

// TestHaveSuppressed: a watcher hears of each piece verified here, except
// those it announced to us itself.
func TestHaveSuppressed(t *testing.T) {
	t.Parallel()
	s := &Swarm{blobs: map[digest.Digest]*blob{}, clock: clock.New(), store: newMemStore()}
	dgst := digest.FromString("blob")
	b := s.track(dgst, 4<<20, 1<<20)
	ctx := t.Context()
	_, toA, err := s.Watch(ctx, "A", dgst)
	if err != nil {
		t.Fatal(err)
	}
	_, toB, err := s.Watch(ctx, "B", dgst)
	if err != nil {
		t.Fatal(err)
	}
	bits := piece.NewBitfield(4)
	bits.Set(0)
	b.heard("A", bits, -1)
	b.heard("A", nil, 2)
	for n := range 4 {
		b.markHave(n)
	}
	// A complete blob forgets what peers announced; late news changes nothing.
	b.heard("B", nil, 1)
	if b.theirs != nil {
		t.Errorf("a complete blob keeps %d peers' announcements", len(b.theirs))
	}
	var gotA, gotB []int
	for n := range toA {
		gotA = append(gotA, n)
	}
	for n := range toB {
		gotB = append(gotB, n)
	}
	if want := []int{1, 3}; !slices.Equal(gotA, want) {
		t.Errorf("A heard of %v, want %v (it announced 0 and 2)", gotA, want)
	}
	if want := []int{0, 1, 2, 3}; !slices.Equal(gotB, want) {
		t.Errorf("B heard of %v, want %v", gotB, want)
	}
}

// testSession is a download of info by s outside a download loop, every
// CID known, for tests that drive its scheduling by hand.
func testSession(ctx context.Context, s *Swarm, info *piece.Info) *session {
	ss := &session{
		s: s, src: tracker.Source{Digest: info.Digest}, count: info.Count(), info: info, ctx: ctx,
		pick:   picker.New(info.Count(), picker.DefaultOptions()),
		events: make(chan event, 64),
		peers:  make(map[peer.ID]*remote),
		flight: make(map[*request]struct{}),
		rng:    s.rng(info.Digest),
	}
	ss.pick.SetKnown(info.Count())
	return ss
}

// A download's window is its share of NodeInFlight among the node's
// downloads under way, rounded up, at least 1 and at most MaxInFlight.
func TestWindowShared(t *testing.T) {
	for _, c := range []struct {
		node, max int
		active    int64
		want      int
	}{
		{6, 8, 0, 6},
		{6, 8, 1, 6},
		{6, 8, 2, 3},
		{6, 8, 4, 2},
		{6, 8, 5, 2},
		{6, 8, 7, 1},
		{6, 8, 100, 1},
		{16, 8, 1, 8},
		{0, 4, 5, 4}, // no node bound
	} {
		s := &Swarm{cfg: Config{NodeInFlight: c.node, MaxInFlight: c.max}}
		s.active.Store(c.active)
		if got := (&session{s: s}).window(); got != c.want {
			t.Errorf("node %d, max %d, %d downloads: window %d, want %d", c.node, c.max, c.active, got, c.want)
		}
	}
}
