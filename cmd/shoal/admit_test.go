package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/p2ptest"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

// cluster is a tracker with its seeder on loopback, as `shoal tracker`
// wires them, and a way to add agents wired as `shoal agent` is.
type cluster struct {
	t      *testing.T
	url    string
	server *server.Server
	seeder *node
	origin string // registry URL
}

const testToken = "admission-test-token"

func startCluster(t *testing.T, origin string) *cluster {
	t.Helper()
	tcfg := server.DefaultConfig()
	tcfg.Tokens = []string{testToken}
	seed := defaultSeederConfig()
	seed.DataDir = filepath.Join(t.TempDir(), "seeder")
	seed.Upstream.Default = origin
	tn, err := newTrackerNode(tcfg, seed, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(tn.server.Handler())
	t.Cleanup(func() {
		tn.server.Close()
		hs.Close()
		tn.Close()
	})
	return &cluster{t: t, url: hs.URL, server: tn.server, seeder: tn.seeder, origin: origin}
}

// agent starts an agent of the cluster and waits until the tracker lists it.
func (c *cluster) agent(name string) (*node, *prometheus.Registry) {
	c.t.Helper()
	cfg := defaultNodeConfig()
	cfg.DataDir = filepath.Join(c.t.TempDir(), name)
	cfg.Upstream.Default = c.origin
	if err := cfg.loadIdentity(); err != nil {
		c.t.Fatal(err)
	}
	tc, err := tracker.NewClient(c.url, testToken, tracker.WithKey(cfg.Identity))
	if err != nil {
		c.t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	n, err := newNode(cfg, tc, false, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { n.Close() })
	c.waitListed(n.host.ID())
	return n, reg
}

func (c *cluster) waitListed(id peer.ID) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 20*time.Second)
	defer cancel()
	for {
		if ok, _ := c.server.Listed(ctx, id.String()); ok {
			return
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("the tracker never listed %s", id)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestPeerAdmission: a libp2p host with a valid key that the tracker never
// listed can neither connect to nor fetch a piece from an agent or the
// seeder, and agents do not dial it; an agent the tracker lists can; a
// token holder cannot announce for another peer ID, or unsigned.
func TestPeerAdmission(t *testing.T) {
	t.Parallel()
	img := testImage(t)
	ref, _ := startRegistry(t, img)
	c := startCluster(t, "http://"+strings.SplitN(ref, "/", 2)[0])
	a, aReg := c.agent("a")
	b, _ := c.agent("b")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// Agent a holds a layer, fetched through its registry endpoint.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	dgst, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	repo := r.Context().RepositoryStr()
	srv := httptest.NewServer(a.agent.Handler())
	defer srv.Close()
	if _, err := runPullCmd(t, ref, "--unpack", filepath.Join(t.TempDir(), "out"), "--agent", strings.TrimPrefix(srv.URL, "http://"), "--platform", "linux/amd64"); err != nil {
		t.Fatalf("pull through agent a: %v", err)
	}
	info, err := c.server.MetaInfo(ctx, tracker.Source{Repo: repo, Digest: digest.Digest(dgst.String())}, -1)
	if err != nil || !info.Complete() {
		t.Fatalf("metainfo: %v, %v", info, err)
	}

	// The listed agent b fetches a piece from a and from the seeder.
	for _, from := range []*node{a, c.seeder} {
		if err := b.host.Connect(ctx, from.host.AddrInfo()); err != nil {
			t.Fatalf("listed agent cannot connect: %v", err)
		}
		// Rationed is the seeder's answer to an admitted peer whose piece
		// it gave to another first: the request got through admission.
		if _, err := b.host.Fetch(ctx, from.host.ID(), info.Digest, 0, info.Pieces[0], nil); err != nil && !(from == c.seeder && errors.Is(err, p2p.ErrRationed)) {
			t.Fatalf("listed agent cannot fetch a piece: %v", err)
		}
	}

	// An outsider with a valid key, never listed: refused by a and by the
	// seeder (the dialer may finish its side of the handshake before the
	// other refuses, so a fetch must fail), and a does not dial it.
	out, err := p2p.New(p2p.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Serve(p2ptest.NewMemorySource()); err != nil {
		t.Fatal(err)
	}
	for who, from := range map[string]*node{"agent": a, "seeder": c.seeder} {
		out.Connect(ctx, from.host.AddrInfo())
		if _, err := out.Fetch(ctx, from.host.ID(), info.Digest, 0, info.Pieces[0], nil); err == nil {
			t.Errorf("the %s served a piece to a peer the tracker never listed", who)
		}
	}
	if err := a.host.Connect(ctx, out.AddrInfo()); err == nil {
		t.Error("agent dialed a peer the tracker never listed")
	}
	if got := counterValue(t, aReg, "shoal_p2p_peers_refused_total"); got == 0 {
		t.Error("refusals not counted")
	}

	// The outsider holds the token: it cannot announce as agent a, nor
	// unsigned, and so stays unlisted.
	forger, err := p2p.LoadIdentity("")
	if err != nil {
		t.Fatal(err)
	}
	self := tracker.Peer{ID: a.host.ID().String(), Addrs: []string{out.Addrs()[0].String()}}
	for _, opts := range [][]tracker.Option{{tracker.WithKey(forger)}, nil} {
		tc, err := tracker.NewClient(c.url, testToken, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tc.Announce(ctx, tracker.Announce{Peer: self}); !errors.Is(err, tracker.ErrUnauthorized) {
			t.Errorf("announce for another peer ID: %v, want ErrUnauthorized", err)
		}
		self.ID = out.ID().String()
		if _, err := tc.Announce(ctx, tracker.Announce{Peer: self}); !errors.Is(err, tracker.ErrUnauthorized) {
			t.Errorf("announce not signed by its peer: %v, want ErrUnauthorized", err)
		}
	}
	if ok, _ := c.server.Listed(ctx, out.ID().String()); ok {
		t.Error("the outsider got listed")
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, metric string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == metric {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
