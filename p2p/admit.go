package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// Roster tells whether the cluster's tracker lists a peer ID now: the
// tracker client over HTTP for an agent, the tracker server in process for
// its seeder. An error means it cannot tell (unreachable, just restarted).
type Roster interface {
	Listed(ctx context.Context, id string) (bool, error)
}

// AdmissionConfig tunes an Admission.
type AdmissionConfig struct {
	// ListedTTL: a listed peer is checked again after this, in the
	// background; it stays admitted while the check runs and while the
	// tracker cannot answer.
	ListedTTL time.Duration
	// UnlistedTTL: how long an unlisted peer is refused from memory, and
	// how long a peer the tracker could not be asked about is refused
	// before it is asked again.
	UnlistedTTL time.Duration
	// CheckTimeout bounds one question to the roster.
	CheckTimeout time.Duration
	// MaxChecks bounds the questions about new peers under way at once;
	// a new peer beyond is refused unasked (a flood of fresh peer IDs must
	// not become a flood of tracker requests).
	MaxChecks int
	// MaxRemembered bounds the refused peers remembered; the oldest-seen
	// arbitrary one is forgotten first. Admitted peers are all kept.
	MaxRemembered int
}

// DefaultAdmissionConfig returns the defaults: listed peers re-checked
// every minute, refusals remembered for 3 s (a new agent is refused at most
// that long if it dials before its first announce lands).
func DefaultAdmissionConfig() AdmissionConfig {
	return AdmissionConfig{ListedTTL: time.Minute, UnlistedTTL: 3 * time.Second, CheckTimeout: 3 * time.Second, MaxChecks: 16, MaxRemembered: 4096}
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c AdmissionConfig) Validate() error {
	if c.ListedTTL <= 0 || c.UnlistedTTL <= 0 || c.CheckTimeout <= 0 || c.MaxChecks < 1 || c.MaxRemembered < 1 {
		return fmt.Errorf("%w: admission: TTLs and timeout must be positive, bounds at least 1", ErrInvalidConfig)
	}
	return nil
}

// Refusal reasons of shoal_p2p_peers_refused_total. Never a peer ID.
const (
	refusedUnlisted    = "unlisted"    // the tracker does not list it
	refusedUnavailable = "unavailable" // never admitted, and the tracker cannot tell now
	refusedBusy        = "busy"        // too many checks of new peers under way
)

// Admission admits the peers its Roster lists, asking about each unknown
// one once and remembering the answer: Admit is Config.Admit. A peer once
// admitted stays admitted while the roster cannot answer (a tracker outage
// must not break the swarm); a peer never admitted is refused until the
// roster says it is listed (an outage never widens admission).
type Admission struct {
	roster Roster
	cfg    AdmissionConfig
	clock  clock.Clock
	log    *slog.Logger
	m      admitMetrics

	ctx    context.Context // ends with Close: background re-checks stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool // no re-check starts once Close has begun
	peers    map[peer.ID]*admitted
	refusals int // entries not listed
	checks   int // checks of new peers under way
}

// admitted is what is known of one peer. Guarded by Admission.mu.
type admitted struct {
	listed   bool          // the last answer was yes
	until    time.Time     // the answer holds until; then ask again
	checking chan struct{} // non-nil while a check runs; closed at its end
	why      string        // while not listed: the refusal reason
	logged   bool          // its refusal was logged
}

type admitMetrics struct {
	refused *prometheus.CounterVec
	checks  *prometheus.CounterVec
}

// NewAdmission returns an Admission over r. Options: WithLogger,
// WithRegisterer, WithClock. Close it to stop its background re-checks.
func NewAdmission(cfg AdmissionConfig, r Roster, opts ...Option) (*Admission, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("p2p: admission without a roster")
	}
	o := options{log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry(), clock: clock.New()}
	for _, opt := range opts {
		opt(&o)
	}
	a := &Admission{roster: r, cfg: cfg, clock: o.clock, log: o.log, peers: make(map[peer.ID]*admitted)}
	a.m = admitMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_p2p_peers_refused_total",
			Help: "Connections and requests refused because the tracker does not list the peer, by reason: unlisted, unavailable (never admitted, tracker cannot tell), busy (too many checks of new peers).",
		}, []string{"reason"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_p2p_admission_checks_total",
			Help: "Questions to the tracker whether it lists a peer, by answer: listed, unlisted, error.",
		}, []string{"answer"}),
	}
	for _, c := range []prometheus.Collector{a.m.refused, a.m.checks} {
		if err := o.reg.Register(c); err != nil {
			return nil, fmt.Errorf("p2p: registering admission metrics: %w", err)
		}
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// Close stops the background re-checks and waits for them.
func (a *Admission) Close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
}

// Vouch admits p as listed now, without asking: the tracker just handed
// it out.
func (a *Admission) Vouch(p peer.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.entry(p)
	a.settle(e, true, a.clock.Now().Add(a.cfg.ListedTTL))
}

// Admit reports whether p may connect or be served. It asks the roster
// about a peer it knows nothing of, at most CheckTimeout, and answers from
// memory otherwise.
func (a *Admission) Admit(p peer.ID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		e := a.peers[p]
		now := a.clock.Now()
		switch {
		case e != nil && e.listed:
			if !now.Before(e.until) && e.checking == nil {
				a.recheck(p, e)
			}
			return true
		case e != nil && e.checking != nil:
			// Another caller asks now: wait for its answer.
			ch := e.checking
			a.mu.Unlock()
			<-ch
			a.mu.Lock()
			continue
		case e != nil && now.Before(e.until):
			return a.refuse(p, e)
		case a.checks >= a.cfg.MaxChecks:
			a.m.refused.WithLabelValues(refusedBusy).Inc()
			return false
		}
		if e == nil {
			e = a.entry(p)
		}
		a.checks++
		listed, err := a.ask(p, e)
		a.checks--
		switch {
		case err == nil && e.listed && !listed:
			// Vouched for by a handout while we asked: that is newer.
		case err == nil:
			a.settle(e, listed, now.Add(a.ttl(listed)))
		case e.listed:
			// Vouched for while we asked.
		default:
			e.until, e.why = now.Add(a.cfg.UnlistedTTL), refusedUnavailable
			a.log.Debug("cannot ask the tracker about a peer", "peer", p, "err", err)
			return a.refuse(p, e)
		}
	}
}

// ask asks the roster about p with mu released, marking e as being
// checked meanwhile. Caller holds mu.
func (a *Admission) ask(p peer.ID, e *admitted) (bool, error) {
	done := make(chan struct{})
	e.checking = done
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.CheckTimeout)
	listed, err := a.roster.Listed(ctx, p.String())
	cancel()
	a.mu.Lock()
	e.checking = nil
	close(done)
	switch {
	case err != nil:
		a.m.checks.WithLabelValues("error").Inc()
	case listed:
		a.m.checks.WithLabelValues("listed").Inc()
	default:
		a.m.checks.WithLabelValues("unlisted").Inc()
	}
	return listed, err
}

// recheck asks about a listed peer whose answer expired, in the
// background; it stays admitted meanwhile, and if the roster cannot
// answer. Caller holds mu.
func (a *Admission) recheck(p peer.ID, e *admitted) {
	if a.closed {
		return
	}
	e.checking = make(chan struct{})
	a.wg.Go(func() {
		ctx, cancel := context.WithTimeout(a.ctx, a.cfg.CheckTimeout)
		listed, err := a.roster.Listed(ctx, p.String())
		cancel()
		a.mu.Lock()
		defer a.mu.Unlock()
		close(e.checking)
		e.checking = nil
		now := a.clock.Now()
		switch {
		case err != nil:
			a.m.checks.WithLabelValues("error").Inc()
			e.until = now.Add(a.cfg.UnlistedTTL) // ask again soon; admitted meanwhile
		case !listed:
			a.m.checks.WithLabelValues("unlisted").Inc()
			a.log.Info("peer no longer listed by the tracker: refusing it from now on", "peer", p)
			a.settle(e, false, now.Add(a.cfg.UnlistedTTL))
		default:
			a.m.checks.WithLabelValues("listed").Inc()
			e.until = now.Add(a.cfg.ListedTTL)
		}
	})
}

// entry returns p's entry, created unknown (listed false, until zero).
// Caller holds mu.
func (a *Admission) entry(p peer.ID) *admitted {
	if e := a.peers[p]; e != nil {
		return e
	}
	if a.refusals >= a.cfg.MaxRemembered {
		a.forgetRefused()
	}
	e := &admitted{}
	a.peers[p] = e
	a.refusals++
	return e
}

// settle records an answer about e. Caller holds mu.
func (a *Admission) settle(e *admitted, listed bool, until time.Time) {
	switch {
	case listed && !e.listed:
		a.refusals--
		e.logged = false
	case !listed && e.listed:
		a.refusals++
	}
	e.listed, e.until = listed, until
	if !listed {
		e.why = refusedUnlisted
	}
}

// forgetRefused drops the refusals that expired, or if none did, one
// refusal not being checked. Caller holds mu.
func (a *Admission) forgetRefused() {
	now := a.clock.Now()
	var victim peer.ID
	for p, e := range a.peers {
		if e.listed || e.checking != nil {
			continue
		}
		victim = p
		if !now.Before(e.until) {
			delete(a.peers, p)
			a.refusals--
		}
	}
	if a.refusals >= a.cfg.MaxRemembered && a.peers[victim] != nil {
		delete(a.peers, victim)
		a.refusals--
	}
}

// refuse counts a refusal of p and logs the first. Caller holds mu.
func (a *Admission) refuse(p peer.ID, e *admitted) bool {
	a.m.refused.WithLabelValues(e.why).Inc()
	if !e.logged {
		e.logged = true
		a.log.Warn("peer refused: the tracker does not list it, or cannot say now", "peer", p, "reason", e.why)
	}
	return false
}

func (a *Admission) ttl(listed bool) time.Duration {
	if listed {
		return a.cfg.ListedTTL
	}
	return a.cfg.UnlistedTTL
}
