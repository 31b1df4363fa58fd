package swarm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// mortalTracker hands out a metainfo and peers until it is killed; from
// then on every call fails as an unreachable tracker's would, and pending
// long-polls break off.
type mortalTracker struct {
	mu    sync.Mutex
	infos map[digest.Digest]*piece.Info
	peers map[digest.Digest][]tracker.Peer
	dead  chan struct{}
	hang  chan struct{} // closed: calls hang until their context ends, as a tracker cut off by the network
}

func newMortalTracker() *mortalTracker {
	return &mortalTracker{infos: make(map[digest.Digest]*piece.Info), peers: make(map[digest.Digest][]tracker.Peer),
		dead: make(chan struct{}), hang: make(chan struct{})}
}

var errTrackerDown = fmt.Errorf("%w: connection refused", tracker.ErrUnavailable)

func (m *mortalTracker) kill() { close(m.dead) }

func (m *mortalTracker) cutOff() { close(m.hang) }

// hung holds a call of a cut-off tracker until ctx ends.
func (m *mortalTracker) hung(ctx context.Context) bool {
	select {
	case <-m.hang:
		<-ctx.Done()
		return true
	default:
		return false
	}
}

func (m *mortalTracker) down() bool {
	select {
	case <-m.dead:
		return true
	default:
		return false
	}
}

func (m *mortalTracker) MetaInfoAfter(ctx context.Context, src tracker.Source, known *piece.Info) (*piece.Info, error) {
	return m.MetaInfo(ctx, src, len(known.Pieces))
}

func (m *mortalTracker) MetaInfo(ctx context.Context, src tracker.Source, have int) (*piece.Info, error) {
	if m.down() {
		return nil, errTrackerDown
	}
	m.mu.Lock()
	info := m.infos[src.Digest]
	m.mu.Unlock()
	switch {
	case info == nil:
		return nil, tracker.ErrNotFound
	case have < len(info.Pieces):
		return info, nil
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-m.dead:
		return nil, errTrackerDown
	}
}

func (m *mortalTracker) Peers(ctx context.Context, d digest.Digest, _ string) ([]tracker.Peer, error) {
	if m.hung(ctx) {
		return nil, fmt.Errorf("%w: %w", tracker.ErrUnavailable, ctx.Err())
	}
	if m.down() {
		return nil, errTrackerDown
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peers[d], nil
}

func (m *mortalTracker) Announce(context.Context, tracker.Announce) (time.Duration, error) {
	if m.down() {
		return 0, errTrackerDown
	}
	return time.Second, nil
}

// mesh is a Transport of peers that each hold some pieces of some blobs
// and answer meta requests as p2p.Host would: the CIDs they know after
// those the asker knows, and the peers they name.
type mesh struct {
	mu      sync.Mutex
	blobs   map[digest.Digest][]byte
	peers   map[peer.ID]*meshPeer
	fetched map[peer.ID]int // pieces served, by peer
}

type meshPeer struct {
	ai    peer.AddrInfo
	holds map[digest.Digest]func(n int) bool // nil func: the whole blob
	infos map[digest.Digest]*piece.Info      // what it knows (nil: UnknownBlob)
	names map[digest.Digest][]peer.AddrInfo  // the peers it names
	// raw: answer its own CIDs from the first, not the asker's then its
	// own, as a peer that does not follow p2p.Host's client would.
	raw bool
}

func newMesh() *mesh {
	return &mesh{blobs: make(map[digest.Digest][]byte), peers: make(map[peer.ID]*meshPeer), fetched: make(map[peer.ID]int)}
}

// add makes a reachable peer that knows nothing yet.
func (m *mesh) add(t *testing.T) *meshPeer {
	t.Helper()
	tp := randomPeer(t, false)
	id, _ := peer.Decode(tp.ID)
	mp := &meshPeer{
		ai:    peer.AddrInfo{ID: id, Addrs: []multiaddr.Multiaddr{multiaddr.StringCast(tp.Addrs[0])}},
		holds: make(map[digest.Digest]func(int) bool), infos: make(map[digest.Digest]*piece.Info), names: make(map[digest.Digest][]peer.AddrInfo),
	}
	m.mu.Lock()
	m.peers[id] = mp
	m.mu.Unlock()
	return mp
}

func (mp *meshPeer) handout() tracker.Peer {
	return appendPeers(nil, []peer.AddrInfo{mp.ai})[0]
}

func (m *mesh) peer(id peer.ID) (*meshPeer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mp := m.peers[id]; mp != nil {
		return mp, nil
	}
	return nil, fmt.Errorf("dial %s: connection refused", id)
}

func (m *mesh) Connect(_ context.Context, ai peer.AddrInfo) error {
	_, err := m.peer(ai.ID)
	return err
}

func (m *mesh) Follow(ctx context.Context, p peer.ID, d digest.Digest, count int, w p2p.Watcher) error {
	mp, err := m.peer(p)
	if err != nil {
		return err
	}
	m.mu.Lock()
	has, ok := mp.holds[d]
	m.mu.Unlock()
	if !ok {
		return p2p.ErrUnknownBlob
	}
	bits := piece.NewBitfield(count)
	for n := range count {
		if has == nil || has(n) {
			bits.Set(n)
		}
	}
	w.Bits(bits)
	if bits.Full() {
		w.Ended()
	} else {
		context.AfterFunc(ctx, w.Ended) // holds no more, ever
	}
	return nil
}

func (m *mesh) Fetch(_ context.Context, p peer.ID, d digest.Digest, n int, want cid.Cid, buf []byte) ([]byte, error) {
	mp, err := m.peer(p)
	if err != nil {
		return buf, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	has, ok := mp.holds[d]
	if !ok || (has != nil && !has(n)) {
		return buf, p2p.ErrNoPiece
	}
	data := m.blobs[d]
	psize := piece.SizeFor(int64(len(data)))
	off := int64(n) * psize
	buf = append(buf[:0], data[off:min(off+psize, int64(len(data)))]...)
	if piece.Verify(want, buf) != nil {
		return buf, p2p.ErrBadPiece
	}
	m.fetched[p]++
	return buf, nil
}

func (m *mesh) Meta(_ context.Context, p peer.ID, d digest.Digest, known []cid.Cid) (*piece.Info, []peer.AddrInfo, error) {
	mp, err := m.peer(p)
	if err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	info := mp.infos[d]
	if info == nil {
		return nil, nil, fmt.Errorf("p2p: meta: %w", p2p.ErrUnknownBlob)
	}
	out := *info
	out.Pieces = slices.Clone(known)
	if len(info.Pieces) > len(known) {
		out.Pieces = append(out.Pieces, info.Pieces[len(known):]...)
	}
	if mp.raw {
		out.Pieces = slices.Clone(info.Pieces)
	}
	return &out, slices.Clone(mp.names[d]), nil
}

func (m *mesh) servedBy(p *meshPeer) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fetched[p.ai.ID]
}

// beforeStall is how many 100 ms steps of the mock clock fit before a
// download of a pexRig stalls.
const beforeStall = 590

// pexRig is one node's swarm over a mortal tracker and a mesh, on a mock
// clock.
type pexRig struct {
	clk  *clock.Mock
	tr   *mortalTracker
	mesh *mesh
	st   *memStore
	reg  *prometheus.Registry
	s    *Swarm
}

func newPexRig(t *testing.T) *pexRig {
	t.Helper()
	r := &pexRig{clk: clock.NewMock(), tr: newMortalTracker(), mesh: newMesh(), st: newMemStore(), reg: prometheus.NewRegistry()}
	cfg := DefaultConfig()
	// Long, so that a loaded machine, on which the download's goroutines
	// take long in real time between steps of the mock clock, does not
	// reach it; the tests assert that the download ends well before.
	cfg.StallTimeout = time.Minute
	s, err := New(cfg, r.tr, r.mesh, r.st, randomPeer(t, false), WithClock(r.clk), WithRegisterer(r.reg))
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
	return r
}

// blob makes a blob of pieces pieces (cut by the default policy) known to
// the mesh, and returns it with its complete metainfo.
func (r *pexRig) blob(pieces int) ([]byte, *piece.Info) {
	data := make([]byte, pieces*testPiece-100)
	rand.Read(data)
	info := trackertest.InfoFor(data, piece.SizeFor(int64(len(data))))
	r.mesh.mu.Lock()
	r.mesh.blobs[info.Digest] = data
	r.mesh.mu.Unlock()
	return data, info
}

// fill downloads info's blob (starting from start, a prefix of it) into a
// fresh writer; a fallback to the origin is recorded and fails.
func (r *pexRig) fill(ctx context.Context, start *piece.Info) (*memWriter, <-chan error, func() bool) {
	w := newMemWriter(int(start.Size))
	done := make(chan error, 1)
	var mu sync.Mutex
	fellBack := false
	origin := func(context.Context, store.Writer) error {
		mu.Lock()
		fellBack = true
		mu.Unlock()
		return errors.New("the origin was asked")
	}
	src := tracker.Source{Repo: "app", Digest: start.Digest}
	go func() { done <- r.s.Filler(src, start, origin)(ctx, w) }()
	return w, done, func() bool { mu.Lock(); defer mu.Unlock(); return fellBack }
}

// follows tells whether the download of d follows p now.
func (r *pexRig) follows(d digest.Digest, p *meshPeer) bool {
	b := r.s.lookup(d)
	if b == nil {
		return false
	}
	_, followed := b.known()
	return slices.ContainsFunc(followed, func(ai peer.AddrInfo) bool { return ai.ID == p.ai.ID })
}

// finished reports a download's result once it came.
func finished(done <-chan error, result *error) func() bool {
	return func() bool {
		select {
		case err := <-done:
			*result = err
			return true
		default:
			return false
		}
	}
}

// advanceUntil moves the mock clock by step until cond holds, at most
// steps times. Each step also lets real time pass (a millisecond): the
// download's goroutines post to its loop between steps.
func (r *pexRig) advanceUntil(step time.Duration, steps int, cond func() bool) bool {
	for range steps {
		if cond() {
			return true
		}
		r.clk.Add(step)
		time.Sleep(time.Millisecond)
	}
	return cond()
}

// A session whose tracker dies asks the peer it follows for others, learns
// of one that holds the blob and completes from it, without the origin and
// before the stall timeout.
func TestTrackerDiesPeerExchange(t *testing.T) {
	t.Parallel()
	for _, hang := range []bool{false, true} {
		t.Run(map[bool]string{false: "killed", true: "cut off"}[hang], func(t *testing.T) {
			t.Parallel()
			testPeerExchange(t, hang)
		})
	}
}

// testPeerExchange is TestTrackerDiesPeerExchange with a tracker that dies
// (refuses at once) or hangs (answers nothing until a timeout).
func testPeerExchange(t *testing.T, hang bool) {
	r := newPexRig(t)
	data, info := r.blob(4)
	a, b := r.mesh.add(t), r.mesh.add(t)
	a.holds[info.Digest] = func(int) bool { return false } // follows the blob, holds nothing yet
	a.infos[info.Digest] = info
	a.names[info.Digest] = []peer.AddrInfo{b.ai}
	b.holds[info.Digest] = nil
	r.tr.infos[info.Digest] = info
	r.tr.peers[info.Digest] = []tracker.Peer{a.handout()}

	w, done, fellBack := r.fill(t.Context(), info)
	if !r.advanceUntil(10*time.Millisecond, 1000, func() bool { return r.follows(info.Digest, a) }) {
		t.Fatal("the session never followed the tracker's peer")
	}
	if hang {
		r.tr.cutOff()
	} else {
		r.tr.kill()
	}
	start := r.clk.Now()
	var err error
	if !r.advanceUntil(100*time.Millisecond, beforeStall, finished(done, &err)) {
		t.Fatalf("no completion %s after the tracker died (stall timeout %s)", r.clk.Since(start), r.s.cfg.StallTimeout)
	}
	if err != nil || fellBack() {
		t.Fatalf("download: %v (fell back to the origin: %v)", err, fellBack())
	}
	if !bytes.Equal(w.bytes(), data) {
		t.Error("the blob's bytes are wrong")
	}
	if got := r.mesh.servedBy(b); got != info.Count() {
		t.Errorf("the peer learned by exchange served %d of %d pieces", got, info.Count())
	}
	if got := value(r.s.pex.m.learned); got < 1 {
		t.Errorf("peers exchanged: %v, want at least 1", got)
	}
}

// A session that knows half the piece hashes when the tracker dies asks
// the peer it follows for the rest, and completes once that peer tells
// them; the peer's answer keeps every hash the session knew.
func TestTrackerDiesMetaInfoFromPeer(t *testing.T) {
	t.Parallel()
	r := newPexRig(t)
	data, info := r.blob(4)
	half := trackertest.Prefix(info, 2)
	a := r.mesh.add(t)
	a.holds[info.Digest] = nil
	a.infos[info.Digest] = info
	r.tr.infos[info.Digest] = half
	r.tr.peers[info.Digest] = []tracker.Peer{a.handout()}

	w, done, fellBack := r.fill(t.Context(), half)
	if !r.advanceUntil(10*time.Millisecond, 1000, func() bool { return r.s.lookup(info.Digest) != nil && r.mesh.servedBy(a) == 2 }) {
		t.Fatal("the session never fetched the pieces whose hashes the tracker gave")
	}
	if b := r.s.lookup(info.Digest); b != nil {
		if known, _ := b.known(); len(known.Pieces) != 2 {
			t.Fatalf("the session knew %d hashes before the tracker died, want 2", len(known.Pieces))
		}
	}
	r.tr.kill()
	var err error
	if !r.advanceUntil(100*time.Millisecond, beforeStall, finished(done, &err)) {
		t.Fatal("no completion before the stall timeout after the tracker died")
	}
	if err != nil || fellBack() {
		t.Fatalf("download: %v (fell back to the origin: %v)", err, fellBack())
	}
	if !bytes.Equal(w.bytes(), data) {
		t.Error("the blob's bytes are wrong")
	}
	if got := value(r.s.pex.m.metainfo.WithLabelValues("more")); got != 1 {
		t.Errorf("metainfo taken from peers %v times, want 1", got)
	}
}

// A peer whose hashes contradict one the session knows is not believed,
// even if the others are right: the session waits for another (here none
// comes), then falls back as before. Believed, it would have completed
// from that peer.
func TestTrackerDiesLyingPeerIgnored(t *testing.T) {
	t.Parallel()
	r := newPexRig(t)
	_, info := r.blob(4)
	half := trackertest.Prefix(info, 2)
	liar := *info
	liar.Pieces = slices.Clone(info.Pieces)
	liar.Pieces[1] = piece.Sum([]byte("not piece 1"))
	a := r.mesh.add(t)
	a.holds[info.Digest] = nil
	a.infos[info.Digest] = &liar
	a.raw = true
	r.tr.infos[info.Digest] = half
	r.tr.peers[info.Digest] = []tracker.Peer{a.handout()}
	r.tr.kill()

	_, done, fellBack := r.fill(t.Context(), half)
	var err error
	if !r.advanceUntil(time.Second, 120, finished(done, &err)) {
		t.Fatal("the download never ended in 2 minutes of virtual time")
	}
	if !fellBack() {
		t.Errorf("download: %v; want the stall fallback, no peer knowing more", err)
	}
}

// With the tracker down, the first metainfo of a blob comes from a peer
// this node met for another blob, and the download then finds that peer in
// the book and completes from it.
func TestMetaInfoFromRecentPeer(t *testing.T) {
	t.Parallel()
	r := newPexRig(t)
	_, first := r.blob(2)
	data, second := r.blob(3)
	a := r.mesh.add(t)
	a.holds[first.Digest] = nil
	a.infos[first.Digest] = first
	a.holds[second.Digest] = nil
	a.infos[second.Digest] = second
	r.tr.infos[first.Digest] = first
	r.tr.peers[first.Digest] = []tracker.Peer{a.handout()}

	// The first blob, with the tracker up: a is met.
	_, done, _ := r.fill(t.Context(), first)
	var err error
	if !r.advanceUntil(10*time.Millisecond, 1000, finished(done, &err)) || err != nil {
		t.Fatalf("first download: %v", err)
	}
	r.tr.kill()
	ctx := t.Context()
	src := tracker.Source{Repo: "app", Digest: second.Digest}
	got, err := r.s.MetaInfo(ctx, src)
	if err != nil {
		t.Fatalf("MetaInfo with the tracker down: %v", err)
	}
	if !extends(got, second) || !got.Complete() {
		t.Fatalf("MetaInfo = %d pieces, want the peer's %d", len(got.Pieces), len(second.Pieces))
	}
	w, done, fellBack := r.fill(ctx, got)
	if !r.advanceUntil(100*time.Millisecond, beforeStall, finished(done, &err)) {
		t.Fatal("the second download did not complete before the stall timeout")
	}
	if err != nil || fellBack() || !bytes.Equal(w.bytes(), data) {
		t.Fatalf("second download: %v (fell back %v)", err, fellBack())
	}
	if got := value(r.s.pex.m.metainfo.WithLabelValues("first")); got != 1 {
		t.Errorf("first metainfo taken from peers %v times, want 1", got)
	}

	// A blob nobody knows: the tracker's error, for the origin to serve it.
	_, unknown := r.blob(1)
	if _, err := r.s.MetaInfo(ctx, tracker.Source{Repo: "app", Digest: unknown.Digest}); !errors.Is(err, tracker.ErrUnavailable) {
		t.Errorf("MetaInfo of a blob no peer knows: %v, want the tracker's ErrUnavailable", err)
	}
}

// A blob the origin does not have is not asked of peers.
func TestMetaInfoNotFoundAsksNoPeer(t *testing.T) {
	t.Parallel()
	r := newPexRig(t)
	_, info := r.blob(1)
	a := r.mesh.add(t)
	a.infos[info.Digest] = info
	r.s.remember(a.ai, info.Digest, true, r.clk.Now())
	if _, err := r.s.MetaInfo(t.Context(), tracker.Source{Repo: "app", Digest: info.Digest}); !errors.Is(err, tracker.ErrNotFound) {
		t.Errorf("MetaInfo = %v, want ErrNotFound", err)
	}
	if got := value(r.s.pex.m.metainfo.WithLabelValues("first")); got != 0 {
		t.Errorf("peers were asked about a blob the origin does not have")
	}
}

// countingStore counts the blobs opened.
type countingStore struct {
	*memStore
	mu    sync.Mutex
	opens int
}

func (c *countingStore) OpenWritten(ctx context.Context, d digest.Digest) (store.Reader, error) {
	c.mu.Lock()
	c.opens++
	c.mu.Unlock()
	return c.memStore.OpenWritten(ctx, d)
}

// The swarm answers meta requests: a committed blob with the CIDs the
// seeder would compute, hashed once however many ask; a blob it downloads
// with what its session knows and the peers it follows; anything else
// UnknownBlob.
func TestSwarmMeta(t *testing.T) {
	t.Parallel()
	r := newPexRig(t)
	cs := &countingStore{memStore: r.st}
	r.s.store = cs
	ctx := t.Context()

	data, info := r.blob(3)
	r.st.put(data)
	holder := r.mesh.add(t)
	r.s.remember(holder.ai, info.Digest, true, r.clk.Now())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			got, peers, err := r.s.Meta(ctx, info.Digest)
			if err != nil || !extends(got, info) || !got.Complete() {
				t.Errorf("Meta of a committed blob = %v, %v; want its complete metainfo", got, err)
			}
			if len(peers) != 1 || peers[0].ID != holder.ai.ID {
				t.Errorf("Meta of a committed blob named %v, want the peer met for it", peers)
			}
		})
	}
	wg.Wait()
	if cs.opens != 1 {
		t.Errorf("the blob was read %d times for 8 asks, want once", cs.opens)
	}

	if _, _, err := r.s.Meta(ctx, digest.FromString("nothing")); !errors.Is(err, p2p.ErrUnknownBlob) {
		t.Errorf("Meta of an unknown blob: %v, want ErrUnknownBlob", err)
	}

	// A blob being downloaded, with half its hashes known.
	_, partial := r.blob(4)
	half := trackertest.Prefix(partial, 2)
	a := r.mesh.add(t)
	a.holds[partial.Digest] = func(n int) bool { return n == 0 }
	r.tr.infos[partial.Digest] = half
	r.tr.peers[partial.Digest] = []tracker.Peer{a.handout()}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, done, _ := r.fill(dctx, half)
	started := func() bool {
		b := r.s.lookup(partial.Digest)
		if b == nil {
			return false
		}
		info, _ := b.known()
		return info != nil && r.follows(partial.Digest, a)
	}
	if !r.advanceUntil(10*time.Millisecond, 1000, started) {
		t.Fatal("the session never followed its peer")
	}
	got, peers, err := r.s.Meta(ctx, partial.Digest)
	if err != nil || !extends(got, half) || len(got.Pieces) != 2 {
		t.Errorf("Meta of a blob being downloaded = %v, %v; want the 2 hashes known", got, err)
	}
	if len(peers) != 1 || peers[0].ID != a.ai.ID {
		t.Errorf("Meta of a blob being downloaded named %v, want the peer followed", peers)
	}
	cancel()
	<-done
}

// The book keeps the peers met over those only heard of, and names those
// met for a blob first.
func TestBook(t *testing.T) {
	t.Parallel()
	var bk book
	now := time.Unix(0, 0)
	addr := []multiaddr.Multiaddr{multiaddr.StringCast("/ip4/10.0.0.1/tcp/1")}
	ai := func(i int) peer.AddrInfo {
		return peer.AddrInfo{ID: peer.ID(fmt.Sprintf("peer-%03d", i)), Addrs: addr}
	}
	x, y := digest.FromString("x"), digest.FromString("y")
	bk.add(ai(0), x, true, now)
	for i := 1; i <= maxBook; i++ {
		bk.add(ai(i), y, false, now.Add(time.Duration(i)*time.Second))
	}
	if len(bk.peers) != maxBook {
		t.Fatalf("the book holds %d peers, want %d", len(bk.peers), maxBook)
	}
	if bk.peers[ai(0).ID] == nil {
		t.Error("a peer met was evicted for one only heard of")
	}
	if bk.peers[ai(1).ID] != nil {
		t.Error("the oldest peer heard of was kept")
	}
	got := bk.recent(y, 3)
	if want := []peer.ID{ai(0).ID, ai(maxBook).ID, ai(maxBook - 1).ID}; !slices.Equal(ids(got), want) {
		t.Errorf("recent = %v, want the peer met, then the newest heard of for the blob: %v", ids(got), want)
	}
	if got := bk.holders(x, nil, 10); !slices.Equal(ids(got), []peer.ID{ai(0).ID}) {
		t.Errorf("holders of x = %v, want the one peer met for it", ids(got))
	}
	bk.add(peer.AddrInfo{ID: "no-address"}, x, true, now)
	if bk.peers["no-address"] != nil {
		t.Error("a peer without an address was kept")
	}
}

func ids(ais []peer.AddrInfo) []peer.ID {
	var out []peer.ID
	for _, ai := range ais {
		out = append(out, ai.ID)
	}
	return out
}

// value is a counter's value.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
