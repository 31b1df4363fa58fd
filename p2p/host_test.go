package p2p_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/p2ptest"
	"github.com/shoal-dev/shoal/p2p/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every blocking call so a bug fails instead of hanging.
const testTimeout = 20 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

type node struct {
	*p2p.Host
	src *p2ptest.MemorySource
	reg *prometheus.Registry
}

func newNode(t testing.TB, mutate func(*p2p.Config)) *node {
	t.Helper()
	return newNodeWith(t, mutate, nil)
}

func newNodeWith(t testing.TB, mutate func(*p2p.Config), src p2p.Source) *node {
	t.Helper()
	cfg := p2p.DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	mem := p2ptest.NewMemorySource()
	if src == nil {
		src = mem
	}
	reg := prometheus.NewRegistry()
	h, err := p2p.New(cfg, p2p.WithRegisterer(reg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	if err := h.Serve(src); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	return &node{Host: h, src: mem, reg: reg}
}

func connect(t testing.TB, a, b *node) {
	t.Helper()
	if err := a.Connect(context.Background(), b.AddrInfo()); err != nil {
		t.Fatalf("Connect: %v", err)
	}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// counter sums the values of a counter or gauge family in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return counterWith(t, reg, name, "")
}

// counterWith sums the samples of a counter or gauge family in reg whose
// result label is result; "" sums them all.
func counterWith(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if result != "" && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == "result" && l.GetValue() == result
			}) {
				continue
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		mutate func(*p2p.Config)
		ok     bool
	}{
		"default":          {func(*p2p.Config) {}, true},
		"noise":            {func(c *p2p.Config) { c.Security = p2p.SecurityNoise }, true},
		"ip6 and dns":      {func(c *p2p.Config) { c.ListenAddrs = []string{"/ip6/::1/tcp/0", "/dns/localhost/tcp/7000"} }, true},
		"psk":              {func(c *p2p.Config) { c.PSK = make([]byte, 32) }, true},
		"no addrs":         {func(c *p2p.Config) { c.ListenAddrs = nil }, false},
		"garbage addr":     {func(c *p2p.Config) { c.ListenAddrs = []string{"localhost:80"} }, false},
		"quic addr":        {func(c *p2p.Config) { c.ListenAddrs = []string{"/ip4/127.0.0.1/udp/0/quic-v1"} }, false},
		"bare ip":          {func(c *p2p.Config) { c.ListenAddrs = []string{"/ip4/127.0.0.1"} }, false},
		"unknown security": {func(c *p2p.Config) { c.Security = "plaintext" }, false},
		"empty security":   {func(c *p2p.Config) { c.Security = "" }, false},
		"short psk":        {func(c *p2p.Config) { c.PSK = make([]byte, 16) }, false},
		"zero uploads":     {func(c *p2p.Config) { c.MaxUploads = 0 }, false},
		"queue":            {func(c *p2p.Config) { c.UploadQueue = time.Second }, true},
		"negative queue":   {func(c *p2p.Config) { c.UploadQueue = -1 }, false},
		"queue past stall": {func(c *p2p.Config) { c.UploadQueue = c.StallTimeout }, false},
		"negative rate":    {func(c *p2p.Config) { c.UploadRate = -1 }, false},
		"zero peers":       {func(c *p2p.Config) { c.MaxPeers = 0 }, false},
		"zero stall":       {func(c *p2p.Config) { c.StallTimeout = 0 }, false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := p2p.DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, p2p.ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			if !tc.ok {
				if _, err := p2p.New(cfg); !errors.Is(err, p2p.ErrInvalidConfig) {
					t.Fatalf("New = %v, want ErrInvalidConfig", err)
				}
			}
		})
	}
}

func TestAddrs(t *testing.T) {
	t.Parallel()
	a := newNode(t, nil)
	addrs := a.Addrs()
	if len(addrs) == 0 {
		t.Fatal("no addresses")
	}
	infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
	if err != nil || len(infos) != 1 || infos[0].ID != a.ID() {
		t.Fatalf("Addrs %v do not name %s: %v", addrs, a.ID(), err)
	}
	// A peer can dial from the full address alone.
	b := newNode(t, nil)
	if err := b.Connect(testContext(t), infos[0]); err != nil {
		t.Fatal(err)
	}
}

func TestFetch(t *testing.T) {
	t.Parallel()
	server, client := newNode(t, nil), newNode(t, nil)
	connect(t, client, server)
	data := randomBytes(t, 3<<20+12345)
	info := server.src.AddBlob(data, 1<<20)
	ctx := testContext(t)

	var buf []byte
	for n := range info.Count() {
		got, err := client.Fetch(ctx, server.ID(), info.Digest, n, info.Pieces[n], buf)
		if err != nil {
			t.Fatalf("Fetch piece %d: %v", n, err)
		}
		off, length := info.Span(n)
		if !bytes.Equal(got, data[off:off+length]) {
			t.Fatalf("piece %d differs", n)
		}
		buf = got[:0] // reused: the last piece is shorter
	}
	if got := counter(t, server.reg, "shoal_p2p_upload_bytes_total"); got != float64(len(data)) {
		t.Errorf("server counted %v bytes sent, want %d", got, len(data))
	}
	if got := counter(t, client.reg, "shoal_p2p_download_bytes_total"); got != float64(len(data)) {
		t.Errorf("client counted %v bytes received, want %d", got, len(data))
	}
	if got := counter(t, server.reg, "shoal_p2p_peers"); got != 1 {
		t.Errorf("server counts %v peers, want 1", got)
	}
}

// pieceStreams counts the piece streams open on the connections to p.
func pieceStreams(h *p2p.Host, p peer.ID) int {
	n := 0
	for _, c := range h.LibP2P().Network().ConnsToPeer(p) {
		for _, s := range c.GetStreams() {
			if s.Protocol() == p2p.PieceProtocol {
				n++
			}
		}
	}
	return n
}

// TestFetchReusesStream: requests one after another, answered or refused,
// travel on one stream.
func TestFetchReusesStream(t *testing.T) {
	t.Parallel()
	server, client := newNode(t, nil), newNode(t, nil)
	connect(t, client, server)
	data := randomBytes(t, 5000)
	info := server.src.AddBlob(data, 1000)
	ctx := testContext(t)
	for n := range info.Count() {
		if _, err := client.Fetch(ctx, server.ID(), info.Digest, n, info.Pieces[n], nil); err != nil {
			t.Fatalf("Fetch piece %d: %v", n, err)
		}
		if _, err := client.Fetch(ctx, server.ID(), digest.FromString("unknown"), 0, info.Pieces[0], nil); !errors.Is(err, p2p.ErrUnknownBlob) {
			t.Fatalf("Fetch of an unknown blob = %v, want ErrUnknownBlob", err)
		}
	}
	if got := pieceStreams(client.Host, server.ID()); got != 1 {
		t.Errorf("%d piece streams open after %d requests in turn, want 1", got, 2*info.Count())
	}
	if got := counter(t, server.reg, "shoal_p2p_upload_bytes_total"); got != float64(len(data)) {
		t.Errorf("server counted %v bytes sent, want %d", got, len(data))
	}
}

// TestFetchRetriesClosedStream: a server that closes each stream after one
// answer (as one whose idle timeout ran out) costs the client a retry on a
// new stream, not a failed fetch.
func TestFetchRetriesClosedStream(t *testing.T) {
	t.Parallel()
	client := newNode(t, nil)
	data := randomBytes(t, 300)
	info := p2ptest.NewMemorySource().AddBlob(data, 100)
	server := newNode(t, nil)
	var opened atomic.Int32
	server.LibP2P().SetStreamHandler(p2p.PieceProtocol, func(s network.Stream) {
		opened.Add(1)
		req, err := wire.Read(bufio.NewReader(s))
		if err != nil {
			s.Reset()
			return
		}
		n := req.(wire.PieceRequest).Index
		off, length := info.Span(n)
		s.Write(mustAppend(t, wire.PieceHeader{Length: length}))
		s.Write(data[off : off+length])
		s.Close()
	})
	connect(t, client, server)
	ctx := testContext(t)
	for n := range info.Count() {
		got, err := client.Fetch(ctx, server.ID(), info.Digest, n, info.Pieces[n], nil)
		if err != nil {
			t.Fatalf("Fetch piece %d: %v", n, err)
		}
		if off, length := info.Span(n); !bytes.Equal(got, data[off:off+length]) {
			t.Fatalf("piece %d differs", n)
		}
	}
	if got := opened.Load(); got != int32(info.Count()) {
		t.Errorf("server saw %d streams for %d pieces, want one each", got, info.Count())
	}
}

func TestFetchRefusals(t *testing.T) {
	t.Parallel()
	server, client := newNode(t, nil), newNode(t, nil)
	connect(t, client, server)
	info := server.src.AddBlob(randomBytes(t, 1000), 100)
	partial := *info
	partial.Digest = digest.FromString("partial")
	if err := server.src.Register(&partial); err != nil {
		t.Fatal(err)
	}
	unknown := digest.FromString("unknown")
	ctx := testContext(t)

	for name, tc := range map[string]struct {
		dgst digest.Digest
		n    int
		want error
	}{
		"no piece":          {partial.Digest, 0, p2p.ErrNoPiece},
		"unknown blob":      {unknown, 0, p2p.ErrUnknownBlob},
		"index out of blob": {info.Digest, 99, p2p.ErrNoPiece},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := client.Fetch(ctx, server.ID(), tc.dgst, tc.n, info.Pieces[0], nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Fetch = %v, want %v", err, tc.want)
			}
		})
	}
	// Arguments the wire cannot carry fail before anything is sent.
	if _, err := client.Fetch(ctx, server.ID(), "sha256:bad", 0, info.Pieces[0], nil); err == nil {
		t.Error("Fetch with a bad digest succeeded")
	}
	if _, err := client.Fetch(ctx, server.ID(), info.Digest, -1, info.Pieces[0], nil); err == nil {
		t.Error("Fetch of piece -1 succeeded")
	}
	if _, err := client.Fetch(ctx, server.ID(), info.Digest, 0, cid.Undef, nil); err == nil {
		t.Error("Fetch with an undefined CID succeeded")
	}
}

func TestFetchBadPiece(t *testing.T) {
	t.Parallel()
	server, client := newNode(t, nil), newNode(t, nil)
	connect(t, client, server)
	info := server.src.AddBlob(randomBytes(t, 4096), 1024)
	server.src.SetCorrupt(true)
	ctx := testContext(t)
	_, err := client.Fetch(ctx, server.ID(), info.Digest, 1, info.Pieces[1], nil)
	if !errors.Is(err, p2p.ErrBadPiece) {
		t.Fatalf("Fetch from a corrupt source = %v, want ErrBadPiece", err)
	}
	// Asking for piece 1 with the CID of piece 0 is caught the same way.
	server.src.SetCorrupt(false)
	if _, err := client.Fetch(ctx, server.ID(), info.Digest, 1, info.Pieces[0], nil); !errors.Is(err, p2p.ErrBadPiece) {
		t.Fatalf("Fetch with the wrong CID = %v, want ErrBadPiece", err)
	}
	if _, err := client.Fetch(ctx, server.ID(), info.Digest, 1, info.Pieces[1], nil); err != nil {
		t.Fatalf("Fetch after the source healed: %v", err)
	}
}

// gatedSource holds the first read of every piece, which happens with an
// upload slot taken, until release is closed, after announcing it on
// entered.
type gatedSource struct {
	*p2ptest.MemorySource
	entered chan struct{}
	release chan struct{}
}

func (g *gatedSource) Piece(ctx context.Context, dgst digest.Digest, n int) (io.ReadCloser, int64, error) {
	rc, size, err := g.MemorySource.Piece(ctx, dgst, n)
	if err != nil {
		return nil, 0, err
	}
	return &gatedReader{ReadCloser: rc, g: g, ctx: ctx}, size, nil
}

type gatedReader struct {
	io.ReadCloser
	g      *gatedSource
	ctx    context.Context
	passed bool
}

func (r *gatedReader) Read(p []byte) (int, error) {
	if !r.passed {
		r.passed = true
		r.g.entered <- struct{}{}
		select {
		case <-r.g.release:
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
	return r.ReadCloser.Read(p)
}

func TestFetchBusy(t *testing.T) {
	t.Parallel()
	src := &gatedSource{MemorySource: p2ptest.NewMemorySource(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	info := src.AddBlob(randomBytes(t, 2048), 1024)
	server := newNodeWith(t, func(c *p2p.Config) { c.MaxUploads = 1 }, src)
	client := newNode(t, nil)
	connect(t, client, server)
	ctx := testContext(t)

	first := make(chan error, 1)
	go func() {
		_, err := client.Fetch(ctx, server.ID(), info.Digest, 0, info.Pieces[0], nil)
		first <- err
	}()
	<-src.entered // the only upload slot is taken
	if _, err := client.Fetch(ctx, server.ID(), info.Digest, 1, info.Pieces[1], nil); !errors.Is(err, p2p.ErrBusy) {
		t.Fatalf("second Fetch = %v, want ErrBusy", err)
	}
	close(src.release)
	if err := <-first; err != nil {
		t.Fatalf("first Fetch: %v", err)
	}
	// The slot is free again.
	go func() { <-src.entered }()
	if _, err := client.Fetch(ctx, server.ID(), info.Digest, 1, info.Pieces[1], nil); err != nil {
		t.Fatalf("Fetch after the upload ended: %v", err)
	}
	if got := counter(t, server.reg, "shoal_p2p_uploads_total"); got != 3 {
		t.Errorf("server counted %v uploads, want 3", got)
	}
}

// A request beyond MaxUploads waits in line for UploadQueue, first come
// first served, and is refused as busy only when the wait runs out.
func TestFetchQueued(t *testing.T) {
	t.Parallel()
	src := &gatedSource{MemorySource: p2ptest.NewMemorySource(), entered: make(chan struct{}, 2), release: make(chan struct{})}
	info := src.AddBlob(randomBytes(t, 2048), 1024)
	server := newNodeWith(t, func(c *p2p.Config) { c.MaxUploads, c.UploadQueue = 1, 5*time.Second }, src)
	client := newNode(t, nil)
	connect(t, client, server)
	ctx := testContext(t)

	results := make(chan error, 2)
	for n := range 2 {
		go func() {
			_, err := client.Fetch(ctx, server.ID(), info.Digest, n, info.Pieces[n], nil)
			results <- err
		}()
	}
	<-src.entered // one upload holds the slot, the other waits in line
	close(src.release)
	for range 2 {
		if err := <-results; err != nil {
			t.Fatalf("Fetch: %v, want both served", err)
		}
	}

	// A wait that runs out is a refusal.
	short := &gatedSource{MemorySource: p2ptest.NewMemorySource(), entered: make(chan struct{}, 2), release: make(chan struct{})}
	info = short.AddBlob(randomBytes(t, 2048), 1024)
	server = newNodeWith(t, func(c *p2p.Config) { c.MaxUploads, c.UploadQueue = 1, 50*time.Millisecond }, short)
	connect(t, client, server)
	first := make(chan error, 1)
	go func() {
		_, err := client.Fetch(ctx, server.ID(), info.Digest, 0, info.Pieces[0], nil)
		first <- err
	}()
	<-short.entered
	if _, err := client.Fetch(ctx, server.ID(), info.Digest, 1, info.Pieces[1], nil); !errors.Is(err, p2p.ErrBusy) {
		t.Fatalf("Fetch after the wait ran out = %v, want ErrBusy", err)
	}
	close(short.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// rationedSource refuses every piece as rationed, as a seeder does.
type rationedSource struct{ *p2ptest.MemorySource }

func (rationedSource) Piece(context.Context, digest.Digest, int) (io.ReadCloser, int64, error) {
	return nil, 0, p2p.ErrRationed
}

func TestFetchRationed(t *testing.T) {
	t.Parallel()
	src := rationedSource{p2ptest.NewMemorySource()}
	info := src.AddBlob(randomBytes(t, 1024), 1024)
	server := newNodeWith(t, nil, src)
	client := newNode(t, nil)
	connect(t, client, server)
	if _, err := client.Fetch(testContext(t), server.ID(), info.Digest, 0, info.Pieces[0], nil); !errors.Is(err, p2p.ErrRationed) {
		t.Fatalf("Fetch from a rationing source = %v, want ErrRationed", err)
	}
	if got, all := counterWith(t, server.reg, "shoal_p2p_uploads_total", "rationed"), counter(t, server.reg, "shoal_p2p_uploads_total"); got != 1 || all != 1 {
		t.Errorf("server counted %v rationed uploads of %v, want 1 of 1", got, all)
	}
	if got := counterWith(t, client.reg, "shoal_p2p_fetches_total", "rationed"); got != 1 {
		t.Errorf("client counted %v rationed fetches, want 1", got)
	}
}

func TestWatch(t *testing.T) {
	t.Parallel()
	server, client := newNode(t, nil), newNode(t, nil)
	connect(t, client, server)
	data := randomBytes(t, 5*100)
	full := p2ptest.NewMemorySource().AddBlob(data, 100) // the metainfo only
	if err := server.src.Register(full); err != nil {
		t.Fatal(err)
	}
	put := func(n int) {
		t.Helper()
		if err := server.src.Put(full.Digest, n, data[n*100:(n+1)*100]); err != nil {
			t.Fatal(err)
		}
	}
	put(1)
	put(3)
	ctx := testContext(t)

	bf, ch, err := client.Watch(ctx, server.ID(), full.Digest, 5)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if bf.Len() != 5 || bf.Count() != 2 || !bf.Has(1) || !bf.Has(3) {
		t.Fatalf("initial bitfield %08b, want pieces 1 and 3 of 5", bf.Bytes())
	}
	for _, n := range []int{4, 0, 2} {
		put(n)
		select {
		case got, ok := <-ch:
			if !ok || got != n {
				t.Fatalf("got HAVE %d (open %v), want %d", got, ok, n)
			}
		case <-ctx.Done():
			t.Fatalf("no HAVE %d", n)
		}
	}
	select {
	case n, ok := <-ch:
		if ok {
			t.Fatalf("HAVE %d after completion, want the channel closed", n)
		}
	case <-ctx.Done():
		t.Fatal("channel not closed after completion")
	}

	// A complete blob answers with a full bitfield and closes at once.
	bf, ch, err = client.Watch(ctx, server.ID(), full.Digest, 5)
	if err != nil || !bf.Full() {
		t.Fatalf("Watch complete blob: %v, %v", bf, err)
	}
	if _, ok := <-ch; ok {
		t.Fatal("complete blob announced a piece")
	}
}

func TestWatchRefusals(t *testing.T) {
	t.Parallel()
	server, client := newNode(t, nil), newNode(t, nil)
	connect(t, client, server)
	info := server.src.AddBlob(randomBytes(t, 300), 100)
	ctx := testContext(t)
	if _, _, err := client.Watch(ctx, server.ID(), digest.FromString("nope"), 3); !errors.Is(err, p2p.ErrUnknownBlob) {
		t.Errorf("Watch unknown blob = %v, want ErrUnknownBlob", err)
	}
	if _, _, err := client.Watch(ctx, server.ID(), info.Digest, 4); !errors.Is(err, p2p.ErrRemote) {
		t.Errorf("Watch with a wrong piece count = %v, want ErrRemote", err)
	}
	if _, _, err := client.Watch(ctx, server.ID(), info.Digest, 0); err == nil {
		t.Error("Watch of 0 pieces succeeded")
	}
}

func TestWatchCancel(t *testing.T) {
	t.Parallel()
	server, client := newNode(t, nil), newNode(t, nil)
	connect(t, client, server)
	info := p2ptest.NewMemorySource().AddBlob(randomBytes(t, 300), 100)
	if err := server.src.Register(info); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testContext(t))
	_, ch, err := client.Watch(ctx, server.ID(), info.Digest, 3)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range ch {
		t.Fatal("HAVE after cancel")
	}
	// The server notices and ends its side: poll its gauge, there is no
	// event to wait on.
	for counter(t, server.reg, "shoal_p2p_watches_served_active") != 0 {
		time.Sleep(10 * time.Millisecond)
	}
}

// stallingSource serves half of every piece, then blocks until ctx ends.
type stallingSource struct {
	*p2ptest.MemorySource
	started chan struct{}
}

func (s *stallingSource) Piece(ctx context.Context, dgst digest.Digest, n int) (io.ReadCloser, int64, error) {
	rc, size, err := s.MemorySource.Piece(ctx, dgst, n)
	if err != nil {
		return nil, 0, err
	}
	half := io.LimitReader(rc, size/2)
	return io.NopCloser(io.MultiReader(half, &blockReader{ctx: ctx, started: s.started})), size, nil
}

type blockReader struct {
	ctx     context.Context
	started chan struct{}
}

func (b *blockReader) Read([]byte) (int, error) {
	close(b.started)
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

func TestPeerDiesMidTransfer(t *testing.T) {
	t.Parallel()
	data := randomBytes(t, 1<<20)
	stalling := &stallingSource{MemorySource: p2ptest.NewMemorySource(), started: make(chan struct{})}
	info := stalling.AddBlob(data, 1<<20)
	dying := newNodeWith(t, nil, stalling)
	healthy := newNode(t, nil)
	healthy.src.AddBlob(data, 1<<20)
	client := newNode(t, nil)
	connect(t, client, dying)
	connect(t, client, healthy)
	ctx := testContext(t)

	errc := make(chan error, 1)
	go func() {
		_, err := client.Fetch(ctx, dying.ID(), info.Digest, 0, info.Pieces[0], nil)
		errc <- err
	}()
	<-stalling.started
	dying.Close()
	err := <-errc
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch from a dying peer = %v, want a prompt error", err)
	}
	got, err := client.Fetch(ctx, healthy.ID(), info.Digest, 0, info.Pieces[0], nil)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Fetch from the healthy peer: %v", err)
	}
}

func TestFetchContextCancel(t *testing.T) {
	t.Parallel()
	stalling := &stallingSource{MemorySource: p2ptest.NewMemorySource(), started: make(chan struct{})}
	info := stalling.AddBlob(randomBytes(t, 1<<20), 1<<20)
	server := newNodeWith(t, nil, stalling)
	client := newNode(t, nil)
	connect(t, client, server)
	ctx, cancel := context.WithCancel(testContext(t))
	go func() {
		<-stalling.started
		cancel()
	}()
	if _, err := client.Fetch(ctx, server.ID(), info.Digest, 0, info.Pieces[0], nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch = %v, want context.Canceled", err)
	}
}

func TestIdentityPersists(t *testing.T) {
	t.Parallel()
	key := filepath.Join(t.TempDir(), "identity.key")
	withKey := func(c *p2p.Config) { c.KeyFile = key }
	a := newNode(t, withKey)
	id := a.ID()
	a.Close()
	st, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	if b := newNode(t, withKey); b.ID() != id {
		t.Fatalf("restarted as %s, want %s", b.ID(), id)
	}
	if c := newNode(t, nil); c.ID() == id {
		t.Fatal("an ephemeral host reused the persisted identity")
	}

	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := p2p.DefaultConfig()
	cfg.KeyFile = bad
	if _, err := p2p.New(cfg); err == nil {
		t.Fatal("New with a garbage key file succeeded")
	}
	cfg.KeyFile = filepath.Join(t.TempDir(), "missing-dir", "x.key")
	if _, err := p2p.New(cfg); err == nil {
		t.Fatal("New with an unwritable key path succeeded")
	}
}

func TestPrivateNetwork(t *testing.T) {
	t.Parallel()
	key := func(b byte) func(*p2p.Config) {
		return func(c *p2p.Config) { c.PSK = bytes.Repeat([]byte{b}, 32) }
	}
	a, b, stranger, open := newNode(t, key(1)), newNode(t, key(1)), newNode(t, key(2)), newNode(t, nil)
	info := a.src.AddBlob(randomBytes(t, 1000), 500)
	ctx := testContext(t)
	connect(t, b, a)
	if _, err := b.Fetch(ctx, a.ID(), info.Digest, 1, info.Pieces[1], nil); err != nil {
		t.Fatalf("Fetch within the private network: %v", err)
	}
	for name, n := range map[string]*node{"other key": stranger, "no key": open} {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := n.Connect(dctx, a.AddrInfo()); err == nil {
			t.Errorf("%s: connected to a private network", name)
		}
		cancel()
	}
}

func TestNoise(t *testing.T) {
	t.Parallel()
	noise := func(c *p2p.Config) { c.Security = p2p.SecurityNoise }
	server, client := newNode(t, noise), newNode(t, noise)
	connect(t, client, server)
	info := server.src.AddBlob(randomBytes(t, 1000), 1000)
	if _, err := client.Fetch(testContext(t), server.ID(), info.Digest, 0, info.Pieces[0], nil); err != nil {
		t.Fatal(err)
	}
}

func TestAdmit(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	admitted := map[peer.ID]bool{}
	gate := func(c *p2p.Config) {
		c.Admit = func(p peer.ID) bool {
			mu.Lock()
			defer mu.Unlock()
			return admitted[p]
		}
	}
	gated, friend, stranger := newNode(t, gate), newNode(t, nil), newNode(t, nil)
	info := gated.src.AddBlob(randomBytes(t, 100), 100)
	mu.Lock()
	admitted[friend.ID()] = true
	mu.Unlock()
	ctx := testContext(t)

	if err := friend.Connect(ctx, gated.AddrInfo()); err != nil {
		t.Fatalf("admitted peer refused: %v", err)
	}
	if _, err := friend.Fetch(ctx, gated.ID(), info.Digest, 0, info.Pieces[0], nil); err != nil {
		t.Fatalf("admitted peer cannot fetch: %v", err)
	}
	// The dialer may finish its side of the handshake before the gated
	// host refuses it, so Connect alone proves nothing: a fetch must fail.
	stranger.Connect(ctx, gated.AddrInfo())
	if _, err := stranger.Fetch(ctx, gated.ID(), info.Digest, 0, info.Pieces[0], nil); err == nil {
		t.Error("a peer not admitted fetched a piece")
	}
	if err := gated.Connect(ctx, stranger.AddrInfo()); err == nil {
		t.Error("outbound connection to a peer not admitted")
	}
}

// TestRateLimited fetches four pieces at once under an upload limit on the
// server, then under a download limit on the client. Each limit is shared by
// all transfers, and its limiter starts with at most a burst of tokens, so
// the fetches cannot end before (bytes − burst) / rate has passed. That is a
// lower bound only: a slow or loaded machine makes the fetches slower, never
// faster, so the check cannot flake. Without a limiter the 4 MiB cross
// loopback in milliseconds; with one limiter per transfer instead of one per
// host they would take a quarter of the bound.
func TestRateLimited(t *testing.T) {
	t.Parallel()
	const (
		rate   = 4 << 20 // bytes per second
		pieces = 4
		size   = 1 << 20 // per piece
		// burst bounds the limiter's burst: one chunk (256 KiB) today,
		// room for a larger chunk without loosening the check much.
		burst = 1 << 20
	)
	want := time.Duration(float64(pieces*size-burst) / rate * float64(time.Second))
	for name, tc := range map[string]struct{ server, client func(*p2p.Config) }{
		"upload": {
			server: func(c *p2p.Config) { c.UploadRate, c.MaxUploads = rate, 2*pieces },
			client: nil,
		},
		"download": {
			server: func(c *p2p.Config) { c.MaxUploads = 2 * pieces },
			client: func(c *p2p.Config) { c.DownloadRate = rate },
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			server, client := newNode(t, tc.server), newNode(t, tc.client)
			connect(t, client, server)
			data := randomBytes(t, pieces*size)
			info := server.src.AddBlob(data, size)
			ctx := testContext(t)
			start := time.Now()
			var wg sync.WaitGroup
			for n := range pieces {
				wg.Go(func() {
					got, err := client.Fetch(ctx, server.ID(), info.Digest, n, info.Pieces[n], nil)
					if err != nil {
						t.Errorf("Fetch piece %d: %v", n, err)
					} else if !bytes.Equal(got, data[n*size:(n+1)*size]) {
						t.Errorf("piece %d differs", n)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			t.Logf("%d bytes in %v at %d B/s (at least %v)", pieces*size, elapsed, rate, want)
			if elapsed < want {
				t.Errorf("%d bytes under a limit of %d B/s took %v, want at least %v: the limit is not applied (or not shared by the transfers)",
					pieces*size, rate, elapsed, want)
			}
		})
	}
}

// TestSwarm has one client fetch a blob from several seeders at once, each
// holding some of the pieces, guided by their bitfields.
func TestSwarm(t *testing.T) {
	t.Parallel()
	const seeders, pieces, size = 5, 40, 64 << 10
	data := randomBytes(t, pieces*size)
	info := p2ptest.NewMemorySource().AddBlob(data, size)
	client := newNode(t, nil)
	ctx := testContext(t)
	holders := make([][]peer.ID, pieces)
	for i := range seeders {
		// Every fetch below is in flight at once: serve them all rather
		// than refuse some as busy.
		s := newNode(t, func(c *p2p.Config) { c.MaxUploads = pieces })
		if err := s.src.Register(info); err != nil {
			t.Fatal(err)
		}
		for n := i; n < pieces; n += 2 { // every piece is on at least two seeders
			if err := s.src.Put(info.Digest, n, data[n*size:(n+1)*size]); err != nil {
				t.Fatal(err)
			}
		}
		connect(t, client, s)
		bf, _, err := client.Watch(ctx, s.ID(), info.Digest, pieces)
		if err != nil {
			t.Fatal(err)
		}
		for n := range pieces {
			if bf.Has(n) {
				holders[n] = append(holders[n], s.ID())
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, pieces)
	for n := range pieces {
		wg.Go(func() {
			p := holders[n][n%len(holders[n])]
			got, err := client.Fetch(ctx, p, info.Digest, n, info.Pieces[n], nil)
			if err == nil && !bytes.Equal(got, data[n*size:(n+1)*size]) {
				err = errors.New("wrong bytes")
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	server, client := newNode(t, nil), newNode(t, nil)
	info := server.src.AddBlob(randomBytes(t, 100), 100)
	client.Close()
	ctx := testContext(t)
	if _, err := client.Fetch(ctx, server.ID(), info.Digest, 0, info.Pieces[0], nil); !errors.Is(err, p2p.ErrClosed) {
		t.Errorf("Fetch after Close = %v, want ErrClosed", err)
	}
	if _, _, err := client.Watch(ctx, server.ID(), info.Digest, 1); !errors.Is(err, p2p.ErrClosed) {
		t.Errorf("Watch after Close = %v, want ErrClosed", err)
	}
	if err := client.Connect(ctx, server.AddrInfo()); !errors.Is(err, p2p.ErrClosed) {
		t.Errorf("Connect after Close = %v, want ErrClosed", err)
	}
	if err := client.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestMalformedRequests sends broken requests on raw streams: each stream
// is reset, counted, and the server keeps serving.
func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	server, raw := newNode(t, nil), newNode(t, nil)
	connect(t, raw, server)
	info := server.src.AddBlob(randomBytes(t, 100), 100)
	ctx := testContext(t)
	have, _ := wire.Append(nil, wire.Have{Index: 1})
	for name, tc := range map[string]struct {
		proto protocol.ID
		send  []byte
	}{
		"oversized piece frame": {p2p.PieceProtocol, []byte{0xff, 0xff, 0xff, 0x7f}},
		"unknown type":          {p2p.PieceProtocol, []byte{1, 99}},
		"wrong message":         {p2p.PieceProtocol, have},
		"truncated digest":      {p2p.PieceProtocol, []byte{3, byte(wire.TypePieceRequest), 1, 2}},
		"oversized watch frame": {p2p.HaveProtocol, []byte{0xff, 0xff, 0xff, 0x7f}},
		"watch then chatter":    {p2p.HaveProtocol, watchThenChatter(t, info.Digest)},
	} {
		s, err := raw.LibP2P().NewStream(ctx, server.ID(), tc.proto)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s.Write(tc.send)
		s.CloseWrite()
		s.SetReadDeadline(time.Now().Add(testTimeout))
		if _, err := io.ReadAll(s); err == nil && name != "watch then chatter" {
			t.Errorf("%s: stream ended cleanly, want a reset", name)
		}
		s.Reset()
	}
	for counter(t, server.reg, "shoal_p2p_protocol_errors_total") < 6 {
		time.Sleep(10 * time.Millisecond)
	}
	client := newNode(t, nil)
	connect(t, client, server)
	if _, err := client.Fetch(ctx, server.ID(), info.Digest, 0, info.Pieces[0], nil); err != nil {
		t.Fatalf("Fetch after malformed requests: %v", err)
	}
}

func watchThenChatter(t *testing.T, d digest.Digest) []byte {
	b, err := wire.Append(nil, wire.WatchRequest{Digest: d, Pieces: 1})
	if err != nil {
		t.Fatal(err)
	}
	return append(b, 0)
}

// TestMalformedResponses has a lying server break the protocol in each way
// a client can notice: the client reports ErrProtocol and does not crash.
func TestMalformedResponses(t *testing.T) {
	t.Parallel()
	client := newNode(t, nil)
	info := p2ptest.NewMemorySource().AddBlob(randomBytes(t, 800), 100)
	ctx := testContext(t)
	for name, reply := range map[string][]byte{
		"garbage":           {0xff, 0xff, 0xff, 0xff, 0x0f},
		"wrong message":     mustAppend(t, wire.Done{}),
		"piece too long":    {6, byte(wire.TypePieceHeader), 0, 0x81, 0x80, 0x80, 0x08},
		"refusal with data": {3, byte(wire.TypePieceHeader), byte(wire.StatusBusy), 5},
	} {
		t.Run("fetch "+name, func(t *testing.T) {
			t.Parallel()
			liar := newNode(t, nil)
			liar.LibP2P().SetStreamHandler(p2p.PieceProtocol, func(s network.Stream) {
				s.Write(reply)
				s.Close()
			})
			connect(t, client, liar)
			if _, err := client.Fetch(ctx, liar.ID(), info.Digest, 0, info.Pieces[0], nil); !errors.Is(err, p2p.ErrProtocol) {
				t.Fatalf("Fetch = %v, want ErrProtocol", err)
			}
		})
	}
	for name, reply := range map[string][]byte{
		"bitfield of the wrong size": mustAppend(t, wire.Bitfield{Bits: []byte{0xff, 0}}),
		"spare bits set":             mustAppend(t, wire.Bitfield{Bits: []byte{0xff}}),
		"have out of range":          append(mustAppend(t, wire.Bitfield{Bits: []byte{0}}), mustAppend(t, wire.Have{Index: 9})...),
	} {
		t.Run("watch "+name, func(t *testing.T) {
			t.Parallel()
			liar := newNode(t, nil)
			liar.LibP2P().SetStreamHandler(p2p.HaveProtocol, func(s network.Stream) {
				wire.Read(bufio.NewReader(s))
				s.Write(reply)
				s.Close()
			})
			connect(t, client, liar)
			_, ch, err := client.Watch(ctx, liar.ID(), info.Digest, 7)
			if err != nil {
				if !errors.Is(err, p2p.ErrProtocol) {
					t.Fatalf("Watch = %v, want ErrProtocol", err)
				}
				return
			}
			for n := range ch {
				t.Fatalf("relayed HAVE %d out of range", n)
			}
		})
	}
}

// TestWatchDoneFillsIn: a server may leave out HAVEs of pieces the client
// announced to it; its Done still tells the client of every piece.
func TestWatchDoneFillsIn(t *testing.T) {
	t.Parallel()
	client, server := newNode(t, nil), newNode(t, nil)
	d := digest.FromString("blob")
	server.LibP2P().SetStreamHandler(p2p.HaveProtocol, func(s network.Stream) {
		wire.Read(bufio.NewReader(s))
		s.Write(mustAppend(t, wire.Bitfield{Bits: []byte{0b1000_0000}}))
		s.Write(mustAppend(t, wire.Have{Index: 2}))
		s.Write(mustAppend(t, wire.Done{}))
		s.Close()
	})
	connect(t, client, server)
	bf, ch, err := client.Watch(testContext(t), server.ID(), d, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !bf.Has(0) || bf.Count() != 1 {
		t.Fatalf("bitfield holds %d pieces, want piece 0 only", bf.Count())
	}
	var got []int
	for n := range ch {
		got = append(got, n)
	}
	if want := []int{2, 1, 3}; !slices.Equal(got, want) {
		t.Errorf("relayed %v, want %v", got, want)
	}
}

func mustAppend(t *testing.T, m wire.Message) []byte {
	t.Helper()
	b, err := wire.Append(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// requesterSource records the requester the host names to Piece.
type requesterSource struct {
	*p2ptest.MemorySource
	got chan peer.ID
}

func (s *requesterSource) Piece(ctx context.Context, dgst digest.Digest, n int) (io.ReadCloser, int64, error) {
	p, _ := p2p.Requester(ctx)
	s.got <- p
	return s.MemorySource.Piece(ctx, dgst, n)
}

// The source hears which peer asks for a piece (a seeder spreads its first
// copies over them).
func TestPieceNamesRequester(t *testing.T) {
	t.Parallel()
	src := &requesterSource{MemorySource: p2ptest.NewMemorySource(), got: make(chan peer.ID, 1)}
	info := src.AddBlob(randomBytes(t, 2048), 1024)
	server := newNodeWith(t, nil, src)
	client := newNode(t, nil)
	connect(t, client, server)
	if _, err := client.Fetch(testContext(t), server.ID(), info.Digest, 0, info.Pieces[0], nil); err != nil {
		t.Fatal(err)
	}
	if p := <-src.got; p != client.ID() {
		t.Errorf("the source heard requester %q, want %q", p, client.ID())
	}
}
