package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/prometheus/client_golang/prometheus"
)

// Cache bounds: registry hosts and repository names come from runtimes, so
// nothing keyed by them may grow without limit.
const (
	maxUnknownRegistries = 256
	maxReposPerRegistry  = 1024
)

// Client fetches manifests, blobs and tags from upstream registries. It is
// safe for concurrent use.
type Client struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	base     http.RoundTripper
	keychain authn.Keychain

	def   *upstream            // nil when Config.Default is empty
	table map[string]*upstream // by registryKey

	mu      sync.Mutex
	unknown map[string]*upstream // registries reached through AllowUnknown
}

// upstream is one registry as the client reaches it, with its cached auth.
type upstream struct {
	key      string        // canonical host, for routing and messages
	reg      name.Registry // what is dialled: the endpoint's host, or key
	logical  name.Registry // the host as runtimes name it, for credentials
	insecure bool          // plain HTTP allowed
	creds    authn.Authenticator
	hub      bool // Docker Hub: single-component names live under library/
	mode     Mode // whose credentials authorise requests (credential.go)

	mu      sync.Mutex
	nodeAt  time.Time // when auto mode last looked for node credentials
	hasNode bool      // and found some

	ping  *flights[*transport.Challenge]
	repos *flights[repoTransport]
}

// repoTransport carries the token for one repository (pull scope).
type repoTransport struct {
	rt     http.RoundTripper
	scheme string
}

// Option configures a Client.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	registerer prometheus.Registerer
	transport  http.RoundTripper
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegisterer sets where metrics are registered (default: a private
// registry nobody reads).
func WithRegisterer(r prometheus.Registerer) Option {
	return func(o *options) { o.registerer = r }
}

// WithTransport sets the RoundTripper under the auth layer, e.g. an
// httptest TLS server's client transport (default: a tuned http.Transport).
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// New returns a Client for cfg.
func New(cfg Config, opts ...Option) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{
		logger:     slog.New(slog.DiscardHandler),
		registerer: prometheus.NewRegistry(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, fmt.Errorf("upstream metrics: %w", err)
	}
	base := o.transport
	if base == nil {
		base = newBaseTransport(cfg.Timeout)
	}
	c := &Client{
		cfg:      cfg,
		log:      o.logger,
		metrics:  m,
		base:     transport.NewUserAgent(base, "shoal"),
		keychain: authn.DefaultKeychain,
		table:    make(map[string]*upstream, len(cfg.Registries)),
		unknown:  make(map[string]*upstream),
	}
	if cfg.DockerConfig != "" {
		c.keychain = fileKeychain{path: cfg.DockerConfig}
	}
	for _, r := range cfg.Registries {
		if r.Credentials == ModeAuto {
			r.Credentials = cfg.Credentials
		}
		u, err := newUpstream(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, r.Host, err)
		}
		c.table[u.key] = u
	}
	if cfg.Default != "" {
		if c.def, err = c.defaultUpstream(cfg.Default); err != nil {
			return nil, fmt.Errorf("%w: default: %w", ErrConfig, err)
		}
	}
	return c, nil
}

// Close releases idle connections. In-flight requests are unaffected.
func (c *Client) Close() {
	if ci, ok := c.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func newBaseTransport(timeout time.Duration) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = timeout
	t.ResponseHeaderTimeout = timeout
	// Many layers of one image are pulled from one host at once.
	t.MaxIdleConnsPerHost = 32
	return t
}

func newUpstream(r Registry) (*upstream, error) {
	key, err := registryKey(r.Host)
	if err != nil {
		return nil, err
	}
	dial := key
	if r.Endpoint != "" {
		if _, dial, err = parseEndpoint(r.Endpoint); err != nil {
			return nil, err
		}
	}
	u, err := makeUpstream(key, dial, r.Insecure)
	if err != nil {
		return nil, err
	}
	u.mode = r.Credentials
	if r.Username != "" {
		u.creds = &authn.Basic{Username: r.Username, Password: r.Password}
	}
	return u, nil
}

// defaultUpstream builds the entry for Config.Default: a table host, or a
// URL whose scheme decides whether plain HTTP is allowed. A URL naming a
// table host borrows that entry's credentials.
func (c *Client) defaultUpstream(def string) (*upstream, error) {
	if !strings.Contains(def, "://") {
		key, err := registryKey(def)
		if err != nil {
			return nil, err
		}
		return c.table[key], nil
	}
	scheme, host, err := parseEndpoint(def)
	if err != nil {
		return nil, err
	}
	key, err := registryKey(host)
	if err != nil {
		return nil, err
	}
	u, err := makeUpstream(key, host, scheme == "http")
	if err != nil {
		return nil, err
	}
	u.mode = c.cfg.Credentials
	if t, ok := c.table[key]; ok {
		u.creds, u.mode = t.creds, t.mode
	}
	return u, nil
}

func makeUpstream(key, dial string, insecure bool) (*upstream, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(dial, opts...)
	if err != nil {
		return nil, err
	}
	logical, err := name.NewRegistry(key)
	if err != nil {
		return nil, err
	}
	return &upstream{
		key:      key,
		reg:      reg,
		logical:  logical,
		insecure: insecure,
		hub:      key == name.DefaultRegistry,
		ping:     newFlights[*transport.Challenge](1),
		repos:    newFlights[repoTransport](maxReposPerRegistry),
	}, nil
}

// route finds the upstream for a registry named by a runtime ("" = default).
func (c *Client) route(registry string) (*upstream, error) {
	if registry == "" {
		if c.def == nil {
			return nil, fmt.Errorf("no registry named and no default upstream configured: %w", ErrRepositoryNotFound)
		}
		return c.def, nil
	}
	key, err := registryKey(registry)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidName, err)
	}
	if u, ok := c.table[key]; ok {
		return u, nil
	}
	if c.def != nil && c.def.key == key {
		return c.def, nil
	}
	if !c.cfg.AllowUnknown {
		return nil, fmt.Errorf("registry %q is not configured: %w", registry, ErrDenied)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if u, ok := c.unknown[key]; ok {
		return u, nil
	}
	u, err := makeUpstream(key, key, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidName, err)
	}
	u.mode = c.cfg.Credentials
	if len(c.unknown) >= maxUnknownRegistries {
		for k := range c.unknown {
			delete(c.unknown, k)
			break
		}
	}
	c.unknown[key] = u
	return u, nil
}

// transport returns the authenticated RoundTripper for repo, pinging the
// registry and exchanging a token the first time. The work is detached from
// ctx (other callers may be waiting on it) and bounded by Timeout. In
// requester mode the requester's credentials are used and the transport
// (its token) is cached under them; key is what forget takes.
func (c *Client) transport(ctx context.Context, u *upstream, repo string) (rt repoTransport, key string, err error) {
	reqAuth, key, requester := c.requester(ctx, u, repo)
	rt, err = u.repos.get(ctx, key, func() (repoTransport, error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
		defer cancel()
		ch, err := u.ping.get(bctx, "", func() (*transport.Challenge, error) {
			return c.pingUpstream(bctx, u)
		})
		if err != nil {
			return repoTransport{}, err
		}
		scheme := "https"
		if ch.Insecure {
			scheme = "http"
		}
		auth := reqAuth
		if !requester {
			if auth, err = c.authenticator(bctx, u); err != nil {
				return repoTransport{}, err
			}
		}
		if !strings.EqualFold(ch.Scheme, "bearer") {
			rt, err := transport.FromToken(u.reg, auth, c.base, ch, &transport.Token{})
			return repoTransport{rt: rt, scheme: scheme}, err
		}
		scope := "repository:" + repo + ":" + transport.PullScope
		tok, err := transport.Exchange(bctx, u.reg, auth, c.base, []string{scope}, ch)
		if err != nil {
			return repoTransport{}, fmt.Errorf("token for %s: %w", scope, err)
		}
		rt, err := transport.FromToken(u.reg, auth, c.base, ch, tok)
		return repoTransport{rt: rt, scheme: scheme}, err
	})
	return rt, key, err
}

func (c *Client) pingUpstream(ctx context.Context, u *upstream) (*transport.Challenge, error) {
	ch, err := transport.Ping(ctx, u.reg, c.base)
	if err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	if ch.Insecure && !u.insecure {
		// ggcr falls back to HTTP for hosts that look local; without the
		// operator's consent that would be a silent downgrade.
		return nil, fmt.Errorf("ping: %s answers only over plain HTTP and is not marked insecure: %w", u.reg, ErrDenied)
	}
	return ch, nil
}

// authenticator picks the node's credentials for u: the configured ones,
// else the keychain's for the host dialled, else for the host as runtimes
// name it (a mirror endpoint may share the origin's credentials).
func (c *Client) authenticator(ctx context.Context, u *upstream) (authn.Authenticator, error) {
	if u.creds != nil {
		return u.creds, nil
	}
	for _, r := range []name.Registry{u.reg, u.logical} {
		a, err := authn.Resolve(ctx, c.keychain, r)
		if err != nil {
			return nil, fmt.Errorf("credentials for %s: %w: %w", r, ErrInternal, err)
		}
		if a != authn.Anonymous {
			return a, nil
		}
	}
	return authn.Anonymous, nil
}

// forget drops the cached auth under key (see transport) so the next
// request pings and reads credentials afresh; used after a 401, when a
// token or password changed.
func (u *upstream) forget(key string) {
	u.repos.forget(key, nil)
	u.ping.forget("", nil)
}
