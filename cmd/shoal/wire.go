package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/swarm"
	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

// This file is the whole wiring of Shoal: every part is built here, in the
// order a blob flows through them, and handed to the part that uses it.
//
//	agent:   upstream.Client ─┐
//	         store.Disk ──────┼─▶ agent.Agent ──▶ registryshim handler (/v2/)
//	         tracker.Client ─▶ swarm.Swarm ◀──▶ p2p.Host (two-phase: New, then Serve(swarm))
//	         store.Disk ──OnChange──▶ swarm.Swarm (commits and removals: what the node holds)
//	         tracker.Client ─Listed─▶ p2p.Admission ─Admit─▶ p2p.Host (only peers the tracker lists)
//	         identity key ─▶ p2p.Host and tracker.Client (announces signed with the host's key)
//	         several --tracker URLs: tracker.Replicas over one tracker.Client each, in place of the one client
//	           (each digest asked of its owner by rendezvous hashing; a silent replica's digests go to the next)
//	tracker: server.Server ◀── in process ── seeder node (its swarm announces to the server)
//	         server.Server ─Listed─▶ the seeder's p2p.Admission (in process)
//	         server.Server ──Seed──▶ seeder agent ──▶ origin

// nodeConfig is what one node is built from: an agent, or the tracker's
// seeder.
type nodeConfig struct {
	DataDir  string // the store's and the identity key's default home
	Agent    agent.Config
	Store    store.Config
	Upstream upstream.Config
	P2P      p2p.Config
	Swarm    swarm.Config
	Admit    p2p.AdmissionConfig
	// Identity is the node's libp2p key, loaded by loadIdentity before the
	// tracker client that signs with it is made; nil: loaded from
	// P2P.KeyFile when the host starts.
	Identity crypto.PrivKey
	Push     *agent.PushConfig // nil: pushes are refused
	Zone     string            // the node's zone (--zone), in its Peer as the tracker hands it out
}

func defaultNodeConfig() nodeConfig {
	return nodeConfig{
		Agent:    agent.DefaultConfig(),
		Store:    store.DefaultConfig(),
		Upstream: upstream.DefaultConfig(),
		P2P:      p2p.DefaultConfig(),
		Swarm:    swarm.DefaultConfig(),
		Admit:    p2p.DefaultAdmissionConfig(),
	}
}

// loadIdentity loads (or creates) the node's key into c.Identity, so that
// its tracker client signs announces with the key its host speaks with.
func (c *nodeConfig) loadIdentity() error {
	if c.Identity != nil {
		return nil
	}
	path := c.withDataDir().P2P.KeyFile
	if path != "" {
		// Before the store, which would make the data directory.
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("identity: %w", err)
		}
	}
	k, err := p2p.LoadIdentity(path)
	if err != nil {
		return err
	}
	c.Identity = k
	return nil
}

// defaultSeederConfig is defaultNodeConfig with the seeder's upload slots.
func defaultSeederConfig() nodeConfig {
	c := defaultNodeConfig()
	c.P2P = p2p.DefaultSeederConfig()
	return c
}

// withDataDir fills the paths left empty from the data directory.
func (c nodeConfig) withDataDir() nodeConfig {
	if c.Store.Dir == "" && c.DataDir != "" {
		c.Store.Dir = filepath.Join(c.DataDir, "store")
	}
	if c.P2P.KeyFile == "" && c.DataDir != "" {
		c.P2P.KeyFile = filepath.Join(c.DataDir, "identity.key")
	}
	if c.Push != nil && c.Push.Dir == "" && c.DataDir != "" {
		p := *c.Push
		p.Dir = filepath.Join(c.DataDir, "uploads")
		c.Push = &p
	}
	return c
}

// validate checks every part's configuration, the swarm's too on a node
// without a tracker: a bad setting is an error wherever it is set.
func (c nodeConfig) validate() error {
	if c.DataDir == "" && c.Store.Dir == "" {
		return errors.New("data-dir is required")
	}
	c = c.withDataDir()
	return errors.Join(c.Agent.Validate(), c.Store.Validate(), c.Upstream.Validate(), c.P2P.Validate(), c.Swarm.Validate(), c.Admit.Validate())
}

// node is one agent and the parts it is made of.
type node struct {
	up    *upstream.Client
	store *store.Disk
	host  *p2p.Host      // nil without a swarm
	admit *p2p.Admission // nil without a swarm
	swarm *swarm.Swarm   // nil without a swarm
	agent *agent.Agent

	stop    context.CancelFunc // ends the swarm's announce loop
	running sync.WaitGroup
}

// nodeTracker is what a node asks of its tracker: its swarm's questions,
// and whether a peer is listed (admission).
type nodeTracker interface {
	swarm.Tracker
	p2p.Roster
}

// pingingTracker is an agent's tracker with its health probe, for the
// agent's status.
type pingingTracker interface {
	nodeTracker
	Ping(ctx context.Context) error
}

// clusterTracker is the tracker an agent talks to: the client of a single
// tracker URL, or the replica set (tracker.Replicas) of several, or of a
// dns+ URL, whose addresses are looked up again every 30 s.
func clusterTracker(ctx context.Context, urls []string, token string, log *slog.Logger, opts ...tracker.Option) (pingingTracker, error) {
	return clusterTrackerWith(ctx, net.DefaultResolver.LookupHost, urls, token, log, opts...)
}

// trackerRefresh is how often a dns+ name is looked up again.
const trackerRefresh = 30 * time.Second

// clusterTrackerWith is clusterTracker resolving dns+ names with lookup. A
// dns+ name that resolves to nothing yet, or whose lookup fails (the
// tracker pods are not ready, the cluster DNS not yet reachable), is not an
// error: the set starts with no replica, its requests fail as those of a
// tracker that does not answer (the agent pulls from the upstream), its
// Ping says why, and it looks the name up again every 5 s until it
// resolves, then every 30 s.
func clusterTrackerWith(ctx context.Context, lookup tracker.Lookup, urls []string, token string, log *slog.Logger, opts ...tracker.Option) (pingingTracker, error) {
	dns := slices.ContainsFunc(urls, func(u string) bool { return strings.HasPrefix(u, tracker.DNSScheme) })
	if len(urls) == 1 && !dns {
		return tracker.NewClient(urls[0], token, opts...)
	}
	if !dns {
		eps, err := tracker.Endpoints(ctx, urls, token, lookup, opts...)
		if err != nil {
			return nil, err
		}
		return tracker.NewReplicas(tracker.DefaultReplicaConfig(), eps, tracker.WithReplicaLogger(log))
	}
	r, err := tracker.NewReplicas(tracker.DefaultReplicaConfig(), nil, tracker.WithReplicaLogger(log),
		tracker.WithRefresh(func(ctx context.Context) ([]tracker.Endpoint, error) {
			return tracker.Endpoints(ctx, urls, token, lookup, opts...)
		}, trackerRefresh))
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a DNS server that does not answer
	defer cancel()
	if err := r.Refresh(lctx); err != nil && !errors.Is(err, tracker.ErrUnavailable) {
		return nil, err // a malformed URL, not a name without addresses yet
	}
	return r, nil
}

// newNode builds a node. tr is the tracker its swarm talks to and its
// admission asks: a client of the cluster's tracker for an agent (made with
// tracker.WithKey(cfg.Identity)), the tracker server itself for its seeder;
// nil builds a plain pull-through cache without a swarm.
func newNode(cfg nodeConfig, tr nodeTracker, seeder bool, log *slog.Logger, reg prometheus.Registerer) (n *node, err error) {
	cfg = cfg.withDataDir()
	n = &node{}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if n.up, err = upstream.New(cfg.Upstream, upstream.WithLogger(log), upstream.WithRegisterer(reg)); err != nil {
		return nil, err
	}
	if n.store, err = store.New(cfg.Store, store.WithLogger(log), store.WithRegisterer(reg)); err != nil {
		return nil, err
	}
	opts := []agent.Option{agent.WithLogger(log), agent.WithRegisterer(reg)}
	if tr != nil {
		if err = n.joinSwarm(cfg, tr, seeder, log, reg); err != nil {
			return nil, err
		}
		opts = append(opts, agent.WithSwarm(n.swarm))
	}
	if cfg.Push != nil {
		opts = append(opts, agent.WithPush(*cfg.Push))
	}
	if n.agent, err = agent.New(cfg.Agent, n.up, n.store, opts...); err != nil {
		return nil, err
	}
	return n, nil
}

// joinSwarm starts the admission of peers, the peer transport, the swarm
// that fetches through it and that it serves from, and the swarm's announce
// loop.
func (n *node) joinSwarm(cfg nodeConfig, tr nodeTracker, seeder bool, log *slog.Logger, reg prometheus.Registerer) error {
	if err := cfg.loadIdentity(); err != nil {
		return err
	}
	adm, err := p2p.NewAdmission(cfg.Admit, tr, p2p.WithLogger(log), p2p.WithRegisterer(reg))
	if err != nil {
		return err
	}
	n.admit = adm
	cfg.P2P.Admit = adm.Admit
	h, err := p2p.New(cfg.P2P, p2p.WithLogger(log), p2p.WithRegisterer(reg), p2p.WithIdentity(cfg.Identity))
	if err != nil {
		return err
	}
	n.host = h
	self := tracker.Peer{ID: h.ID().String(), Zone: cfg.Zone}
	for _, ma := range h.Addrs() {
		self.Addrs = append(self.Addrs, ma.String())
	}
	opts := []swarm.Option{swarm.WithLogger(log), swarm.WithRegisterer(reg)}
	if seeder {
		opts = append(opts, swarm.AsSeeder())
	}
	if n.swarm, err = swarm.New(cfg.Swarm, vouching{tr, adm}, h, n.store, self, opts...); err != nil {
		return err
	}
	if err := h.Serve(n.swarm); err != nil {
		return err
	}
	n.store.OnChange(n.swarm.Changed) // the store is the record of what the node holds
	ctx, stop := context.WithCancel(context.Background())
	n.stop = stop
	n.running.Go(func() { n.swarm.Run(ctx) })
	return nil
}

// peerID is the node's peer identity, "" without a swarm.
func (n *node) peerID() string {
	if n.host == nil {
		return ""
	}
	return n.host.ID().String()
}

// Close stops the node's parts in the reverse order of their making. The
// downloads under way end with the store; their partial files stay for
// resumption.
func (n *node) Close() error {
	var errs []error
	if n.agent != nil {
		errs = append(errs, n.agent.Close())
	}
	if n.stop != nil {
		n.stop()
		n.running.Wait()
	}
	if n.host != nil {
		errs = append(errs, n.host.Close())
	}
	if n.admit != nil {
		n.admit.Close()
	}
	if n.up != nil {
		n.up.Close()
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	return errors.Join(errs...)
}

// vouching is a node's tracker whose handouts admit the peers they name:
// the tracker lists them, so they need not be asked about.
type vouching struct {
	nodeTracker
	admit *p2p.Admission
}

func (v vouching) Peers(ctx context.Context, dgst digest.Digest, self string) ([]tracker.Peer, error) {
	peers, err := v.nodeTracker.Peers(ctx, dgst, self)
	for _, p := range peers {
		if id, err := peer.Decode(p.ID); err == nil {
			v.admit.Vouch(id)
		}
	}
	return peers, err
}

// trackerNode is the tracker server and its seeder.
type trackerNode struct {
	server *server.Server
	seeder *node
}

// newTrackerNode builds the tracker and its seeder: a node whose swarm
// announces to the server in process (no HTTP, no token, no TLS between
// them), and which the server asks to seed each blob on first demand.
func newTrackerNode(tcfg server.Config, seed nodeConfig, log *slog.Logger, reg prometheus.Registerer, opts ...server.Option) (*trackerNode, error) {
	srv, err := server.New(tcfg, append([]server.Option{server.WithLogger(log), server.WithRegisterer(reg)}, opts...)...)
	if err != nil {
		return nil, err
	}
	// The seeder fetches only from the configured upstreams: agents must
	// not make the tracker reach arbitrary hosts.
	seed.Upstream.AllowUnknown = false
	seeder, err := newNode(seed, srv, true, log, reg)
	if err != nil {
		srv.Close()
		return nil, err
	}
	if err := srv.Start(seeder.agent); err != nil {
		seeder.Close()
		srv.Close()
		return nil, err
	}
	// Seed jobs read manifests with the seeder's upstream client and pin
	// what they seed in its store.
	if err := srv.EnableSeedJobs(newSeedResolver(seeder.up, seed.Upstream), seeder.store); err != nil {
		seeder.Close()
		srv.Close()
		return nil, err
	}
	return &trackerNode{server: srv, seeder: seeder}, nil
}

// Close stops seeding, then the seeder.
func (t *trackerNode) Close() error {
	return errors.Join(t.server.Close(), t.seeder.Close())
}

var (
	_ nodeTracker   = (*tracker.Client)(nil)
	_ nodeTracker   = (*server.Server)(nil)
	_ nodeTracker   = (*tracker.Replicas)(nil)
	_ server.Seeder = (*agent.Agent)(nil)
)
