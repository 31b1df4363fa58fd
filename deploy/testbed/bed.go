package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Ports every host uses on its own address or loopback.
const (
	registryPort = 5000
	trackerPort  = 7070
	agentAddr    = "127.0.0.1:5050"
	p2pPort      = 4001
	// readyTimeout bounds how long a started program may take to answer.
	readyTimeout = 30 * time.Second
)

// Option adjusts a Bed.
type Option func(*Bed)

// WithLogger logs what the bed does; the default discards.
func WithLogger(l *slog.Logger) Option { return func(b *Bed) { b.log = l } }

// Bed is a running testbed: its namespaces and the processes it started in
// them. Close removes all of it.
type Bed struct {
	cfg      Config
	log      *slog.Logger
	bridgeNS string
	token    string
	// seedToken is the tracker's seed token (--seed-token-file), what
	// Seed hands to shoal seed as a CI job would.
	seedToken string
	logDir    string

	// Origin and Tracker are the two service hosts; Hosts run agents.
	Origin, Tracker Host
	Hosts           []Host

	mu       sync.Mutex
	procs    []*process
	registry *process
	tracker  *process
	agents   []*process
	// agentArgs are StartAgents' extra flags, for RestartAgent.
	agentArgs []string
	clients   map[string]*http.Client
	closed    bool
}

// Start removes leftovers of an earlier bed with the same prefix, then
// creates the bridge and every host with its caps. On error it removes what
// it created. Use Probe first to tell an unusable machine from a failure.
func Start(ctx context.Context, cfg Config, opts ...Option) (*Bed, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, bin := range []string{cfg.ShoalBin, cfg.RegistryBin, cfg.CraneBin} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("testbed: %w", err)
		}
	}
	var tok, seedTok [16]byte
	_, _ = rand.Read(tok[:])
	_, _ = rand.Read(seedTok[:])
	b := &Bed{
		cfg:       cfg,
		log:       slog.New(slog.DiscardHandler),
		bridgeNS:  cfg.Prefix + "br",
		token:     hex.EncodeToString(tok[:]),
		seedToken: hex.EncodeToString(seedTok[:]),
		logDir:    filepath.Join(cfg.WorkDir, "logs"),
		clients:   make(map[string]*http.Client),
	}
	for _, o := range opts {
		o(b)
	}
	if err := os.MkdirAll(b.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	if err := b.removeLeftovers(ctx); err != nil {
		return nil, err
	}
	b.Origin = b.host("origin", cfg.originAddr())
	b.Tracker = b.host("tracker", cfg.trackerAddr())
	for i := range cfg.Hosts {
		b.Hosts = append(b.Hosts, b.host(fmt.Sprintf("h%03d", i+1), cfg.hostAddr(i)))
	}
	if err := b.build(ctx); err != nil {
		return nil, errors.Join(err, b.Close())
	}
	return b, nil
}

func (b *Bed) host(name string, ip netip.Addr) Host {
	return Host{Name: name, NS: b.cfg.Prefix + name, IP: ip, port: "p-" + name}
}

func (b *Bed) removeLeftovers(ctx context.Context) error {
	names, err := listNS(ctx, b.cfg.Prefix)
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	for _, ns := range names {
		b.log.Info("removing leftover namespace", "ns", ns)
		if err := deleteNS(ctx, ns); err != nil {
			return fmt.Errorf("testbed: leftover: %w", err)
		}
	}
	return nil
}

func (b *Bed) build(ctx context.Context) error {
	start := time.Now()
	for _, s := range [][]string{
		{"ip", "netns", "add", b.bridgeNS},
		{"ip", "-n", b.bridgeNS, "link", "set", "lo", "up"},
		{"ip", "-n", b.bridgeNS, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", b.bridgeNS, "link", "set", "br0", "up"},
	} {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("testbed: bridge: %w", err)
		}
	}
	if err := addHost(ctx, b.bridgeNS, b.Origin, b.cfg.OriginRate, b.cfg.OriginRate, b.cfg.QueueDelay); err != nil {
		return fmt.Errorf("testbed: origin host: %w", err)
	}
	if err := addHost(ctx, b.bridgeNS, b.Tracker, b.cfg.TrackerRate, b.cfg.TrackerRate, b.cfg.QueueDelay); err != nil {
		return fmt.Errorf("testbed: tracker host: %w", err)
	}
	// ip and tc are quick but there are many of them; a few at a time
	// halves the setup of a big bed without swamping two cores.
	sem := make(chan struct{}, 4)
	errs := make([]error, len(b.Hosts))
	var wg sync.WaitGroup
	for i, h := range b.Hosts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := addHost(ctx, b.bridgeNS, h, b.cfg.HostUpload, b.cfg.HostDownload, b.cfg.QueueDelay); err != nil {
				errs[i] = fmt.Errorf("testbed: host %s: %w", h.Name, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := b.staticNeighbors(ctx, sem); err != nil {
		return err
	}
	b.log.Info("network ready", "hosts", len(b.Hosts), "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// staticNeighbors gives every host a permanent neighbor entry for every
// other one. The kernel keeps one ARP table for all namespaces, capped by the
// root namespace's gc_thresh3 (1024 by default), and beyond that cap it drops
// the packets of a new neighbor (NEIGH_CREATEFAIL): 50 hosts that each talk
// to 50 others exceed it, and their dials then time out with no SYN sent.
// Real machines each have their own table. Permanent entries are exempt from
// the cap, and nothing needs to be resolved during a run.
func (b *Bed) staticNeighbors(ctx context.Context, sem chan struct{}) error {
	all := append([]Host{b.Origin, b.Tracker}, b.Hosts...)
	macs := make(map[string]string, len(all))
	for _, h := range all {
		mac, err := macOf(ctx, h)
		if err != nil {
			return err
		}
		macs[h.Name] = mac
	}
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, h := range all {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := runInput(ctx, strings.NewReader(neighborBatch(h, all, macs)), "ip", "-n", h.NS, "-batch", "-"); err != nil {
				errs[i] = fmt.Errorf("testbed: neighbors of %s: %w", h.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close stops every process the bed started and deletes its namespaces. It
// is safe to call more than once and after a failed Start.
func (b *Bed) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	procs := b.procs
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.stop(stopGrace)
		}()
	}
	wg.Wait()
	for _, c := range b.clients {
		c.CloseIdleConnections()
	}
	// A fresh context: Close also runs after Ctrl-C cancelled the run's.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names, err := listNS(ctx, b.cfg.Prefix)
	if err != nil {
		return fmt.Errorf("testbed: close: %w", err)
	}
	var errs []error
	for _, ns := range names {
		if err := deleteNS(ctx, ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("testbed: close: %w", err)
	}
	b.log.Info("testbed removed", "namespaces", len(names))
	return nil
}

// start runs a program in h's namespace and keeps it for Close.
func (b *Bed) start(h Host, name, bin string, args ...string) (*process, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("testbed: closed")
	}
	p, err := startProcess(h.NS, name, b.logDir, bin, args...)
	if err != nil {
		return nil, err
	}
	b.procs = append(b.procs, p)
	return p, nil
}

// client is an HTTP client whose connections start inside h's namespace.
func (b *Bed) client(h Host) *http.Client {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.clients[h.NS]
	if !ok {
		c = &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DialContext: nsDialer{ns: h.NS}.DialContext, MaxIdleConnsPerHost: 2, DisableCompression: true},
		}
		b.clients[h.NS] = c
	}
	return c
}

// get fetches url from inside h's namespace.
func (b *Bed) get(ctx context.Context, h Host, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.client(h).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s in %s: %s", url, h.Name, resp.Status)
	}
	return body, nil
}

// waitReady polls url from h until it answers 200, p exits or the timeout.
func (b *Bed) waitReady(ctx context.Context, h Host, p *process, url string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := b.get(ctx, h, url)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("testbed: %s exited before it was ready (log: %s)", p.name, p.logPath)
		case <-ctx.Done():
			return fmt.Errorf("testbed: %s not ready at %s: %w (last: %v; log: %s)", p.name, url, ctx.Err(), err, p.logPath)
		case <-tick.C:
		}
	}
}
