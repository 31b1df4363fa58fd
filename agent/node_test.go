package agent_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/swarm"
	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

// nodeConfig is what a test node is built from. A node with a Tracker
// joins the swarm through it.
type nodeConfig struct {
	Agent    agent.Config
	Upstream upstream.Config
	P2P      p2p.Config
	Swarm    swarm.Config
	Tracker  swarm.Tracker
	Seeder   bool
}

// node is an agent with its parts, served on loopback.
type node struct {
	*agent.Agent
	srv   *httptest.Server
	reg   *prometheus.Registry
	store *store.Disk
	parts []func() error // closed in reverse order
}

// startAgent builds a node on the store in dir, as cmd/shoal does, and
// serves its registry API.
func startAgent(t *testing.T, dir string, mutate func(*nodeConfig)) *node {
	t.Helper()
	cfg := nodeConfig{
		Agent:    agent.DefaultConfig(),
		Upstream: upstream.DefaultConfig(),
		P2P:      p2p.DefaultConfig(),
		Swarm:    swarm.DefaultConfig(),
	}
	cfg.Upstream.Timeout = 5 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	n, err := newNode(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	n.srv = httptest.NewServer(n.Handler())
	t.Cleanup(func() { n.Close() })
	return n
}

func newNode(cfg nodeConfig, dir string) (n *node, err error) {
	n = &node{reg: prometheus.NewRegistry()}
	log := testLogger()
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	up, err := upstream.New(cfg.Upstream, upstream.WithLogger(log), upstream.WithRegisterer(n.reg))
	if err != nil {
		return nil, err
	}
	n.parts = append(n.parts, func() error { up.Close(); return nil })
	scfg := store.DefaultConfig()
	scfg.Dir = filepath.Join(dir, "store")
	st, err := store.New(scfg, store.WithLogger(log), store.WithRegisterer(n.reg))
	if err != nil {
		return nil, err
	}
	n.store = st
	n.parts = append(n.parts, st.Close)
	opts := []agent.Option{agent.WithLogger(log), agent.WithRegisterer(n.reg)}
	if cfg.Tracker != nil {
		key, err := p2p.LoadIdentity("")
		if err != nil {
			return nil, err
		}
		if c, ok := cfg.Tracker.(*tracker.Client); ok {
			cfg.Tracker = c.SignedBy(key) // the tracker takes only announces signed by the peer
		}
		h, err := p2p.New(cfg.P2P, p2p.WithLogger(log), p2p.WithRegisterer(n.reg), p2p.WithIdentity(key))
		if err != nil {
			return nil, err
		}
		n.parts = append(n.parts, h.Close)
		self := tracker.Peer{ID: h.ID().String()}
		for _, ma := range h.Addrs() {
			self.Addrs = append(self.Addrs, ma.String())
		}
		sopts := []swarm.Option{swarm.WithLogger(log), swarm.WithRegisterer(n.reg)}
		if cfg.Seeder {
			sopts = append(sopts, swarm.AsSeeder())
		}
		sw, err := swarm.New(cfg.Swarm, cfg.Tracker, h, st, self, sopts...)
		if err != nil {
			return nil, err
		}
		if err := h.Serve(sw); err != nil {
			return nil, err
		}
		st.OnChange(sw.Changed)
		ctx, stop := context.WithCancel(context.Background())
		var running sync.WaitGroup
		running.Go(func() { sw.Run(ctx) })
		n.parts = append(n.parts, func() error { stop(); running.Wait(); return nil })
		opts = append(opts, agent.WithSwarm(sw))
	}
	if n.Agent, err = agent.New(cfg.Agent, up, st, opts...); err != nil {
		return nil, err
	}
	n.parts = append(n.parts, n.Agent.Close)
	return n, nil
}

// Close stops the node's server and parts, last made first.
func (n *node) Close() error {
	if n.srv != nil {
		n.srv.Close()
	}
	var errs []error
	for i := len(n.parts) - 1; i >= 0; i-- {
		errs = append(errs, n.parts[i]())
	}
	n.parts = nil
	return errors.Join(errs...)
}

const clusterToken = "test-cluster-token"

// trackerNode is a tracker with its seeder in front of an origin, and a
// client of it.
type trackerNode struct {
	srv    *server.Server
	seeder *node
	client *tracker.Client
}

// startTracker runs a tracker with its seeder in front of the origin; stop
// ends both (also at the test's end).
func startTracker(t *testing.T, originURL string) (tn *trackerNode, stop func()) {
	t.Helper()
	tcfg := server.DefaultConfig()
	tcfg.Tokens = []string{clusterToken}
	tcfg.AnnounceInterval = 500 * time.Millisecond
	tcfg.PeerTTL = 5 * time.Second
	srv, err := server.New(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	up := upstream.DefaultConfig()
	up.Default = originURL
	seeder, err := newNode(nodeConfig{
		Agent:    agent.DefaultConfig(),
		Upstream: up,
		P2P:      p2p.DefaultSeederConfig(),
		Swarm:    swarm.DefaultConfig(),
		Tracker:  srv,
		Seeder:   true,
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(seeder.Agent); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	client, err := tracker.NewClient("http://"+ln.Addr().String(), clusterToken)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { hs.Close(); srv.Close(); seeder.Close() }) }
	t.Cleanup(stop)
	return &trackerNode{srv: srv, seeder: seeder, client: client}, stop
}
