package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/registryshim"
	"github.com/shoal-dev/shoal/tracker"
)

// PreheatConfig tunes a Preheater.
type PreheatConfig struct {
	// Concurrency bounds the blobs fetched at once, which bounds the rate
	// preheating takes from the swarm and the node's link.
	Concurrency int
	// Retry is how long a blob whose fetch failed waits before it is tried
	// again (the tracker keeps offering it).
	Retry time.Duration
}

// DefaultPreheatConfig returns the defaults.
func DefaultPreheatConfig() PreheatConfig {
	return PreheatConfig{Concurrency: 2, Retry: 10 * time.Second}
}

// Validate reports the first problem with c.
func (c PreheatConfig) Validate() error {
	if c.Concurrency < 1 || c.Retry <= 0 {
		return errors.New("agent: preheat: concurrency must be at least 1 and retry positive")
	}
	return nil
}

// Preheater fetches the blobs the tracker places on this node (seed jobs
// with replicas), as a pull would: through Agent.Blob, so from the swarm,
// verified, into the store, which then announces them. The tracker hands
// the work out in its announce answers (tracker.WithPreheat(p.Offer)); the
// agent's swarm announces through that client, so the preheater is made
// before the agent and started with it (two phases, as in cmd/shoal's
// wiring). Offers before Start are dropped: the tracker offers again.
type Preheater struct {
	cfg     PreheatConfig
	log     *slog.Logger
	fetched *prometheus.CounterVec
	sem     chan struct{}
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup

	mu     sync.Mutex
	agent  *Agent
	busy   map[digest.Digest]bool
	failed map[digest.Digest]time.Time
}

// NewPreheater returns a preheater that does nothing until Start.
func NewPreheater(cfg PreheatConfig, log *slog.Logger, reg prometheus.Registerer) (*Preheater, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Preheater{
		cfg: cfg, log: log, sem: make(chan struct{}, cfg.Concurrency),
		busy: make(map[digest.Digest]bool), failed: make(map[digest.Digest]time.Time),
		fetched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_agent_preheat_blobs_total",
			Help: "Blobs the tracker placed on this node, fetched ahead of a rollout, by result (ok, failed).",
		}, []string{"result"}),
	}
	if reg != nil {
		if err := reg.Register(p.fetched); err != nil {
			return nil, err
		}
	}
	p.ctx, p.stop = context.WithCancel(context.Background())
	return p, nil
}

// Start hands the preheater the agent it fetches through.
func (p *Preheater) Start(a *Agent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.agent = a
}

// Offer takes the tracker's preheat work; it never blocks. Blobs the store
// holds, blobs being fetched and blobs that failed less than Retry ago are
// left out.
func (p *Preheater) Offer(items []tracker.PreheatItem) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.agent == nil || p.ctx.Err() != nil {
		return
	}
	for _, it := range items {
		if p.busy[it.Digest] || time.Since(p.failed[it.Digest]) < p.cfg.Retry {
			continue
		}
		if _, err := p.agent.store.Stat(p.ctx, it.Digest); err == nil {
			continue
		}
		p.busy[it.Digest] = true
		a := p.agent
		p.wg.Go(func() { p.fetch(a, it) })
	}
}

func (p *Preheater) fetch(a *Agent, it tracker.PreheatItem) {
	err := p.fetchBlob(a, it)
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.busy, it.Digest)
	if err != nil {
		p.failed[it.Digest] = time.Now()
		p.fetched.WithLabelValues("failed").Inc()
		if p.ctx.Err() == nil {
			p.log.Warn("preheat failed", "digest", it.Digest, "repo", it.Repo, "error", err)
		}
		return
	}
	delete(p.failed, it.Digest)
	p.fetched.WithLabelValues("ok").Inc()
	p.log.Info("preheated", "digest", it.Digest, "bytes", it.Size)
}

// fetchBlob reads the blob through the agent to its end: the last byte
// comes only once the whole blob matched its digest.
func (p *Preheater) fetchBlob(a *Agent, it tracker.PreheatItem) error {
	select {
	case p.sem <- struct{}{}:
		defer func() { <-p.sem }()
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
	r, err := a.Blob(p.ctx, registryshim.Repo{Registry: it.Registry, Name: it.Repo}, it.Digest)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(io.Discard, io.NewSectionReader(r, 0, r.Size()))
	return err
}

// Close stops the fetches under way and waits for them.
func (p *Preheater) Close() {
	p.stop()
	p.wg.Wait()
}
