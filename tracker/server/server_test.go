package server_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// fixture is a tracker on loopback with a scripted seeder, a fake clock and
// a client.
type fixture struct {
	tr     *trackertest.Tracker
	client *tracker.Client
	seeder *trackertest.Seeder
	clock  *trackertest.Clock
	reg    *prometheus.Registry
}

func newFixture(t *testing.T, edit func(*server.Config)) *fixture {
	t.Helper()
	cfg := server.DefaultConfig()
	if edit != nil {
		edit(&cfg)
	}
	f := &fixture{
		seeder: trackertest.NewSeeder(),
		clock:  trackertest.NewClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)),
		reg:    prometheus.NewRegistry(),
	}
	f.tr = trackertest.Start(t, cfg, f.seeder, server.WithClock(f.clock), server.WithRegisterer(f.reg))
	f.client = f.tr.Client(t)
	return f
}

// metric returns the value of a counter or gauge, summed over its labels
// matching label=value (no label: all).
func (f *fixture) metric(t *testing.T, name, label, value string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				match = match || l.GetName() == label && l.GetValue() == value
			}
			if match {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func randomBlob(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// testInfo is the metainfo of a random 6-piece blob.
func testInfo(t testing.TB) *piece.Info {
	return trackertest.InfoFor(randomBlob(t, 5*1024+100), 1024)
}

// peer is the peer named name (its ID is trackertest.ID(name)).
func peer(name string, seeder bool) tracker.Peer {
	id := trackertest.ID(name)
	return tracker.Peer{ID: id, Addrs: []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + id}, Seeder: seeder}
}

// as returns a client that signs its announces as the peer named name.
func (f *fixture) as(t *testing.T, name string) *tracker.Client {
	return f.tr.ClientAs(t, name, tracker.WithClock(f.clock))
}

// announce makes p's signed announce of blobs.
func (f *fixture) announce(t *testing.T, p tracker.Peer, blobs ...tracker.BlobState) {
	t.Helper()
	if _, err := f.as(t, trackertest.Name(p.ID)).Announce(context.Background(), tracker.Announce{Peer: p, Blobs: blobs}); err != nil {
		t.Fatalf("announce %s: %v", trackertest.Name(p.ID), err)
	}
}

// ids returns the names of ps.
func ids(ps []tracker.Peer) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = trackertest.Name(p.ID)
	}
	return out
}

func TestHandoutOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	d := digest.FromString("layer")
	other := digest.FromString("other layer")
	ctx := context.Background()

	interval, err := f.as(t, "self").Announce(ctx, tracker.Announce{Peer: peer("self", false), Blobs: []tracker.BlobState{{Digest: d, Have: 3}}})
	if err != nil || interval != 3*time.Second {
		t.Fatalf("Announce = %s, %v; want 3s", interval, err)
	}
	first := map[string]bool{}
	for i := range 3 {
		id := fmt.Sprintf("complete%d", i)
		f.announce(t, peer(id, false), tracker.BlobState{Digest: d, Have: 6, Complete: true})
		first[id] = true
	}
	// The seeder is the tracker's own, announcing in process.
	if _, err := f.tr.Announce(t.Context(), tracker.Announce{Peer: peer("seeder", true), Blobs: []tracker.BlobState{{Digest: d, Have: 1}}}); err != nil {
		t.Fatal(err)
	}
	first["seeder"] = true
	for i := range 4 {
		f.announce(t, peer(fmt.Sprintf("partial%d", i), false), tracker.BlobState{Digest: d, Have: i})
	}
	f.announce(t, peer("elsewhere", false), tracker.BlobState{Digest: other, Complete: true})

	got, err := f.client.Peers(ctx, d, trackertest.ID("self"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 {
		t.Fatalf("handout %v, want 8 peers", ids(got))
	}
	for i, p := range got {
		name := trackertest.Name(p.ID)
		if name == "self" || name == "elsewhere" {
			t.Fatalf("handout %v includes %s", ids(got), name)
		}
		if (i < len(first)) != first[name] {
			t.Fatalf("handout %v: complete peers and seeders must come first", ids(got))
		}
		want := peer(name, name == "seeder")
		if !slices.Equal(p.Addrs, want.Addrs) || p.Seeder != want.Seeder {
			t.Errorf("peer %+v, want addrs %v seeder %v", p, want.Addrs, want.Seeder)
		}
		if name == "partial2" && (p.Have != 2 || p.Complete) {
			t.Errorf("peer %+v, want have 2, incomplete", p)
		}
	}
	if all, _ := f.client.Peers(ctx, d, ""); len(all) != 9 {
		t.Errorf("handout without self: %v, want 9 peers", ids(all))
	}
	if none, err := f.client.Peers(ctx, digest.FromString("nobody"), trackertest.ID("self")); err != nil || len(none) != 0 {
		t.Errorf("unknown digest: %v, %v; want no peers", none, err)
	}
	if got := f.metric(t, "shoal_tracker_peers", "", ""); got != 10 {
		t.Errorf("peers gauge %v, want 10", got)
	}
}

func TestHandoutCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *server.Config) { c.MaxHandout = 5 })
	d := digest.FromString("layer")
	for i := range 7 {
		f.announce(t, peer(fmt.Sprintf("complete%d", i), false), tracker.BlobState{Digest: d, Complete: true})
		f.announce(t, peer(fmt.Sprintf("partial%d", i), false), tracker.BlobState{Digest: d})
	}
	got, err := f.client.Peers(context.Background(), d, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("handout of %d peers, want 5", len(got))
	}
	for _, p := range got {
		if !p.Complete {
			t.Errorf("handout %v: incomplete peer while complete ones were left out", ids(got))
		}
	}
}

func TestPeerExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil) // TTL 9s
	d := digest.FromString("layer")
	ctx := context.Background()
	state := tracker.BlobState{Digest: d, Have: 1}

	f.announce(t, peer("early", false), state)
	f.announce(t, peer("steady", false), state)
	f.clock.Advance(5 * time.Second)
	f.announce(t, peer("late", false), state)
	f.announce(t, peer("steady", false), state)
	f.clock.Advance(5 * time.Second)

	got, err := f.client.Peers(ctx, d, "")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids(got))
	if g := ids(got); len(g) != 2 || slices.Contains(g, "early") {
		t.Fatalf("after 10s: %v, want late and steady", g)
	}
	f.clock.Advance(5 * time.Second)
	if got, _ := f.client.Peers(ctx, d, ""); len(got) != 0 {
		t.Fatalf("after 15s: %v, want nobody", ids(got))
	}
	if got := f.metric(t, "shoal_tracker_peers", "", ""); got != 0 {
		t.Errorf("peers gauge %v after expiry, want 0", got)
	}

	// An announce sweeps blobs nobody asks for.
	f.announce(t, peer("a", false), tracker.BlobState{Digest: digest.FromString("forgotten")})
	f.clock.Advance(10 * time.Second)
	f.announce(t, peer("b", false), state)
	if got := f.metric(t, "shoal_tracker_peers", "", ""); got != 1 {
		t.Errorf("peers gauge %v after a sweep, want 1", got)
	}
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	wrong, err := tracker.NewClient(f.tr.URL, "not-the-token")
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromString("layer")
	if _, err := wrong.Announce(ctx, tracker.Announce{Peer: peer("p", false)}); !errors.Is(err, tracker.ErrUnauthorized) {
		t.Errorf("Announce: %v, want ErrUnauthorized", err)
	}
	if _, err := wrong.Peers(ctx, d, ""); !errors.Is(err, tracker.ErrUnauthorized) {
		t.Errorf("Peers: %v, want ErrUnauthorized", err)
	}
	if _, err := wrong.MetaInfo(ctx, tracker.Source{Repo: "library/alpine", Digest: d}, -1); !errors.Is(err, tracker.ErrUnauthorized) {
		t.Errorf("MetaInfo: %v, want ErrUnauthorized", err)
	}
	if n := f.seeder.Calls(d); n != 0 {
		t.Errorf("an unauthorized request started %d seedings", n)
	}

	for name, header := range map[string]string{
		"none":       "",
		"wrong":      "Bearer nope",
		"basic":      "Basic " + trackertest.Token,
		"no scheme":  trackertest.Token,
		"lower case": "bearer " + trackertest.Token,
		"suffix":     "Bearer " + trackertest.Token + "x",
	} {
		req, _ := http.NewRequest(http.MethodGet, f.tr.URL+"/v1/blobs/"+d.String()+"/peers", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: HTTP %d, WWW-Authenticate %q; want 401 with a challenge", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}

	resp, err := http.Get(f.tr.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: HTTP %d", resp.StatusCode)
	}
}

// firstProgress long-polls for src's metainfo from nothing known, lets the
// seeder report the first n pieces of info and returns the answer, which
// must hold those.
func (f *fixture) firstProgress(t *testing.T, src tracker.Source, info *piece.Info, n int) *piece.Info {
	t.Helper()
	got := make(chan *piece.Info)
	go func() {
		i, err := f.client.MetaInfo(context.Background(), src, 0)
		if err != nil {
			t.Error(err)
		}
		got <- i
	}()
	<-f.seeder.Started(info.Digest)
	f.seeder.Emit(info.Digest, trackertest.Prefix(info, n))
	i := <-got
	if i == nil || !slices.Equal(i.Pieces, info.Pieces[:n]) {
		t.Fatalf("first progress: %+v, want %d pieces", i, n)
	}
	return i
}

func TestMetaInfoProgressive(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	info := testInfo(t)
	src := tracker.Source{Registry: "registry.example:5000", Repo: "team/app", Digest: info.Digest}

	// The first asker long-polls until the seeder's first progress.
	f.firstProgress(t, src, info, 2)
	got := make(chan *piece.Info)
	for _, have := range []int{2, 4} {
		go func() {
			i, err := f.client.MetaInfo(ctx, src, have)
			if err != nil {
				t.Error(err)
			}
			got <- i
		}()
		f.seeder.Emit(info.Digest, trackertest.Prefix(info, have+2))
		if i := <-got; i == nil || !slices.Equal(i.Pieces, info.Pieces[:have+2]) {
			t.Fatalf("after have=%d: %+v, want %d pieces", have, i, have+2)
		}
	}
	f.seeder.Finish(info.Digest, nil)

	// Complete: answered at once, whatever the asker holds, without seeding again.
	for _, have := range []int{-1, 6, 100} {
		i, err := f.client.MetaInfo(ctx, src, have)
		if err != nil || !i.Complete() || !slices.Equal(i.Pieces, info.Pieces) {
			t.Fatalf("have=%d after completion: %+v, %v", have, i, err)
		}
	}
	if n := f.seeder.Calls(info.Digest); n != 1 {
		t.Errorf("Seed called %d times, want 1", n)
	}
	if srcs := f.seeder.Sources(); srcs[0] != src {
		t.Errorf("seeded %+v, want %+v", srcs[0], src)
	}
	f.tr.Close() // waits for the seeding to be counted
	if n := f.metric(t, "shoal_tracker_seeds_total", "result", "ok"); n != 1 {
		t.Errorf("seeds_total{ok} = %v, want 1", n)
	}
}

// TestMetaInfoAfter: an agent that holds the first hashes of a blob is
// sent only the later ones (from=N), and grows what it holds by them; a
// from beyond what the tracker knows gets the whole Info; a bad from is
// refused with 400.
func TestMetaInfoAfter(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	info := testInfo(t)
	src := tracker.Source{Repo: "team/app", Digest: info.Digest}
	known := f.firstProgress(t, src, info, 2)
	f.seeder.Emit(info.Digest, trackertest.Prefix(info, 5))
	grown, err := f.client.MetaInfoAfter(ctx, src, known)
	if err != nil || !slices.Equal(grown.Pieces, info.Pieces[:5]) {
		t.Fatalf("MetaInfoAfter 2 known: %+v, %v; want 5 pieces", grown, err)
	}
	if len(known.Pieces) != 2 {
		t.Errorf("MetaInfoAfter changed the Info it was given: %d pieces", len(known.Pieces))
	}

	get := func(query string) (int, tracker.MetaInfoDelta) {
		t.Helper()
		var d tracker.MetaInfoDelta
		code, _, _ := f.get(t, "/v1/blobs/"+info.Digest.String()+"/metainfo?repo=team/app&pieces="+strconv.Itoa(piece.Policy)+query, &d)
		return code, d
	}
	if code, d := get("&from=3"); code != http.StatusOK || d.From != 3 || !slices.Equal(d.Pieces, info.Pieces[3:5]) {
		t.Errorf("from=3: HTTP %d, from %d, %d pieces; want the 2 after the first 3", code, d.From, len(d.Pieces))
	}
	if code, d := get("&from=9"); code != http.StatusOK || d.From != 0 || len(d.Pieces) != 5 {
		t.Errorf("from=9 with 5 known: HTTP %d, from %d, %d pieces; want the whole Info", code, d.From, len(d.Pieces))
	}
	for _, bad := range []string{"-1", "x", "99999999"} {
		if code, _ := get("&from=" + bad); code != http.StatusBadRequest {
			t.Errorf("from=%s: HTTP %d, want 400", bad, code)
		}
	}
}

func TestMetaInfoDedup(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	info := testInfo(t)
	src := tracker.Source{Repo: "library/alpine", Digest: info.Digest}

	const askers = 50
	var wg sync.WaitGroup
	errs := make(chan error, askers)
	for range askers {
		wg.Go(func() {
			i, err := f.client.MetaInfo(context.Background(), src, 0)
			if err == nil && !i.Complete() {
				err = fmt.Errorf("incomplete info: %d pieces", len(i.Pieces))
			}
			errs <- err
		})
	}
	<-f.seeder.Started(info.Digest)
	f.seeder.Complete(info)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.seeder.Calls(info.Digest); n != 1 {
		t.Errorf("Seed called %d times for %d askers, want 1", n, askers)
	}
}

func TestSeedErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		script func(s *trackertest.Seeder, info *piece.Info)
		want   error
	}{
		{"not found", func(s *trackertest.Seeder, info *piece.Info) {
			s.Finish(info.Digest, fmt.Errorf("origin: manifest unknown: %w", tracker.ErrNotFound))
		}, tracker.ErrNotFound},
		{"unreachable", func(s *trackertest.Seeder, info *piece.Info) {
			s.Finish(info.Digest, fmt.Errorf("origin: dial: %w", tracker.ErrUnavailable))
		}, tracker.ErrUnavailable},
		{"unclassified", func(s *trackertest.Seeder, info *piece.Info) {
			s.Finish(info.Digest, errors.New("disk full"))
		}, tracker.ErrUnavailable},
		{"broke off mid-blob", func(s *trackertest.Seeder, info *piece.Info) {
			s.Emit(info.Digest, trackertest.Prefix(info, 3))
			s.Finish(info.Digest, fmt.Errorf("origin: connection reset: %w", tracker.ErrUnavailable))
		}, tracker.ErrUnavailable},
		{"returned incomplete", func(s *trackertest.Seeder, info *piece.Info) {
			s.Emit(info.Digest, trackertest.Prefix(info, 3))
			s.Finish(info.Digest, nil)
		}, tracker.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil) // SeedErrorTTL 5s
			ctx := context.Background()
			info := testInfo(t)
			src := tracker.Source{Repo: "library/alpine", Digest: info.Digest}
			tc.script(f.seeder, info)

			// have = 3 makes the askers of the partial cases wait for the end.
			if _, err := f.client.MetaInfo(ctx, src, 3); !errors.Is(err, tc.want) {
				t.Fatalf("MetaInfo: %v, want %v", err, tc.want)
			}
			f.clock.Advance(4 * time.Second)
			if _, err := f.client.MetaInfo(ctx, src, -1); !errors.Is(err, tc.want) {
				t.Fatalf("MetaInfo within the error TTL: %v, want %v", err, tc.want)
			}
			if n := f.seeder.Calls(info.Digest); n != 1 {
				t.Fatalf("Seed called %d times within the error TTL, want 1", n)
			}

			f.clock.Advance(time.Second)
			f.seeder.Complete(info)
			i, err := f.client.MetaInfo(ctx, src, 0)
			if err != nil || !i.Complete() {
				t.Fatalf("MetaInfo after the error TTL: %+v, %v", i, err)
			}
			if n := f.seeder.Calls(info.Digest); n != 2 {
				t.Errorf("Seed called %d times, want 2", n)
			}
		})
	}
}

func TestSeedErrorIsPerSource(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	info := testInfo(t)
	wrongRepo := tracker.Source{Repo: "library/wrong", Digest: info.Digest}
	f.seeder.Finish(info.Digest, tracker.ErrNotFound)
	if _, err := f.client.MetaInfo(ctx, wrongRepo, 0); !errors.Is(err, tracker.ErrNotFound) {
		t.Fatalf("MetaInfo: %v, want ErrNotFound", err)
	}
	// The same blob from the right repository is not blocked by the failure.
	f.seeder.Complete(info)
	if _, err := f.client.MetaInfo(ctx, tracker.Source{Repo: "library/right", Digest: info.Digest}, 0); err != nil {
		t.Fatal(err)
	}
	if n := f.metric(t, "shoal_tracker_seeds_total", "result", "not_found"); n != 1 {
		t.Errorf("seeds_total{not_found} = %v, want 1", n)
	}
}

func TestInconsistentProgressIgnored(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	info := testInfo(t)
	src := tracker.Source{Repo: "library/alpine", Digest: info.Digest}

	f.seeder.Emit(info.Digest, trackertest.Prefix(info, 2))
	if i, err := f.client.MetaInfo(ctx, src, 0); err != nil || len(i.Pieces) != 2 {
		t.Fatalf("MetaInfo: %+v, %v", i, err)
	}
	forked := trackertest.Prefix(info, 4)
	forked.Pieces[1] = piece.Sum([]byte("forged"))
	resized := trackertest.Prefix(info, 4)
	resized.Size++
	other := trackertest.Prefix(info, 4)
	other.Digest = digest.FromString("another blob")
	invalid := trackertest.Prefix(info, 4)
	invalid.PieceSize = 0
	for _, bad := range []*piece.Info{forked, resized, other, invalid, trackertest.Prefix(info, 1), nil} {
		f.seeder.Emit(info.Digest, bad)
	}
	f.seeder.Emit(info.Digest, trackertest.Prefix(info, 3))

	i, err := f.client.MetaInfo(ctx, src, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(i.Pieces, info.Pieces[:3]) {
		t.Fatalf("got %d pieces %v, want the 3 consistent ones", len(i.Pieces), i.Pieces)
	}
}

func TestMetaInfoWaitEnds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *server.Config) { c.MetaInfoWait = 20 * time.Millisecond })
	ctx := context.Background()
	info := testInfo(t)
	src := tracker.Source{Repo: "library/alpine", Digest: info.Digest}

	if _, err := f.client.MetaInfo(ctx, src, 0); !errors.Is(err, tracker.ErrPending) {
		t.Fatalf("nothing known yet: %v, want ErrPending", err)
	}
	f.seeder.Emit(info.Digest, trackertest.Prefix(info, 1))
	if i, err := f.client.MetaInfo(ctx, src, 0); err != nil || len(i.Pieces) != 1 {
		t.Fatalf("MetaInfo: %+v, %v", i, err)
	}
	// No growth within the wait: answered with what is known.
	if i, err := f.client.MetaInfo(ctx, src, 1); err != nil || len(i.Pieces) != 1 {
		t.Fatalf("MetaInfo after the wait: %+v, %v", i, err)
	}
	if n := f.metric(t, "shoal_tracker_metainfo_requests_total", "result", "pending"); n != 1 {
		t.Errorf("metainfo_requests_total{pending} = %v, want 1", n)
	}
}

func TestMetaInfoLRU(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *server.Config) { c.MaxInfos = 2 })
	ctx := context.Background()
	var infos []*piece.Info
	for range 3 {
		info := testInfo(t)
		infos = append(infos, info)
		f.seeder.Complete(info)
		if _, err := f.client.MetaInfo(ctx, tracker.Source{Repo: "a/b", Digest: info.Digest}, 0); err != nil {
			t.Fatal(err)
		}
	}
	// LRU now holds infos[2] and infos[1]; asking for infos[2] makes infos[1]
	// the least recently used, so seeding infos[0] again evicts it.
	ask := func(info *piece.Info) {
		t.Helper()
		if i, err := f.client.MetaInfo(ctx, tracker.Source{Repo: "a/b", Digest: info.Digest}, 0); err != nil || !i.Complete() {
			t.Fatalf("MetaInfo: %+v, %v", i, err)
		}
	}
	ask(infos[2])
	f.seeder.Complete(infos[0])
	ask(infos[0])
	ask(infos[2])
	for n, want := range []int{2, 1, 1} {
		if got := f.seeder.Calls(infos[n].Digest); got != want {
			t.Errorf("info %d: Seed called %d times, want %d", n, got, want)
		}
	}
	f.seeder.Complete(infos[1])
	ask(infos[1])
	if got := f.seeder.Calls(infos[1].Digest); got != 2 {
		t.Errorf("evicted info: Seed called %d times, want 2", got)
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	info := testInfo(t)
	src := tracker.Source{Repo: "library/alpine", Digest: info.Digest}
	done := make(chan error)
	go func() {
		_, err := f.client.MetaInfo(context.Background(), src, 0)
		done <- err
	}()
	<-f.seeder.Started(info.Digest)
	f.tr.Close() // the seeding is stopped and the long-poll answered
	if err := <-done; !errors.Is(err, tracker.ErrUnavailable) {
		t.Errorf("long-poll during Close: %v, want ErrUnavailable", err)
	}
	if _, err := f.client.MetaInfo(context.Background(), src, -1); !errors.Is(err, tracker.ErrUnavailable) {
		t.Errorf("MetaInfo after Close: %v, want ErrUnavailable", err)
	}
	if n := f.metric(t, "shoal_tracker_seeds_total", "result", "canceled"); n != 1 {
		t.Errorf("seeds_total{canceled} = %v, want 1", n)
	}
}

func TestClientCanceled(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	info := testInfo(t)
	done := make(chan error)
	go func() {
		_, err := f.client.MetaInfo(ctx, tracker.Source{Repo: "a/b", Digest: info.Digest}, 0)
		done <- err
	}()
	<-f.seeder.Started(info.Digest)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled MetaInfo: %v, want context.Canceled", err)
	}
	// The seeding belongs to the tracker, not to the asker that started it.
	f.seeder.Complete(info)
	if i, err := f.client.MetaInfo(context.Background(), tracker.Source{Repo: "a/b", Digest: info.Digest}, 0); err != nil || !i.Complete() {
		t.Fatalf("MetaInfo: %+v, %v", i, err)
	}
	if n := f.seeder.Calls(info.Digest); n != 1 {
		t.Errorf("Seed called %d times, want 1", n)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*server.Config)
		ok   bool
	}{
		{"defaults with token", func(*server.Config) {}, true},
		{"no token", func(c *server.Config) { c.Tokens = nil }, false},
		{"token with space", func(c *server.Config) { c.Tokens = []string{"a b"} }, false},
		{"huge token", func(c *server.Config) { c.Tokens = []string{strings.Repeat("x", 5000)} }, false},
		{"one bad token of two", func(c *server.Config) { c.Tokens = append(c.Tokens, "") }, false},
		{"two tokens", func(c *server.Config) { c.Tokens = append(c.Tokens, "next-secret") }, true},
		{"zero interval", func(c *server.Config) { c.AnnounceInterval = 0 }, false},
		{"TTL below interval", func(c *server.Config) { c.PeerTTL = time.Second }, false},
		{"no handout", func(c *server.Config) { c.MaxHandout = 0 }, false},
		{"no seed timeout", func(c *server.Config) { c.SeedTimeout = 0 }, false},
		{"no wait", func(c *server.Config) { c.MetaInfoWait = 0 }, false},
		{"negative error TTL", func(c *server.Config) { c.SeedErrorTTL = -1 }, false},
		{"no seeding", func(c *server.Config) { c.MaxSeeding = 0 }, false},
		{"no info cache", func(c *server.Config) { c.MaxInfos = 0 }, false},
	} {
		cfg := server.DefaultConfig()
		cfg.Tokens = []string{"secret"}
		tc.edit(&cfg)
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if err := server.DefaultConfig().Validate(); err == nil {
		t.Error("DefaultConfig without a token validated")
	}
	if _, err := server.New(server.Config{}); err == nil {
		t.Error("New accepted an empty config")
	}
}

func TestSeedErrorWithoutTTL(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *server.Config) { c.SeedErrorTTL = 0 })
	ctx := context.Background()
	info := testInfo(t)
	src := tracker.Source{Repo: "library/alpine", Digest: info.Digest}
	// The askers waiting on a seeding hear its failure instead of starting
	// another one.
	f.seeder.Finish(info.Digest, tracker.ErrNotFound)
	if _, err := f.client.MetaInfo(ctx, src, 0); !errors.Is(err, tracker.ErrNotFound) {
		t.Fatalf("MetaInfo: %v, want ErrNotFound", err)
	}
	if n := f.seeder.Calls(info.Digest); n != 1 {
		t.Fatalf("Seed called %d times, want 1", n)
	}
	f.seeder.Complete(info)
	if _, err := f.client.MetaInfo(ctx, src, 0); err != nil {
		t.Fatal(err)
	}
}

func TestMaxSeeding(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *server.Config) { c.MaxSeeding = 1 })
	ctx := context.Background()
	a, b := testInfo(t), testInfo(t)
	f.seeder.Emit(a.Digest, trackertest.Prefix(a, 1))
	if _, err := f.client.MetaInfo(ctx, tracker.Source{Repo: "a/b", Digest: a.Digest}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.MetaInfo(ctx, tracker.Source{Repo: "a/b", Digest: b.Digest}, 0); !errors.Is(err, tracker.ErrUnavailable) {
		t.Fatalf("second seeding beyond the limit: %v, want ErrUnavailable", err)
	}
	f.seeder.Complete(a)
	if _, err := f.client.MetaInfo(ctx, tracker.Source{Repo: "a/b", Digest: a.Digest}, 6); err != nil {
		t.Fatal(err)
	}
	f.seeder.Complete(b)
	if i, err := f.client.MetaInfo(ctx, tracker.Source{Repo: "a/b", Digest: b.Digest}, 0); err != nil || !i.Complete() {
		t.Fatalf("after the first seeding ended: %+v, %v", i, err)
	}
}

// The in-process methods, which the tracker's own seeder uses, answer what
// the HTTP API answers.
func TestInProcess(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	info := testInfo(t)
	src := tracker.Source{Repo: "library/alpine", Digest: info.Digest}

	seeder := peer("seeder1", true)
	interval, err := f.tr.Announce(ctx, tracker.Announce{Peer: seeder, Blobs: []tracker.BlobState{{Digest: info.Digest, Have: 2}}})
	if err != nil || interval != server.DefaultConfig().AnnounceInterval {
		t.Fatalf("Announce = %v, %v", interval, err)
	}
	// Seen over HTTP, and in process.
	got, err := f.client.Peers(ctx, info.Digest, "")
	if err != nil || !slices.Equal(ids(got), []string{"seeder1"}) {
		t.Fatalf("HTTP Peers = %v, %v", ids(got), err)
	}
	if got, err := f.tr.Peers(ctx, info.Digest, seeder.ID); err != nil || len(got) != 0 {
		t.Fatalf("Peers excluding self = %v, %v", ids(got), err)
	}

	f.seeder.Complete(info)
	mi, err := f.tr.MetaInfo(ctx, src, -1)
	if err != nil || !mi.Complete() || mi.Digest != info.Digest {
		t.Fatalf("MetaInfo = %+v, %v", mi, err)
	}

	for name, err := range map[string]error{
		"announce without addresses": func() error {
			_, err := f.tr.Announce(ctx, tracker.Announce{Peer: tracker.Peer{ID: "x"}})
			return err
		}(),
		"peers of a bad digest": func() error { _, err := f.tr.Peers(ctx, "sha256:nope", ""); return err }(),
		"peers for a bad self":  func() error { _, err := f.tr.Peers(ctx, info.Digest, "no spaces"); return err }(),
		"metainfo of a bad repo": func() error {
			_, err := f.tr.MetaInfo(ctx, tracker.Source{Repo: "Bad", Digest: info.Digest}, -1)
			return err
		}(),
		"metainfo with have out of range": func() error { _, err := f.tr.MetaInfo(ctx, src, -2); return err }(),
	} {
		if !errors.Is(err, tracker.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// A server not yet started has no seeder: a metainfo demand is unavailable,
// not a crash.
func TestNotStarted(t *testing.T) {
	t.Parallel()
	cfg := server.DefaultConfig()
	cfg.Tokens = []string{"secret"}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	info := testInfo(t)
	if _, err := s.MetaInfo(context.Background(), tracker.Source{Repo: "a/b", Digest: info.Digest}, -1); !errors.Is(err, tracker.ErrUnavailable) {
		t.Fatalf("MetaInfo before Start: %v, want ErrUnavailable", err)
	}
	if err := s.Start(nil); err == nil {
		t.Error("Start(nil) accepted")
	}
	if err := s.Start(trackertest.NewSeeder()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(trackertest.NewSeeder()); err == nil {
		t.Error("a second Start accepted")
	}
}

// An announce is the peer's whole list: a blob it no longer lists (evicted)
// is withdrawn at once, not left to expire.
func TestAnnounceWithdraws(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	a, b := digest.FromString("a"), digest.FromString("b")
	p := peer("agent1", false)
	f.announce(t, p, tracker.BlobState{Digest: a, Have: 1, Complete: true}, tracker.BlobState{Digest: b, Have: 1, Complete: true})
	f.announce(t, p, tracker.BlobState{Digest: b, Have: 1, Complete: true})
	if got, err := f.client.Peers(ctx, a, ""); err != nil || len(got) != 0 {
		t.Errorf("peers of the withdrawn blob: %v, %v; want none", ids(got), err)
	}
	if got, err := f.client.Peers(ctx, b, ""); err != nil || !slices.Equal(ids(got), []string{"agent1"}) {
		t.Errorf("peers of the blob still listed: %v, %v", ids(got), err)
	}
	if n := f.metric(t, "shoal_tracker_peers", "", ""); n != 1 {
		t.Errorf("shoal_tracker_peers = %v, want 1", n)
	}
}

// An agent that claims to be a seeder over the API is refused and counted:
// the only seeder is the tracker's own, in process.
func TestSeederClaimRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	d := digest.FromString("layer")
	_, err := f.as(t, "impostor").Announce(t.Context(), tracker.Announce{Peer: peer("impostor", true), Blobs: []tracker.BlobState{{Digest: d, Have: 1}}})
	if !errors.Is(err, tracker.ErrUnauthorized) {
		t.Fatalf("announce as a seeder: %v, want ErrUnauthorized", err)
	}
	if got, err := f.client.Peers(t.Context(), d, ""); err != nil || len(got) != 0 {
		t.Errorf("the impostor is handed out: %v, %v", ids(got), err)
	}
	if n := f.metric(t, "shoal_tracker_announces_refused_total", "", ""); n != 1 {
		t.Errorf("refused announces counted %v, want 1", n)
	}
}

// TestAnnounceSignatures: an API announce counts only when the key of its
// peer ID signed it, recently; each refusal is a 401 counted by reason.
func TestAnnounceSignatures(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := t.Context()
	d := digest.FromString("layer")
	blobs := []tracker.BlobState{{Digest: d, Have: 1}}
	behind := trackertest.NewClock(f.clock.Now().Add(-tracker.MaxSignatureSkew - time.Minute))
	for _, tc := range []struct {
		name   string
		client *tracker.Client
		as     tracker.Peer
		reason string
	}{
		{"unsigned", f.client, peer("victim", false), "unsigned"},
		{"another peer's ID", f.as(t, "mallory"), peer("victim", false), "bad_signature"},
		{"stale", f.tr.ClientAs(t, "victim", tracker.WithClock(behind)), peer("victim", false), "stale"},
		{"fake peer ID", f.as(t, "mallory"), tracker.Peer{ID: "victim", Addrs: []string{"/a"}}, "no_public_key"},
	} {
		_, err := tc.client.Announce(ctx, tracker.Announce{Peer: tc.as, Blobs: blobs})
		if !errors.Is(err, tracker.ErrUnauthorized) {
			t.Errorf("%s: %v, want ErrUnauthorized", tc.name, err)
		}
		if got := f.metric(t, "shoal_tracker_announces_refused_total", "reason", tc.reason); got != 1 {
			t.Errorf("%s: refused{reason=%q} = %v, want 1", tc.name, tc.reason, got)
		}
	}
	if got, err := f.client.Peers(ctx, d, ""); err != nil || len(got) != 0 {
		t.Fatalf("refused announces were recorded: %v, %v", ids(got), err)
	}
	// The victim's own, signed announce counts.
	f.announce(t, peer("victim", false), blobs...)
	if got, err := f.client.Peers(ctx, d, ""); err != nil || !slices.Equal(ids(got), []string{"victim"}) {
		t.Fatalf("peers %v, %v; want the victim", ids(got), err)
	}
}

// TestListed: GET /v1/peers/{id} answers whether an ID announced within
// the peer TTL; for the first TTL after a start it cannot tell an unlisted
// ID from one not re-announced yet, and says so with 503.
func TestListed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil) // TTL 9s
	ctx := t.Context()
	f.announce(t, peer("agent1", false))
	if ok, err := f.client.Listed(ctx, trackertest.ID("agent1")); !ok || err != nil {
		t.Errorf("listed agent1: %v, %v", ok, err)
	}
	if _, err := f.client.Listed(ctx, trackertest.ID("stranger")); !errors.Is(err, tracker.ErrUnavailable) {
		t.Errorf("stranger right after the start: %v, want ErrUnavailable", err)
	}
	f.clock.Advance(5 * time.Second)
	f.announce(t, peer("agent2", false))
	f.clock.Advance(5 * time.Second)
	for name, want := range map[string]bool{"agent1": false, "agent2": true, "stranger": false} {
		if ok, err := f.client.Listed(ctx, trackertest.ID(name)); ok != want || err != nil {
			t.Errorf("listed %s after 10s: %v, %v; want %v", name, ok, err, want)
		}
		if ok, err := f.tr.Listed(ctx, trackertest.ID(name)); ok != want || err != nil {
			t.Errorf("in process, listed %s after 10s: %v, %v; want %v", name, ok, err, want)
		}
	}
	if _, err := f.client.Listed(ctx, "not an id"); !errors.Is(err, tracker.ErrInvalid) {
		t.Errorf("bad ID: %v, want ErrInvalid", err)
	}
}
