package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/swarm"
	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/registryshim"
	"github.com/shoal-dev/shoal/tracker"
)

// Agent is the registry backend of a node: it implements
// registryshim.Backend over the upstream registries, the content store and,
// when it has one, the swarm.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	up       *upstream.Client
	store    *store.Disk
	swarm    *swarm.Swarm // nil: every blob comes from the upstream
	shim     http.Handler
	tags     *tagCache
	mans     *manifestCache
	confirms *confirms // what the upstream confirmed each repository holds
	distrust digestSet // digests whose holders sent a bad copy to seed (push_seed.go)
	creds    *credKeys
	pushes   *pushes // nil: pushes are refused (push.go)
	metrics  *metrics
	closing  atomic.Bool
	origin   atomic.Int64 // blob bytes fetched from the upstream without a swarm

	ctx  context.Context // ends when Close starts; prefetches use it
	stop context.CancelFunc
	bg   sync.WaitGroup // prefetches
}

var _ registryshim.Backend = (*Agent)(nil)

// Option configures an Agent.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	registerer prometheus.Registerer
	now        func() time.Time
	swarm      *swarm.Swarm
	push       *PushConfig
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegisterer registers the metrics of the agent and its handler with r.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithClock replaces time.Now (tests of tag expiry).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithSwarm fetches blobs the store does not hold through sw, which must
// fill the same store. Without it every blob comes from the upstream.
func WithSwarm(sw *swarm.Swarm) Option { return func(o *options) { o.swarm = sw } }

// New returns the agent serving from st, filled from up (and the swarm, if
// one is given). The caller owns up, st and the swarm, and closes them after
// the agent.
func New(cfg Config, up *upstream.Client, st *store.Disk, opts ...Option) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if up == nil || st == nil {
		return nil, errors.New("agent: an upstream client and a store are required")
	}
	o := options{logger: slog.New(slog.DiscardHandler), registerer: prometheus.NewRegistry(), now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	a := &Agent{
		cfg:      cfg,
		log:      o.logger,
		now:      o.now,
		up:       up,
		store:    st,
		swarm:    o.swarm,
		tags:     newTagCache(maxTags),
		mans:     newManifestCache(cfg.ManifestCacheBytes),
		confirms: newConfirms(cfg.AuthTTL, o.now),
		metrics:  newMetrics(o.registerer),
	}
	creds, err := newCredentials(o.registerer)
	if err != nil {
		return nil, err
	}
	a.creds = creds
	a.ctx, a.stop = context.WithCancel(context.Background())
	var backend registryshim.Backend = a
	shimOpts := []registryshim.Option{registryshim.WithLogger(o.logger), registryshim.WithRegisterer(o.registerer), registryshim.WithPathRegistries(up.Configured)}
	if o.push != nil {
		var err error
		if a.pushes, err = newPushes(*o.push, o.now, o.logger, o.registerer); err != nil {
			return nil, err
		}
		backend = pushBackend{a}
		if o.push.AskCredentials {
			shimOpts = append(shimOpts, registryshim.WithCredentialChallenge())
		}
	}
	a.shim = registryshim.New(backend, shimOpts...)
	return a, nil
}

// Stats counts the blob bytes this agent received, by source.
func (a *Agent) Stats() swarm.Stats {
	var st swarm.Stats
	if a.swarm != nil {
		st = a.swarm.Stats()
	}
	st.Origin += a.origin.Load()
	return st
}

func (a *Agent) countOrigin(n int64) {
	if a.swarm != nil {
		a.swarm.CountOrigin(n)
		return
	}
	a.origin.Add(n)
}

// Handler serves the registry API under /v2/ and the probes /healthz and
// /readyz.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v2/", a.withCredentials(a.shim))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if a.closing.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// Close stops the prefetches under way and marks the agent not ready. The
// downloads themselves end when the store closes; their partial files stay
// for resumption.
func (a *Agent) Close() error {
	a.closing.Store(true)
	a.stop()
	a.bg.Wait()
	if a.pushes != nil {
		a.pushes.close()
	}
	return nil
}

// Drain marks the agent not ready, so that load balancers and probes stop
// sending it work before it shuts down.
func (a *Agent) Drain() { a.closing.Store(true) }

// Manifest resolves ref, a tag or a digest, through the upstream.
func (a *Agent) Manifest(ctx context.Context, repo registryshim.Repo, ref string, head bool) (*registryshim.Manifest, error) {
	var m *registryshim.Manifest
	var err error
	if d, perr := digest.Parse(ref); perr == nil {
		m, err = a.manifestByDigest(ctx, repo, d)
	} else {
		m, err = a.manifestByTag(ctx, repo, ref)
	}
	if err == nil && !head && a.cfg.Prefetch {
		a.prefetch(ctx, repo, m)
	}
	return m, ociError(err)
}

// prefetch starts downloading the config and layers of an image manifest
// a runtime just fetched: it will ask for them next, and in a rollout the
// swarm starts moving every layer at once instead of the runtime's few at
// a time.
//
// A prefetch runs on under the agent's context, after the request, with the
// requester's credentials.
func (a *Agent) prefetch(ctx context.Context, repo registryshim.Repo, m *registryshim.Manifest) {
	var man struct {
		Config v1.Descriptor   `json:"config"`
		Layers []v1.Descriptor `json:"layers"`
	}
	if json.Unmarshal(m.Body, &man) != nil || len(man.Layers) == 0 {
		return // an index, or not an image manifest
	}
	pctx := upstream.WithCredential(a.ctx, upstream.CredentialFrom(ctx))
	for _, d := range append(man.Layers, man.Config) {
		if d.Digest.Validate() != nil || d.Size <= 0 {
			continue
		}
		if _, err := a.store.Stat(a.ctx, d.Digest); err == nil {
			continue
		}
		if a.closing.Load() {
			return
		}
		a.bg.Go(func() {
			r, err := a.Blob(pctx, repo, d.Digest)
			if err != nil {
				a.log.Debug("prefetch failed", "digest", d.Digest, "err", err)
				return
			}
			r.Close() // the download goes on in the store
		})
	}
}

func (a *Agent) manifestByDigest(ctx context.Context, repo registryshim.Repo, d digest.Digest) (*registryshim.Manifest, error) {
	if m, ok := a.mans.get(d); ok {
		// Cached under some repository: served under this one once the
		// upstream confirms it holds it.
		if err := a.authorizeManifest(ctx, repo, d); err != nil {
			return nil, err
		}
		a.confirmManifestFor(ctx, repo, m)
		a.metrics.manifests.WithLabelValues("hit").Inc()
		return m, nil
	}
	a.metrics.manifests.WithLabelValues("miss").Inc()
	return a.fetchManifest(ctx, repo, d.String())
}

func (a *Agent) fetchManifest(ctx context.Context, repo registryshim.Repo, ref string) (*registryshim.Manifest, error) {
	desc, body, err := a.up.Manifest(ctx, repo.Registry, repo.Name, ref)
	if err != nil {
		return nil, err
	}
	m := &registryshim.Manifest{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size, Body: body}
	a.mans.put(m)
	a.confirmManifestFor(ctx, repo, m)
	return m, nil
}

// manifestByTag asks the upstream which digest the tag names now (a cheap
// HEAD) unless it did so within TagTTL, and serves that digest's manifest
// from the cache when it has it. When the upstream cannot be reached, the
// last known answer is served and marked stale.
func (a *Agent) manifestByTag(ctx context.Context, repo registryshim.Repo, tag string) (*registryshim.Manifest, error) {
	key := tagKey{repo.Registry, repo.Name, tag}
	known, seen := a.tags.get(key)
	if fresh, _ := a.confirms.check(a.keyFor(ctx, repo, known.digest)); seen && fresh && a.now().Sub(known.at) < a.cfg.TagTTL {
		if m, ok := a.mans.get(known.digest); ok {
			a.metrics.manifests.WithLabelValues("hit").Inc()
			return m, nil
		}
	}
	a.metrics.manifests.WithLabelValues("miss").Inc()
	desc, err := a.up.HeadManifest(ctx, repo.Registry, repo.Name, tag)
	if err == nil {
		a.tags.put(key, desc.Digest, a.now())
		if m, ok := a.mans.get(desc.Digest); ok {
			a.confirmManifestFor(ctx, repo, m) // the HEAD in repo answered this digest
			return m, nil
		}
	}
	if err == nil || !isFinal(err) {
		// Some registries answer HEAD without a digest or not at all:
		// the GET gives the authoritative answer.
		var m *registryshim.Manifest
		if m, err = a.fetchManifest(ctx, repo, tag); err == nil {
			a.tags.put(key, m.Digest, a.now())
			return m, nil
		}
	}
	if seen && errors.Is(err, upstream.ErrUnavailable) {
		// Only to a requester the digest was confirmed for before: the
		// tag cache is shared by every credential.
		_, confirmed := a.confirms.check(a.keyFor(ctx, repo, known.digest))
		if m, ok := a.mans.get(known.digest); ok && confirmed {
			a.log.Warn("upstream unreachable, serving last known manifest",
				"registry", repo.Registry, "repo", repo.Name, "tag", tag, "digest", m.Digest, "age", a.now().Sub(known.at), "err", err)
			a.metrics.manifests.WithLabelValues("stale").Inc()
			stale := *m
			stale.Stale = true
			return &stale, nil
		}
	}
	return nil, err
}

// isFinal tells the upstream answers that a GET would only repeat.
func isFinal(err error) bool {
	for _, e := range []error{upstream.ErrManifestNotFound, upstream.ErrRepositoryNotFound,
		upstream.ErrUnauthorized, upstream.ErrDenied, upstream.ErrTooManyRequests, upstream.ErrUnavailable} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Blob serves a blob from the store, starting or joining its download from
// the upstream when the store does not hold it.
func (a *Agent) Blob(ctx context.Context, repo registryshim.Repo, dgst digest.Digest) (registryshim.Blob, error) {
	size, err := a.authorizeBlob(ctx, repo, dgst)
	if err != nil {
		return nil, ociError(err)
	}
	r, err := a.store.Open(ctx, dgst)
	if err == nil {
		a.metrics.blobs.WithLabelValues("hit").Inc()
		return r, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, storeError(err)
	}
	a.metrics.blobs.WithLabelValues("miss").Inc()
	src, info, err := a.swarmInfo(ctx, repo, dgst)
	if err != nil {
		return nil, err
	}
	if info != nil {
		r, err = a.store.Fetch(ctx, dgst, info.Size, a.swarm.Filler(src, info, requesterFiller(ctx, a.upstreamFiller(repo, dgst))))
		if err != nil {
			return nil, storeError(err)
		}
		return r, nil
	}
	if size < 0 {
		if size, err = a.up.BlobSize(ctx, repo.Registry, repo.Name, dgst); err != nil {
			return nil, ociError(err)
		}
	}
	r, err = a.store.Fetch(ctx, dgst, size, requesterFiller(ctx, a.upstreamFiller(repo, dgst)))
	if err != nil {
		return nil, storeError(err)
	}
	return r, nil
}

// swarmInfo asks the swarm for the metainfo of a blob the store lacks. A
// nil Info and no error means: no swarm, or no tracker to be reached, so
// the blob comes from the upstream.
func (a *Agent) swarmInfo(ctx context.Context, repo registryshim.Repo, dgst digest.Digest) (tracker.Source, *piece.Info, error) {
	src := tracker.Source{Registry: repo.Registry, Repo: repo.Name, Digest: dgst}
	if a.swarm == nil {
		return src, nil, nil
	}
	info, err := a.swarm.MetaInfo(ctx, src)
	switch {
	case err == nil:
		return src, info, nil
	case errors.Is(err, tracker.ErrNotFound):
		return src, nil, fmt.Errorf("%w: %w", registryshim.ErrBlobUnknown, err)
	case ctx.Err() != nil:
		return src, nil, ctx.Err()
	}
	// Also a private blob its seeder could not fetch (requester mode): this
	// requester's credentials fetch it, and peers get it from this node.
	a.log.Warn("no metainfo from the tracker (unreachable, or its seeder could not fetch the blob), pulling from the upstream", "digest", dgst, "err", err)
	a.metrics.trackerDown.Inc()
	return src, nil, nil
}

// upstreamFiller fetches the ranges the store is missing, each with one
// Range request, so a download interrupted by a restart resumes where it
// stopped. Its error reaches the shim through the store's readers, so it
// carries the OCI error.
func (a *Agent) upstreamFiller(repo registryshim.Repo, dgst digest.Digest) store.Filler {
	return a.rangeFiller(repo, dgst, 0, nil)
}

// rangeFiller is upstreamFiller with requests of at most chunk bytes (0:
// a missing range each), each asked for once pace returns (if not nil).
func (a *Agent) rangeFiller(repo registryshim.Repo, dgst digest.Digest, chunk int64, pace func(context.Context, digest.Digest) error) store.Filler {
	return func(ctx context.Context, w store.Writer) error {
		for _, m := range w.Missing() {
			step := m.Len
			if chunk > 0 {
				step = chunk
			}
			for off := m.Off; off < m.Off+m.Len; off += step {
				if pace != nil {
					if err := pace(ctx, dgst); err != nil {
						return err
					}
				}
				r := store.Range{Off: off, Len: min(step, m.Off+m.Len-off)}
				if err := a.fetchRange(ctx, repo, dgst, w, r); err != nil {
					a.log.Warn("upstream blob fetch failed", "digest", dgst, "offset", r.Off, "err", err)
					return ociError(err)
				}
			}
		}
		return nil
	}
}

func (a *Agent) fetchRange(ctx context.Context, repo registryshim.Repo, dgst digest.Digest, w store.Writer, m store.Range) error {
	body, err := a.up.BlobRange(ctx, repo.Registry, repo.Name, dgst, m.Off, m.Len)
	if err != nil {
		return err
	}
	defer body.Close()
	buf := make([]byte, copyBuffer)
	n, err := io.CopyBuffer(io.NewOffsetWriter(w, m.Off), io.LimitReader(body, m.Len), buf)
	a.countOrigin(n)
	if err == nil && n < m.Len {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("upstream blob %s at %d: %w", dgst, m.Off+n, err)
	}
	return nil
}

const copyBuffer = 256 << 10

// requesterFiller runs f with the credentials of the requester in ctx:
// the store runs a download under its own context, which outlives the
// request that started it.
func requesterFiller(ctx context.Context, f store.Filler) store.Filler {
	cred := upstream.CredentialFrom(ctx)
	if cred == nil {
		return f
	}
	return func(fctx context.Context, w store.Writer) error {
		return f(upstream.WithCredential(fctx, cred), w)
	}
}

// StatBlob answers HEAD from the store, else from the upstream, without
// fetching the blob.
func (a *Agent) StatBlob(ctx context.Context, repo registryshim.Repo, dgst digest.Digest) (int64, error) {
	size, err := a.authorizeBlob(ctx, repo, dgst)
	if err != nil {
		return 0, ociError(err)
	}
	if info, err := a.store.Stat(ctx, dgst); err == nil {
		return info.Size, nil
	}
	if size >= 0 {
		return size, nil
	}
	size, err = a.up.BlobSize(ctx, repo.Registry, repo.Name, dgst)
	return size, ociError(err)
}

// Tags passes the tag list through from the upstream.
func (a *Agent) Tags(ctx context.Context, repo registryshim.Repo, n int, last string) ([]string, error) {
	// n < 0: the client gave no limit, which the upstream client spells 0.
	tags, err := a.up.Tags(ctx, repo.Registry, repo.Name, max(n, 0), last)
	if err != nil {
		return nil, ociError(err)
	}
	// Registries ignore last without n and need not sort (CNCF
	// distribution does neither): the spec's order and start are kept here.
	slices.Sort(tags)
	if last != "" {
		i, found := slices.BinarySearch(tags, last)
		if found {
			i++
		}
		tags = tags[i:]
	}
	return tags, nil
}
