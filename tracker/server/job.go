package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/tracker"
)

// Resolver reads manifests from the origin for seed jobs: the seeder's
// upstream client, wired in cmd.
type Resolver interface {
	// Manifest fetches a manifest by tag or digest and returns its media
	// type, digest and bytes. Errors wrap tracker.ErrNotFound (no such
	// manifest or repository), tracker.ErrForbidden (a registry the
	// tracker may not reach, or one that refuses it) or
	// tracker.ErrUnavailable.
	Manifest(ctx context.Context, registry, repo, ref string) (string, digest.Digest, []byte, error)
	// Knows reports whether the seeder may fetch from registry ("" is the
	// default upstream).
	Knows(registry string) bool
}

// Pinner keeps blobs from eviction until a time: the seeder's store.
type Pinner interface {
	Pin(d digest.Digest, until time.Time)
}

// jobs runs seed jobs: a job resolves its images to blobs, and each blob is
// fetched by the seeder once, whatever the number of jobs that want it at
// the same time (a task per digest). Jobs live in memory only: a tracker
// that restarts forgets them, and `shoal seed --wait` reports its job lost.
type jobs struct {
	s       *Server
	tokens  [][sha256.Size]byte // hashes of the seed tokens
	metrics *jobMetrics

	res Resolver // nil until EnableSeedJobs
	pin Pinner
	sem chan struct{} // one slot per blob fetch under way

	mu     sync.Mutex
	byID   map[string]*job
	byKey  map[string]*job // unsettled or pinned jobs, by what they ask
	order  []*job          // creation order, for pruning
	tasks  map[digest.Digest]*task
	active int // jobs not settled
	plan   preheatPlan
}

type job struct {
	id, key  string
	req      tracker.SeedRequest
	refs     []tracker.ImageRef
	given    []blobSpec // blobs known without resolving (webhook references)
	patient  bool       // retry a missing manifest: a webhook may beat its readability
	created  time.Time
	finished time.Time // settled at
	state    string    // JobResolving, JobFetching, jobFetched, JobDone, JobFailed
	err      string
	images   []tracker.SeedImage
	tasks    []*task
	pinUntil time.Time
}

// jobFetched: every blob is in the seeder; with replicas the job waits for
// agents (reported JobPreheat, or JobDone once they hold them).
const jobFetched = "fetched"

// blobSpec is a blob to seed and where the origin holds it.
type blobSpec struct {
	src  tracker.Source
	size int64
}

// task is one blob fetch into the seeder, shared by every job that wants
// the digest while it runs. Its fields change under jobs.mu.
type task struct {
	spec  blobSpec
	state string // tracker.Blob*
	err   string
	done  chan struct{} // closed when settled
}

type jobMetrics struct {
	jobs     *prometheus.CounterVec
	webhooks *prometheus.CounterVec
}

func newJobs(s *Server) (*jobs, error) {
	j := &jobs{
		s:     s,
		sem:   make(chan struct{}, s.cfg.MaxSeedFetches),
		byID:  make(map[string]*job),
		byKey: make(map[string]*job),
		tasks: make(map[digest.Digest]*task),
		metrics: &jobMetrics{
			jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "shoal_tracker_seed_jobs_total",
				Help: "Seed jobs, by event: created, deduplicated (the same request as a live job), busy (refused, queue full), done, failed.",
			}, []string{"event"}),
			webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "shoal_tracker_webhook_events_total",
				Help: "Registry webhook events, by source (distribution, harbor) and result: seeded, duplicate, ignored (not a push of a manifest, filtered, unknown registry), malformed (400), unauthorized.",
			}, []string{"source", "result"}),
		},
	}
	for _, tok := range s.cfg.SeedTokens {
		j.tokens = append(j.tokens, sha256.Sum256([]byte(tok)))
	}
	for _, c := range []prometheus.Collector{j.metrics.jobs, j.metrics.webhooks} {
		if err := s.reg.Register(c); err != nil {
			return nil, fmt.Errorf("tracker: register metrics: %w", err)
		}
	}
	return j, nil
}

// EnableSeedJobs lets the server run seed jobs, resolving images with res
// and pinning seeded blobs with pin (both the seeder's). Call it after
// Start; until then POST /v1/seed answers 503.
func (s *Server) EnableSeedJobs(res Resolver, pin Pinner) error {
	if res == nil || pin == nil {
		return errors.New("tracker: seed jobs need a resolver and a pinner")
	}
	s.seedJobs.mu.Lock()
	defer s.seedJobs.mu.Unlock()
	s.seedJobs.res, s.seedJobs.pin = res, pin
	return nil
}

// knows reports whether sum is the hash of a seed token (constant time).
func (j *jobs) knows(sum [sha256.Size]byte) bool {
	match := 0
	for _, t := range j.tokens {
		match |= subtleEq(sum, t)
	}
	return match == 1
}

// CreateSeedJob starts a job for req, or returns the live job that asks the
// same (same images, platforms and replicas): a second pipeline or a
// redelivered webhook changes nothing.
func (s *Server) CreateSeedJob(req tracker.SeedRequest) (tracker.SeedJob, error) {
	if err := req.Validate(); err != nil {
		return tracker.SeedJob{}, err
	}
	refs := make([]tracker.ImageRef, len(req.Images))
	for i, img := range req.Images {
		refs[i], _ = tracker.ParseImage(img) // validated above
	}
	j, _, err := s.seedJobs.create(&job{req: req, refs: refs})
	if err != nil {
		return tracker.SeedJob{}, err
	}
	return s.seedJobs.snapshot(j), nil
}

// create registers and starts nj, unless a live job has its key (then that
// one is returned, and dup is true).
func (j *jobs) create(nj *job) (_ *job, dup bool, err error) {
	nj.key = jobKey(nj)
	now := j.s.clock.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case j.s.shuttingDown():
		return nil, false, fmt.Errorf("%w: tracker shutting down", tracker.ErrUnavailable)
	case j.res == nil:
		return nil, false, fmt.Errorf("%w: this tracker runs no seed jobs", tracker.ErrUnavailable)
	}
	if old := j.byKey[nj.key]; old != nil && old.state != tracker.JobFailed && (old.finished.IsZero() || now.Before(old.pinUntil)) {
		j.metrics.jobs.WithLabelValues("deduplicated").Inc()
		return old, true, nil
	}
	if j.active >= j.s.cfg.MaxSeedJobs {
		j.metrics.jobs.WithLabelValues("busy").Inc()
		return nil, false, fmt.Errorf("%w: %d seed jobs under way, at most %d; try again later", tracker.ErrBusy, j.active, j.s.cfg.MaxSeedJobs)
	}
	nj.id = newJobID()
	nj.created, nj.state = now, tracker.JobResolving
	nj.pinUntil = now.Add(j.s.cfg.SeedPinTTL)
	j.byID[nj.id], j.byKey[nj.key] = nj, nj
	j.order = append(j.order, nj)
	j.active++
	j.prune()
	j.metrics.jobs.WithLabelValues("created").Inc()
	// Counted under the server's lock, as seedings are, so that Close,
	// which marks the server closed under it before it waits, waits for it.
	j.s.mu.Lock()
	if j.s.closed {
		j.s.mu.Unlock()
		j.settle(nj, fmt.Errorf("%w: tracker shutting down", tracker.ErrUnavailable))
		return nj, false, nil
	}
	j.s.seeds.Add(1)
	j.s.mu.Unlock()
	go func() {
		defer j.s.seeds.Done()
		j.run(nj)
	}()
	return nj, false, nil
}

// prune forgets the oldest settled jobs beyond MaxSeedJobsKept. Caller
// holds mu.
func (j *jobs) prune() {
	for len(j.order) > j.s.cfg.MaxSeedJobsKept {
		i := slices.IndexFunc(j.order, func(o *job) bool { return !o.finished.IsZero() })
		if i < 0 {
			return
		}
		old := j.order[i]
		j.order = slices.Delete(j.order, i, i+1)
		delete(j.byID, old.id)
		if j.byKey[old.key] == old {
			delete(j.byKey, old.key)
		}
	}
}

// run resolves the job's images, then waits for every blob's task.
func (j *jobs) run(nj *job) {
	ctx, cancel := context.WithTimeout(j.s.ctx, j.s.cfg.SeedTimeout)
	defer cancel()
	var (
		imgs  []tracker.SeedImage
		specs []blobSpec
		err   error
	)
	if len(nj.given) > 0 {
		specs = nj.given
		imgs = []tracker.SeedImage{{Ref: nj.req.Images[0], Digest: nj.refs[0].Digest}}
	} else {
		imgs, specs, err = j.resolve(ctx, nj)
	}
	// With tracker replicas, each seeds only the blobs it owns.
	specs = slices.DeleteFunc(specs, func(sp blobSpec) bool { return !nj.req.Shard.Owns(sp.src.Digest) })
	j.mu.Lock()
	nj.images = imgs
	if err != nil {
		j.settle(nj, err)
		j.mu.Unlock()
		return
	}
	nj.state = tracker.JobFetching
	for _, sp := range specs {
		nj.tasks = append(nj.tasks, j.task(sp, nj.pinUntil))
	}
	j.mu.Unlock()

	for _, t := range nj.tasks {
		select {
		case <-t.done:
		case <-ctx.Done():
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, t := range nj.tasks {
		switch t.state {
		case tracker.BlobFailed:
			j.settle(nj, fmt.Errorf("blob %s: %s", t.spec.src.Digest, t.err))
			return
		case tracker.BlobDone:
		default:
			j.settle(nj, fmt.Errorf("%w: job stopped before blob %s was seeded", tracker.ErrUnavailable, t.spec.src.Digest))
			return
		}
	}
	// Pinned from now: the rollout comes after the job.
	nj.pinUntil = j.s.clock.Now().Add(j.s.cfg.SeedPinTTL)
	for _, t := range nj.tasks {
		j.pin.Pin(t.spec.src.Digest, nj.pinUntil)
	}
	if nj.req.Replicas == 0 {
		j.settle(nj, nil)
		return
	}
	nj.state = jobFetched // done once agents hold the blobs: see refresh
}

// settle ends a job as done (err nil) or failed. Caller holds mu.
func (j *jobs) settle(nj *job, err error) {
	if !nj.finished.IsZero() {
		return
	}
	nj.finished = j.s.clock.Now()
	j.active--
	if err != nil {
		nj.state, nj.err = tracker.JobFailed, truncateMsg(err.Error())
		j.metrics.jobs.WithLabelValues("failed").Inc()
		j.s.log.Warn("seed job failed", "job", nj.id, "error", err)
		return
	}
	nj.state = tracker.JobDone
	j.metrics.jobs.WithLabelValues("done").Inc()
	j.s.log.Info("seed job done", "job", nj.id, "blobs", len(nj.tasks), "duration", nj.finished.Sub(nj.created))
}

// task returns the running task for sp's digest or starts one, pinning the
// blob until until. Caller holds mu.
func (j *jobs) task(sp blobSpec, until time.Time) *task {
	j.pin.Pin(sp.src.Digest, until)
	if t := j.tasks[sp.src.Digest]; t != nil {
		return t
	}
	t := &task{spec: sp, state: tracker.BlobPending, done: make(chan struct{})}
	j.tasks[sp.src.Digest] = t
	j.s.seeds.Add(1)
	go func() {
		defer j.s.seeds.Done()
		err := j.fetch(t)
		j.mu.Lock()
		defer j.mu.Unlock()
		t.state = tracker.BlobDone
		if err != nil {
			t.state, t.err = tracker.BlobFailed, truncateMsg(err.Error())
		}
		delete(j.tasks, sp.src.Digest) // a later job checks the seeder again
		close(t.done)
	}()
	return t
}

// fetch has the seeder fetch and verify one blob, within the fetch limit.
func (j *jobs) fetch(t *task) error {
	select {
	case j.sem <- struct{}{}:
		defer func() { <-j.sem }()
	case <-j.s.ctx.Done():
		return fmt.Errorf("%w: tracker shutting down", tracker.ErrUnavailable)
	}
	j.mu.Lock()
	t.state = tracker.BlobFetching
	j.mu.Unlock()
	ctx, cancel := context.WithTimeout(j.s.ctx, j.s.cfg.SeedTimeout)
	defer cancel()
	size, err := j.s.seedVerified(ctx, t.spec.src)
	if err != nil {
		return err
	}
	if t.spec.size > 0 && size != t.spec.size {
		return fmt.Errorf("%w: the origin's blob has %d bytes, the manifest says %d", tracker.ErrInvalid, size, t.spec.size)
	}
	return nil
}

// seedVerified runs (or joins) the seeding of src through the tracker's
// metainfo entries and returns once the seeder holds the blob verified, with
// its size. A seeding slot that is not free is waited for.
func (s *Server) seedVerified(ctx context.Context, src tracker.Source) (int64, error) {
	gen := 0
	for {
		v, err := s.watch(src, gen)
		if err != nil {
			if v.gen == 0 && !s.shuttingDown() {
				// No slot free (MaxSeeding): not a verdict on the blob.
				select {
				case <-time.After(200 * time.Millisecond):
					continue
				case <-ctx.Done():
					return 0, fmt.Errorf("%w: %w", tracker.ErrUnavailable, ctx.Err())
				}
			}
			return 0, err
		}
		gen = v.gen
		if size, ok := s.verified(src.Digest); ok {
			return size, nil
		}
		select {
		case <-v.changed:
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: %w", tracker.ErrUnavailable, ctx.Err())
		case <-s.closing:
			return 0, fmt.Errorf("%w: tracker shutting down", tracker.ErrUnavailable)
		}
	}
}

// verified reports whether the last seeding of d ended without error with
// complete metainfo: the seeder holds the blob and it matched its digest.
func (s *Server) verified(d digest.Digest) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.infos[d]
	if e == nil || e.seeding || e.err != nil || e.info == nil || !e.info.Complete() {
		return 0, false
	}
	return e.info.Size, true
}

func (s *Server) shuttingDown() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// jobKey names what a job asks for, so that asking twice is one job.
func jobKey(nj *job) string {
	h := sha256.New()
	for _, img := range nj.req.Images {
		fmt.Fprintf(h, "i %s\n", img)
	}
	ps := slices.Clone(nj.req.Platforms)
	slices.Sort(ps)
	fmt.Fprintf(h, "p %s\nr %d\n", strings.Join(ps, ","), nj.req.Replicas)
	if sh := nj.req.Shard; sh != nil {
		fmt.Fprintf(h, "s %s\n%s\n", sh.Self, strings.Join(sh.Of, "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func subtleEq(a, b [sha256.Size]byte) int { return subtle.ConstantTimeCompare(a[:], b[:]) }

func newJobID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func truncateMsg(s string) string {
	if len(s) > tracker.MaxMessageLen/2 {
		return s[:tracker.MaxMessageLen/2]
	}
	return s
}

// validateSeed checks the seed job settings.
func (c Config) validateSeed() []error {
	var errs []error
	for _, tok := range c.SeedTokens {
		if err := tracker.ValidateToken(tok); err != nil {
			errs = append(errs, fmt.Errorf("seed token: %w", err))
			break
		}
		if slices.Contains(c.Tokens, tok) {
			errs = append(errs, errors.New("a seed token is also a cluster token"))
			break
		}
	}
	if c.SeedPinTTL <= 0 {
		errs = append(errs, fmt.Errorf("seed pin TTL %s must be positive", c.SeedPinTTL))
	}
	if c.MaxSeedFetches < 1 || c.MaxSeedJobs < 1 || c.MaxSeedJobsKept < 1 {
		errs = append(errs, fmt.Errorf("max seed fetches %d, jobs %d and jobs kept %d must be at least 1", c.MaxSeedFetches, c.MaxSeedJobs, c.MaxSeedJobsKept))
	}
	for _, p := range append(slices.Clone(c.WebhookRepos), c.WebhookTags...) {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("webhook pattern %q: %w", p, err))
		}
	}
	if c.WebhookReplicas < 0 || c.WebhookReplicas > tracker.MaxReplicas {
		errs = append(errs, fmt.Errorf("webhook replicas %d, want 0 to %d", c.WebhookReplicas, tracker.MaxReplicas))
	}
	return errs
}
