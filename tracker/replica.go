package tracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
)

// Member is one tracker of a replica set, as Replicas asks it: a *Client.
type Member interface {
	MetaInfo(ctx context.Context, src Source, have int) (*piece.Info, error)
	MetaInfoAfter(ctx context.Context, src Source, known *piece.Info) (*piece.Info, error)
	Peers(ctx context.Context, dgst digest.Digest, self string) ([]Peer, error)
	Announce(ctx context.Context, a Announce) (time.Duration, error)
	Listed(ctx context.Context, id string) (bool, error)
	Ping(ctx context.Context) error
}

// Endpoint is one replica: the name rendezvous hashing ranks (the URL as
// given, or the address a DNS name resolved to) and its client.
type Endpoint struct {
	Name   string
	Member Member
}

// ReplicaConfig tunes a Replicas.
type ReplicaConfig struct {
	// RetryAfter is how long a replica that gave no answer is passed over
	// before it is asked again; its digests are the next replica's
	// meanwhile.
	RetryAfter time.Duration
	// RequestTimeout bounds one announce, peers or listed request to one
	// replica, so a replica that swallows packets fails over too. Metainfo
	// long-polls are bounded by the tracker's MetaInfoWait instead.
	RequestTimeout time.Duration
}

// DefaultReplicaConfig returns the defaults: a silent replica is passed
// over for 10 s, a request waits at most 10 s.
func DefaultReplicaConfig() ReplicaConfig {
	return ReplicaConfig{RetryAfter: 10 * time.Second, RequestTimeout: 10 * time.Second}
}

// Validate reports the first problem with c.
func (c ReplicaConfig) Validate() error {
	if c.RetryAfter <= 0 || c.RequestTimeout <= 0 {
		return errors.New("tracker: replicas: retry-after and request timeout must be positive")
	}
	return nil
}

// Replicas is a set of trackers sharing no state: every digest belongs to
// the live replica that ranks first for it by rendezvous hashing (Rank),
// so metainfo and peers of a digest are asked of its owner only, whose
// seeder alone fetches it from the origin. An agent announces to each
// replica the blobs that replica owns, and to the owner of its own peer ID
// in any case, so that replica lists it for admission. A replica that gives
// no answer (Unreachable) is passed over for RetryAfter: its digests fall
// to the next replica in their rank at once, and the announce that found it
// silent re-announces them there. Replicas satisfies what the swarm asks
// of a tracker, and p2p.Roster.
type Replicas struct {
	cfg     ReplicaConfig
	now     func() time.Time
	log     *slog.Logger
	refresh func(context.Context) ([]Endpoint, error) // WithRefresh
	every   time.Duration

	mu          sync.Mutex
	reps        []*replica      // sorted by name; empty until a refresh finds some
	sent        map[string]bool // replicas whose last announce listed blobs
	nextRefresh time.Time
	refreshErr  error // why the last refresh found none, while reps is empty
}

type replica struct {
	Endpoint
	downUntil time.Time // passed over until then
	downSince time.Time // the first request of its current silence; zero once it answers
}

// emptyRefresh is how often a set that knows no replica yet (a DNS name
// with no address so far) asks its refresh function again, at most.
const emptyRefresh = 5 * time.Second

// errNoReplica is the failure of a request while no replica is known.
var errNoReplica = fmt.Errorf("%w: no tracker replica known yet", ErrUnavailable)

// ReplicaOption configures a Replicas.
type ReplicaOption func(*Replicas)

// WithReplicaClock sets the clock of failover (default: the system clock).
func WithReplicaClock(c interface{ Now() time.Time }) ReplicaOption {
	return func(r *Replicas) {
		if c != nil {
			r.now = c.Now
		}
	}
}

// WithReplicaLogger sets the logger (default: discard).
func WithReplicaLogger(l *slog.Logger) ReplicaOption {
	return func(r *Replicas) {
		if l != nil {
			r.log = l
		}
	}
}

// WithRefresh makes the set ask fn for its endpoints again at most every
// interval, before an announce (a DNS name's addresses change). Endpoints
// whose name stays keep their client and their failover state. With it the
// set may start with no endpoint (the name resolves to nothing yet): every
// request fails with ErrUnavailable, and fn is asked again every 5 s (at
// most every interval) until it finds some.
func WithRefresh(fn func(context.Context) ([]Endpoint, error), every time.Duration) ReplicaOption {
	return func(r *Replicas) { r.refresh, r.every = fn, every }
}

// NewReplicas returns the replica set of eps (names unique; at least one
// unless WithRefresh is given).
func NewReplicas(cfg ReplicaConfig, eps []Endpoint, opts ...ReplicaOption) (*Replicas, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Replicas{cfg: cfg, now: time.Now, log: slog.New(slog.DiscardHandler), sent: make(map[string]bool)}
	for _, o := range opts {
		o(r)
	}
	if r.refresh != nil && r.every <= 0 {
		return nil, errors.New("tracker: replicas: the refresh interval must be positive")
	}
	if len(eps) > 0 || r.refresh == nil {
		if err := r.set(eps); err != nil {
			return nil, err
		}
	}
	if r.refresh != nil {
		r.nextRefresh = r.now().Add(r.refreshEvery(len(eps) == 0))
	}
	return r, nil
}

// refreshEvery is the refresh interval, shorter while no replica is known.
func (r *Replicas) refreshEvery(empty bool) time.Duration {
	if empty {
		return min(r.every, emptyRefresh)
	}
	return r.every
}

// set replaces the endpoints, keeping the state of names that stay.
func (r *Replicas) set(eps []Endpoint) error {
	if len(eps) == 0 {
		return errors.New("tracker: replicas: no tracker")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := make(map[string]*replica, len(r.reps))
	for _, rep := range r.reps {
		old[rep.Name] = rep
	}
	reps := make([]*replica, 0, len(eps))
	for _, ep := range eps {
		if ep.Name == "" || ep.Member == nil {
			return errors.New("tracker: replicas: an endpoint without a name or a client")
		}
		if slices.ContainsFunc(reps, func(x *replica) bool { return x.Name == ep.Name }) {
			return fmt.Errorf("tracker: replicas: %s listed twice", ep.Name)
		}
		if o := old[ep.Name]; o != nil {
			reps = append(reps, o)
			continue
		}
		reps = append(reps, &replica{Endpoint: ep})
	}
	slices.SortFunc(reps, func(a, b *replica) int { return cmpString(a.Name, b.Name) })
	r.reps = reps
	return nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Names returns the replicas' names, sorted.
func (r *Replicas) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.reps))
	for i, rep := range r.reps {
		out[i] = rep.Name
	}
	return out
}

// Owner returns the name of the replica asked about key (a digest or a
// peer ID) now: the first live one in its rank; "" while none is known.
func (r *Replicas) Owner(key string) string {
	if o := r.order(key); len(o) > 0 {
		return o[0].Name
	}
	return ""
}

// order returns the live replicas in key's rank; all of them, in rank,
// when none is live (asking a silent one beats asking none); none while
// none is known.
func (r *Replicas) order(key string) []*replica {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orderLocked(key, r.now())
}

func (r *Replicas) orderLocked(key string, now time.Time) []*replica {
	ranked := make([]*replica, len(r.reps))
	for i, j := range rankReplicas(r.reps, key) {
		ranked[i] = r.reps[j]
	}
	live := slices.DeleteFunc(slices.Clone(ranked), func(rep *replica) bool { return now.Before(rep.downUntil) })
	if len(live) == 0 {
		return ranked
	}
	return live
}

func rankReplicas(reps []*replica, key string) []int {
	names := make([]string, len(reps))
	for i, rep := range reps {
		names[i] = rep.Name
	}
	return Rank(names, key)
}

// down passes rep over for RetryAfter after a request that got no answer.
// It reports whether rep was live until now.
func (r *Replicas) down(rep *replica, err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Before(rep.downUntil) {
		return false
	}
	rep.downUntil = now.Add(r.cfg.RetryAfter)
	if rep.downSince.IsZero() {
		rep.downSince = now
	}
	r.log.Warn("tracker replica not answering; its digests go to the next replica", "tracker", rep.Name, "retry_in", r.cfg.RetryAfter, "err", err)
	return true
}

// answered records that rep gave an answer: its silence, if any, is over.
func (r *Replicas) answered(rep *replica) {
	r.mu.Lock()
	rep.downSince = time.Time{}
	r.mu.Unlock()
}

// try asks the replicas in key's order until one answers: an answer,
// even an error one (404, 503), is final; only no answer fails over.
func try[T any](ctx context.Context, r *Replicas, key string, timeout time.Duration, fn func(context.Context, Member) (T, error)) (T, error) {
	var zero T
	last := errNoReplica
	for _, rep := range r.order(key) {
		v, err := call(ctx, timeout, rep.Member, fn)
		if err == nil || !Unreachable(err) || ctx.Err() != nil {
			if ctx.Err() == nil {
				r.answered(rep)
			}
			return v, err
		}
		r.down(rep, err)
		last = err
	}
	return zero, last
}

func call[T any](ctx context.Context, timeout time.Duration, m Member, fn func(context.Context, Member) (T, error)) (T, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return fn(ctx, m)
}

// MetaInfo asks the owner of src.Digest.
func (r *Replicas) MetaInfo(ctx context.Context, src Source, have int) (*piece.Info, error) {
	return try(ctx, r, src.Digest.String(), 0, func(ctx context.Context, m Member) (*piece.Info, error) {
		return m.MetaInfo(ctx, src, have)
	})
}

// MetaInfoAfter asks the owner of src.Digest for the hashes after known's.
func (r *Replicas) MetaInfoAfter(ctx context.Context, src Source, known *piece.Info) (*piece.Info, error) {
	return try(ctx, r, src.Digest.String(), 0, func(ctx context.Context, m Member) (*piece.Info, error) {
		return m.MetaInfoAfter(ctx, src, known)
	})
}

// Peers asks the owner of dgst.
func (r *Replicas) Peers(ctx context.Context, dgst digest.Digest, self string) ([]Peer, error) {
	return try(ctx, r, dgst.String(), r.cfg.RequestTimeout, func(ctx context.Context, m Member) ([]Peer, error) {
		return m.Peers(ctx, dgst, self)
	})
}

// Listed asks the live replicas in the rank of id, the owner of id first
// (every agent announces there), until one lists it. It is not listed
// when every replica that answered says so; it cannot tell (an error) when
// none lists it and one could not tell either (it just restarted), or none
// answered.
func (r *Replicas) Listed(ctx context.Context, id string) (bool, error) {
	var unsure, silent error
	answered := false
	for _, rep := range r.order(id) {
		ok, err := call(ctx, r.cfg.RequestTimeout, rep.Member, func(ctx context.Context, m Member) (bool, error) {
			return m.Listed(ctx, id)
		})
		if err == nil || (!Unreachable(err) && ctx.Err() == nil) {
			r.answered(rep)
		}
		switch {
		case err == nil && ok:
			return true, nil
		case err == nil:
			answered = true
		case ctx.Err() != nil, errors.Is(err, ErrInvalid):
			return false, err
		case Unreachable(err):
			r.down(rep, err)
			silent = err
		default:
			unsure = err // it answered that it cannot tell
		}
	}
	switch {
	case unsure != nil:
		return false, unsure
	case answered:
		return false, nil
	case silent != nil:
		return false, silent
	}
	return false, errNoReplica
}

// Ping succeeds when any replica answers its health probe; a certificate
// error of any is returned as such. While no replica is known it fails
// with ErrUnavailable and why the last refresh found none.
func (r *Replicas) Ping(ctx context.Context) error {
	r.mu.Lock()
	reps, why := slices.Clone(r.reps), r.refreshErr
	r.mu.Unlock()
	if len(reps) == 0 {
		if why != nil {
			return fmt.Errorf("%w: %w", errNoReplica, why)
		}
		return errNoReplica
	}
	var errs []error
	for _, rep := range reps {
		_, err := call(ctx, r.cfg.RequestTimeout, rep.Member, func(ctx context.Context, m Member) (struct{}, error) {
			return struct{}{}, m.Ping(ctx)
		})
		if errors.Is(err, ErrCertificate) {
			return err
		}
		if err == nil {
			r.answered(rep)
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", rep.Name, err))
	}
	return errors.Join(errs...)
}
