package tracker_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

func digests(n int) []digest.Digest {
	out := make([]digest.Digest, n)
	for i := range out {
		out[i] = digest.FromString(fmt.Sprintf("blob %d", i))
	}
	return out
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("https://tracker-%d.shoal:7070", i)
	}
	return out
}

// The rank of a key is a fixed function of the names: agents built by
// different versions must agree on every owner.
func TestRankStable(t *testing.T) {
	t.Parallel()
	got := tracker.Rank([]string{"a", "b", "c", "d"}, digest.FromString("layer").String())
	if want := []int{1, 0, 3, 2}; !slices.Equal(got, want) {
		t.Fatalf("rank %v, want %v", got, want)
	}
	if got := tracker.Rank([]string{"only"}, "k"); !slices.Equal(got, []int{0}) {
		t.Fatalf("one replica: %v", got)
	}
}

// Each of k replicas owns about 1/k of the digests.
func TestRankEvenness(t *testing.T) {
	t.Parallel()
	const n = 30_000
	ds := digests(n)
	for _, k := range []int{2, 3, 5, 8} {
		ns := names(k)
		owned := make([]int, k)
		for _, d := range ds {
			owned[tracker.Rank(ns, d.String())[0]]++
		}
		for i, c := range owned {
			if dev := math.Abs(float64(c)-float64(n)/float64(k)) / (float64(n) / float64(k)); dev > 0.05 {
				t.Errorf("k=%d: replica %d owns %d of %d digests (%.1f%% off an even share)", k, i, c, n, 100*dev)
			}
		}
	}
}

// When a replica leaves, only its digests move, each to the second of its
// rank; when one joins, only the digests it now owns move.
func TestRankMinimalMovement(t *testing.T) {
	t.Parallel()
	const n = 20_000
	ds := digests(n)
	ns := names(5)
	gone := ns[2]
	rest := slices.Delete(slices.Clone(ns), 2, 3)
	moved := 0
	for _, d := range ds {
		r := tracker.Rank(ns, d.String())
		before, second := ns[r[0]], ns[r[1]]
		after := rest[tracker.Rank(rest, d.String())[0]]
		switch {
		case before == gone:
			moved++
			if after != second {
				t.Fatalf("%s: owner %s left, went to %s, not to the second of its rank %s", d, gone, after, second)
			}
		case after != before:
			t.Fatalf("%s moved from %s to %s though its owner stayed", d, before, after)
		}
	}
	if f := float64(moved) / n; f < 0.17 || f > 0.23 {
		t.Errorf("%.3f of the digests moved, want about 1/5", f)
	}
	more := append(slices.Clone(ns), "https://tracker-new.shoal:7070")
	joined := 0
	for _, d := range ds {
		before := ns[tracker.Rank(ns, d.String())[0]]
		after := more[tracker.Rank(more, d.String())[0]]
		if after != before {
			if after != more[5] {
				t.Fatalf("%s moved from %s to %s, not to the replica that joined", d, before, after)
			}
			joined++
		}
	}
	if f := float64(joined) / n; f < 0.14 || f > 0.20 {
		t.Errorf("%.3f of the digests moved to the new replica, want about 1/6", f)
	}
}

// member is an in-memory replica: it records what it was told and can be
// made silent (every request gets no answer) or unsure (Listed cannot tell).
type member struct {
	name string
	mu   sync.Mutex
	dead bool
	// unsure makes Listed answer ErrUnavailable, as a tracker that has
	// just restarted does.
	unsure   bool
	blobs    map[string][]digest.Digest // peer ID → its last announce here
	calls    int
	metainfo int
}

func newMember(name string) *member {
	return &member{name: name, blobs: make(map[string][]digest.Digest)}
}

func (m *member) enter() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.dead {
		return fmt.Errorf("%w: %w", tracker.ErrUnavailable, tracker.NoAnswer)
	}
	return nil
}

func (m *member) MetaInfoAfter(ctx context.Context, src tracker.Source, known *piece.Info) (*piece.Info, error) {
	return m.MetaInfo(ctx, src, len(known.Pieces))
}

func (m *member) MetaInfo(_ context.Context, src tracker.Source, _ int) (*piece.Info, error) {
	if err := m.enter(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	m.metainfo++
	m.mu.Unlock()
	return &piece.Info{Digest: src.Digest}, nil
}

func (m *member) Peers(context.Context, digest.Digest, string) ([]tracker.Peer, error) {
	if err := m.enter(); err != nil {
		return nil, err
	}
	return []tracker.Peer{{ID: "served" + m.name}}, nil
}

func (m *member) Announce(_ context.Context, a tracker.Announce) (time.Duration, error) {
	if err := m.enter(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var ds []digest.Digest
	for _, b := range a.Blobs {
		ds = append(ds, b.Digest)
	}
	m.blobs[a.Peer.ID] = ds
	return 3 * time.Second, nil
}

func (m *member) Listed(_ context.Context, id string) (bool, error) {
	if err := m.enter(); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unsure {
		return false, fmt.Errorf("%w: just restarted", tracker.ErrUnavailable)
	}
	_, ok := m.blobs[id]
	return ok, nil
}

func (m *member) Ping(context.Context) error { return m.enter() }

func (m *member) set(f func(*member)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

func (m *member) told(id string) ([]digest.Digest, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ds, ok := m.blobs[id]
	return slices.Clone(ds), ok
}

func replicaSet(t *testing.T, n int, clock *trackertest.Clock) (*tracker.Replicas, []*member) {
	t.Helper()
	var eps []tracker.Endpoint
	var ms []*member
	for _, name := range names(n) {
		m := newMember(name)
		ms = append(ms, m)
		eps = append(eps, tracker.Endpoint{Name: name, Member: m})
	}
	r, err := tracker.NewReplicas(tracker.DefaultReplicaConfig(), eps, tracker.WithReplicaClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	return r, ms
}

func blobStates(ds []digest.Digest) []tracker.BlobState {
	out := make([]tracker.BlobState, len(ds))
	for i, d := range ds {
		out[i] = tracker.BlobState{Digest: d, Have: 1}
	}
	return out
}

// ownerOf is the member that owns key among the live ones.
func ownerOf(ms []*member, key string, live func(*member) bool) *member {
	var ns []string
	var in []*member
	for _, m := range ms {
		if live(m) {
			ns = append(ns, m.name)
			in = append(in, m)
		}
	}
	return in[tracker.Rank(ns, key)[0]]
}

// An announce gives each replica the blobs it owns and the owner of the
// peer ID at least the peer; metainfo and peers go to the owner. A silent
// replica's digests move to the next replica in the very announce that
// found it silent, it is not asked again for RetryAfter, and its digests
// come back once it answers again.
func TestReplicasFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := trackertest.NewClock(time.Unix(1_700_000_000, 0))
	r, ms := replicaSet(t, 3, clock)
	self := trackertest.ID("agent")
	ds := digests(60)
	a := tracker.Announce{Peer: tracker.Peer{ID: self, Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}}, Blobs: blobStates(ds)}
	all := func(*member) bool { return true }

	check := func(live func(*member) bool) {
		t.Helper()
		if _, err := r.Announce(ctx, a); err != nil {
			t.Fatalf("announce: %v", err)
		}
		for _, m := range ms {
			if !live(m) {
				continue
			}
			var want []digest.Digest
			for _, d := range ds {
				if ownerOf(ms, d.String(), live) == m {
					want = append(want, d)
				}
			}
			got, told := m.told(self)
			if !slices.Equal(got, want) {
				t.Errorf("%s was told %d blobs, owns %d", m.name, len(got), len(want))
			}
			if ownerOf(ms, self, live) == m && !told {
				t.Errorf("%s owns the peer ID but was not told of it", m.name)
			}
		}
		for _, d := range ds[:5] {
			want := ownerOf(ms, d.String(), live)
			if got := r.Owner(d.String()); got != want.name {
				t.Errorf("owner of %s: %s, want %s", d, got, want.name)
			}
			peers, err := r.Peers(ctx, d, self)
			if err != nil || len(peers) != 1 || peers[0].ID != "served"+want.name {
				t.Errorf("peers of %s: %v, %v; want the answer of %s", d, peers, err, want.name)
			}
		}
	}
	check(all)

	dead := ms[1]
	dead.set(func(m *member) { m.dead = true })
	deadOnly := func(m *member) bool { return m != dead }
	check(deadOnly) // one announce moves everything
	before := dead.calls
	for range 3 {
		clock.Advance(3 * time.Second)
		check(deadOnly)
	}
	if dead.calls != before {
		t.Errorf("the silent replica was asked %d times within RetryAfter", dead.calls-before)
	}
	clock.Advance(tracker.DefaultReplicaConfig().RetryAfter)
	check(deadOnly) // asked once again, still silent
	if dead.calls != before+1 {
		t.Errorf("after RetryAfter the silent replica was asked %d times, want once", dead.calls-before)
	}

	dead.set(func(m *member) { m.dead = false })
	clock.Advance(tracker.DefaultReplicaConfig().RetryAfter)
	check(all) // back: its digests return and the others withdraw them
}

// Every replica silent: the announce fails with ErrUnavailable and
// metainfo reports the silence.
func TestReplicasAllSilent(t *testing.T) {
	t.Parallel()
	clock := trackertest.NewClock(time.Unix(1_700_000_000, 0))
	r, ms := replicaSet(t, 3, clock)
	for _, m := range ms {
		m.set(func(m *member) { m.dead = true })
	}
	a := tracker.Announce{Peer: tracker.Peer{ID: trackertest.ID("agent"), Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}}, Blobs: blobStates(digests(10))}
	if _, err := r.Announce(context.Background(), a); !errors.Is(err, tracker.ErrUnavailable) {
		t.Errorf("announce: %v, want ErrUnavailable", err)
	}
	if _, err := r.MetaInfo(context.Background(), tracker.Source{Repo: "app", Digest: digests(1)[0]}, -1); !tracker.Unreachable(err) {
		t.Errorf("metainfo: %v, want no answer", err)
	}
	if err := r.Ping(context.Background()); err == nil {
		t.Error("ping of silent replicas succeeded")
	}
}

// A peer listed by any replica is admitted; one no replica lists is not;
// one no replica lists while a replica cannot tell yet is "cannot tell".
func TestReplicasListed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := trackertest.NewClock(time.Unix(1_700_000_000, 0))
	r, ms := replicaSet(t, 3, clock)
	id := trackertest.ID("listed")
	for _, m := range ms {
		if ok, err := r.Listed(ctx, id); ok || err != nil {
			t.Fatalf("before any announce: %v, %v", ok, err)
		}
		m.set(func(m *member) { m.blobs[id] = nil })
		if ok, err := r.Listed(ctx, id); !ok || err != nil {
			t.Fatalf("listed by %s only: %v, %v", m.name, ok, err)
		}
		m.set(func(m *member) { delete(m.blobs, id) })
	}
	ms[0].set(func(m *member) { m.dead = true })
	ms[1].set(func(m *member) { m.unsure = true })
	if _, err := r.Listed(ctx, id); !errors.Is(err, tracker.ErrUnavailable) || tracker.Unreachable(err) {
		t.Errorf("a replica cannot tell: %v, want its ErrUnavailable answer", err)
	}
	ms[1].set(func(m *member) { m.unsure = false })
	if ok, err := r.Listed(ctx, id); ok || err != nil {
		t.Errorf("one replica silent, the others do not list it: %v, %v; want not listed", ok, err)
	}
	ms[2].set(func(m *member) { m.blobs[id] = nil })
	if ok, err := r.Listed(ctx, id); !ok || err != nil {
		t.Errorf("listed by a live replica: %v, %v", ok, err)
	}
}

func TestSplitURLs(t *testing.T) {
	t.Parallel()
	got := tracker.SplitURLs([]string{"https://a:7070, https://b:7070", "", "https://c:7070"})
	if want := []string{"https://a:7070", "https://b:7070", "https://c:7070"}; !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
}

// A DNS name stands for one replica per address, named address:port.
func TestEndpointsDNS(t *testing.T) {
	t.Parallel()
	lookup := func(_ context.Context, host string) ([]string, error) {
		if host != "trackers.shoal" {
			return nil, errors.New("no such host")
		}
		return []string{"10.0.0.2", "10.0.0.1", "fd00::3"}, nil
	}
	eps, err := tracker.Endpoints(context.Background(), []string{"dns+https://trackers.shoal:7070"}, "tok", lookup)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ep := range eps {
		got = append(got, ep.Name)
	}
	if want := []string{"10.0.0.2:7070", "10.0.0.1:7070", "[fd00::3]:7070"}; !slices.Equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	if _, err := tracker.Endpoints(context.Background(), []string{"dns+https://nowhere:7070"}, "tok", lookup); !errors.Is(err, tracker.ErrUnavailable) {
		t.Errorf("unresolvable name: %v", err)
	}
}

// The shards of a seed job over the replicas take every digest exactly
// once, the one its owner ranks first; a bad shard is refused.
func TestSeedShard(t *testing.T) {
	t.Parallel()
	ns := names(3)
	for _, d := range digests(300) {
		owners := 0
		for _, self := range ns {
			if (&tracker.SeedShard{Of: ns, Self: self}).Owns(d) {
				owners++
			}
		}
		if owners != 1 {
			t.Fatalf("%s owned by %d shards", d, owners)
		}
	}
	if !(*tracker.SeedShard)(nil).Owns(digests(1)[0]) {
		t.Error("no shard must own everything")
	}
	for _, sh := range []*tracker.SeedShard{{Of: ns, Self: "elsewhere"}, {Self: "x"}, {Of: []string{"a b"}, Self: "a b"}} {
		req := tracker.SeedRequest{Images: []string{"app:v1"}, Shard: sh}
		if err := req.Validate(); !errors.Is(err, tracker.ErrInvalid) {
			t.Errorf("shard %+v: %v, want ErrInvalid", sh, err)
		}
	}
}

// Each address of a dns+ name is asked over TLS with the name as SNI and
// as the name its certificate must carry.
func TestEndpointsDNSServerName(t *testing.T) {
	t.Parallel()
	var sni atomic.Value
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sni.Store(r.TLS.ServerName)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	lookup := func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil }
	// httptest's certificate is for example.com (and loopback addresses).
	eps, err := tracker.Endpoints(context.Background(), []string{"dns+https://example.com:" + port}, "tok", lookup, tracker.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	if err := eps[0].Member.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := sni.Load().(string); got != "example.com" {
		t.Errorf("SNI %q, want example.com", got)
	}
}
