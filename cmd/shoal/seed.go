package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/agent/unpack"
	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

type seedFlags struct {
	Tracker   []string      `mapstructure:"tracker"`
	TokenFile string        `mapstructure:"token-file"`
	TrackerCA string        `mapstructure:"tracker-ca"`
	Platform  []string      `mapstructure:"platform"`
	Replicas  int           `mapstructure:"replicas"`
	Wait      bool          `mapstructure:"wait"`
	Timeout   time.Duration `mapstructure:"timeout"`
	Poll      time.Duration `mapstructure:"poll-interval"`
}

func newSeedCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "seed IMAGE...",
		Short: "Have the tracker's seeder fetch images before a rollout (from CI), and with --wait know when the cluster holds them",
		Long: `seed asks the tracker to fetch every blob of the images (configs and layers;
an index's platforms, all or --platform) from the origin into its seeder,
verified and kept there for the tracker's --seed-pin-ttl. With --replicas K
the tracker also places every blob on K agents. With --wait it follows the
job and exits 0 only when every blob is in the seeder (and on K agents);
without, once the images resolved. The token is a seed token (the tracker's
--seed-token-file). Jobs live in the tracker's memory: if it restarts, the
job is lost and seed --wait says so and fails.`,
		Args: cobra.MinimumNArgs(1),
	}
	fs := cmd.Flags()
	fs.StringSlice("tracker", nil, "tracker URL; with replicas, the URLs (or dns+ name) agents are given: each live one seeds the blobs it owns")
	fs.String("token-file", "", "file holding the seed token (its first line)")
	fs.String("tracker-ca", "", "PEM file of the CA certificates the tracker's TLS certificate is checked against")
	fs.StringSlice("platform", nil, "platforms of an index to seed: all, or os/arch[/variant],... (default all)")
	fs.Int("replicas", 0, "also place every blob on this many agents before the job is done")
	fs.Bool("wait", false, "follow the job until every blob is seeded; exit non-zero if it is not")
	fs.Duration("timeout", 30*time.Minute, "give up after this long")
	fs.Duration("poll-interval", 500*time.Millisecond, "how often to ask the tracker about the job")
	_ = fs.MarkHidden("poll-interval")
	fs.String("config", "", "config file (YAML, TOML or JSON); keys are the flag names")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var f seedFlags
		if err := loadConfig(cmd, &f); err != nil {
			return err
		}
		return f.run(cmd.Context(), args, cmd.OutOrStdout(), cmd.ErrOrStderr())
	}
	return cmd
}

func (f seedFlags) client(ctx context.Context) (*seedSet, error) {
	if len(f.Tracker) == 0 {
		return nil, errors.New("seed: --tracker is required")
	}
	if f.TokenFile == "" {
		return nil, errors.New("seed: --token-file is required (a seed token)")
	}
	toks, err := readTokens(f.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	opts, err := caClient(f.TrackerCA)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	return newSeedSet(ctx, tracker.SplitURLs(f.Tracker), toks[0], opts...)
}

func (f seedFlags) run(ctx context.Context, images []string, out, errw io.Writer) error {
	c, err := f.client(ctx)
	if err != nil {
		return err
	}
	req := tracker.SeedRequest{Images: images, Platforms: f.Platform, Replicas: f.Replicas}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	start := time.Now()
	job, err := c.CreateSeedJob(ctx, req)
	if err != nil {
		return seedFailure(strings.Join(f.Tracker, ","), err)
	}
	var show seedProgress = &lineProgress{w: errw, seen: map[digest.Digest]string{}}
	if file, ok := errw.(*os.File); ok && unpack.IsTerminal(file) {
		show = &barProgress{w: errw}
	}
	fmt.Fprintf(errw, "seed job %s: %s\n", job.ID, strings.Join(images, " "))
	for {
		show.update(job)
		switch {
		case job.State == tracker.JobFailed:
			return fmt.Errorf("seed: job %s failed: %s", job.ID, job.Error)
		case job.Complete():
			show.done()
			fmt.Fprintln(out, summary(job, time.Since(start)))
			return nil
		case !f.Wait && job.State != tracker.JobResolving:
			fmt.Fprintf(out, "seed job %s accepted: %d images, %d blobs (follow it with --wait)\n", job.ID, len(job.Images), len(job.Blobs))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("seed: timed out after %s: job %s is %s, %s", f.Timeout, job.ID, job.State, pendingOf(job))
		case <-time.After(f.Poll):
		}
		next, err := c.SeedJob(ctx, job.ID)
		switch {
		case err == nil:
			job = next
		case errors.Is(err, tracker.ErrNotFound):
			return fmt.Errorf("seed: job %s lost: the tracker no longer knows it (it restarted or expired the job; jobs live in its memory): run shoal seed again", job.ID)
		case ctx.Err() != nil:
			return fmt.Errorf("seed: timed out after %s: job %s is %s, %s; last error: %v", f.Timeout, job.ID, job.State, pendingOf(job), err)
		case errors.Is(err, tracker.ErrUnavailable):
			// The tracker is restarting or the network hiccups: ask again.
		default:
			return seedFailure(strings.Join(f.Tracker, ","), err)
		}
	}
}

// seedFailure is the one line for a refused or failed request.
func seedFailure(trackerURL string, err error) error {
	switch {
	case errors.Is(err, tracker.ErrUnauthorized):
		return fmt.Errorf("seed: tracker %s refused the token: not a seed token it knows (%v)", trackerURL, err)
	case errors.Is(err, tracker.ErrForbidden):
		return fmt.Errorf("seed: tracker %s refused the token: %v", trackerURL, err)
	case errors.Is(err, tracker.ErrBusy):
		return fmt.Errorf("seed: tracker %s is busy, try again later: %v", trackerURL, err)
	case errors.Is(err, tracker.ErrCertificate):
		return fmt.Errorf("seed: tracker %s: %v", trackerURL, err)
	case errors.Is(err, tracker.ErrUnavailable):
		return fmt.Errorf("seed: tracker %s unreachable: %v", trackerURL, err)
	}
	return fmt.Errorf("seed: %v", err)
}

func pendingOf(j *tracker.SeedJob) string {
	done, placed := 0, 0
	for _, b := range j.Blobs {
		if b.State == tracker.BlobDone {
			done++
		}
		if b.Holders >= j.Replicas {
			placed++
		}
	}
	s := fmt.Sprintf("%d of %d blobs in the seeder", done, len(j.Blobs))
	if j.Replicas > 0 {
		s += fmt.Sprintf(", %d on %d agents", placed, j.Replicas)
	}
	return s
}

func summary(j *tracker.SeedJob, took time.Duration) string {
	var bytes int64
	for _, b := range j.Blobs {
		bytes += b.Size
	}
	s := fmt.Sprintf("seeded %d images, %d blobs, %s in %s (job %s)", len(j.Images), len(j.Blobs), humanSize(bytes), took.Round(time.Millisecond), j.ID)
	if j.Replicas > 0 {
		s += fmt.Sprintf("; every blob on %d agents", j.Replicas)
	}
	return s
}

type seedProgress interface {
	update(*tracker.SeedJob)
	done()
}

// lineProgress logs a line each time a blob changes state: for CI logs.
type lineProgress struct {
	w    io.Writer
	seen map[digest.Digest]string
}

func (p *lineProgress) update(j *tracker.SeedJob) {
	for _, b := range j.Blobs {
		key := b.State
		if j.Replicas > 0 && b.State == tracker.BlobDone {
			key += fmt.Sprint(min(b.Holders, j.Replicas))
		}
		if p.seen[b.Digest] == key {
			continue
		}
		p.seen[b.Digest] = key
		fmt.Fprintf(p.w, "%s\n", blobLine(j, b))
	}
}

func (p *lineProgress) done() {}

// barProgress redraws a bar per blob: for a terminal.
type barProgress struct {
	w     io.Writer
	drawn int
}

func (p *barProgress) update(j *tracker.SeedJob) {
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA", p.drawn)
	}
	for _, b := range j.Blobs {
		const width = 24
		fill := 0
		if b.Size > 0 {
			fill = min(max(int(int64(width)*b.Bytes/b.Size), 0), width)
		}
		bar := strings.Repeat("#", fill) + strings.Repeat(".", width-fill)
		fmt.Fprintf(p.w, "\x1b[2K[%s] %s\n", bar, blobLine(j, b))
	}
	p.drawn = len(j.Blobs)
}

func (p *barProgress) done() {}

func blobLine(j *tracker.SeedJob, b tracker.SeedBlob) string {
	s := fmt.Sprintf("%s %-8s %s/%s", short(b.Digest), b.State, humanSize(b.Bytes), humanSize(b.Size))
	if j.Replicas > 0 {
		s += fmt.Sprintf(" on %d/%d agents", b.Holders, j.Replicas)
	}
	if b.Error != "" {
		s += ": " + b.Error
	}
	return s
}

func short(d digest.Digest) string {
	if len(d.Encoded()) < 12 {
		return d.String()
	}
	return string(d.Algorithm()) + ":" + d.Encoded()[:12]
}

func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// seedResolver is the tracker's Resolver for seed jobs: the seeder's
// upstream client, limited to the registries configured on the tracker.
type seedResolver struct {
	up    *upstream.Client
	def   bool
	hosts map[string]bool // registry keys the seeder may fetch from
}

func newSeedResolver(up *upstream.Client, cfg upstream.Config) seedResolver {
	r := seedResolver{up: up, def: cfg.Default != "", hosts: map[string]bool{}}
	add := func(host string) {
		if reg, err := name.NewRegistry(strings.ToLower(host)); err == nil {
			r.hosts[reg.RegistryStr()] = true
		}
	}
	for _, reg := range cfg.Registries {
		add(reg.Host)
	}
	if def := cfg.Default; def != "" {
		if _, host, ok := strings.Cut(def, "://"); ok {
			def = strings.TrimSuffix(host, "/")
		}
		add(def)
	}
	return r
}

func (r seedResolver) Knows(registry string) bool {
	if registry == "" {
		return r.def
	}
	reg, err := name.NewRegistry(strings.ToLower(registry))
	return err == nil && r.hosts[reg.RegistryStr()]
}

func (r seedResolver) Manifest(ctx context.Context, registry, repo, ref string) (string, digest.Digest, []byte, error) {
	desc, body, err := r.up.Manifest(ctx, registry, repo, ref)
	switch {
	case err == nil:
		return desc.MediaType, desc.Digest, body, nil
	case errors.Is(err, upstream.ErrManifestNotFound), errors.Is(err, upstream.ErrRepositoryNotFound):
		return "", "", nil, fmt.Errorf("%w: the origin has no such image: %w", tracker.ErrNotFound, err)
	case errors.Is(err, upstream.ErrDenied), errors.Is(err, upstream.ErrUnauthorized):
		return "", "", nil, fmt.Errorf("%w: the origin refuses the tracker: %w", tracker.ErrForbidden, err)
	case errors.Is(err, upstream.ErrInvalidName):
		return "", "", nil, fmt.Errorf("%w: %w", tracker.ErrInvalid, err)
	}
	return "", "", nil, fmt.Errorf("%w: the origin could not be reached: %w", tracker.ErrUnavailable, err)
}

// seedTrackerFlags are the tracker's settings for seed jobs and webhooks.
type seedTrackerFlags struct {
	SeedTokenFile   string        `mapstructure:"seed-token-file"`
	SeedPinTTL      time.Duration `mapstructure:"seed-pin-ttl"`
	WebhookRepos    []string      `mapstructure:"webhook-repos"`
	WebhookTags     []string      `mapstructure:"webhook-tags"`
	WebhookReplicas int           `mapstructure:"webhook-replicas"`
	Replicas        []string      `mapstructure:"replicas"`
	ReplicaSelf     string        `mapstructure:"replica-self"`
	ReplicasCA      string        `mapstructure:"replicas-ca"`
}

func addSeedTrackerFlags(fs *pflag.FlagSet) {
	def := server.DefaultConfig()
	fs.String("seed-token-file", "", "file of seed tokens, one per line: they create and read seed jobs and post webhooks, and nothing else")
	fs.Duration("seed-pin-ttl", def.SeedPinTTL, "how long the seeder keeps a seed job's blobs from eviction")
	fs.StringSlice("webhook-repos", nil, "repositories whose pushes webhooks seed (path.Match patterns, e.g. team/*; default all)")
	fs.StringSlice("webhook-tags", nil, "tags whose pushes webhooks seed (path.Match patterns; default all)")
	fs.Int("webhook-replicas", 0, "agents every blob of a webhook's seed job is placed on")
	fs.StringSlice("replicas", nil, "the tracker replicas this one is one of, as agents are given them (URLs, or a dns+ name): a webhook is passed on to every live one, each seeding the blobs it owns")
	fs.String("replica-self", "", "this tracker's name among --replicas: its URL; for a dns+ name ADDRESS:PORT, or its IP address")
	fs.String("replicas-ca", "", "PEM file of the CA certificates the replicas' TLS certificates are checked against")
}

// replicas is the server option that passes webhooks on to the tracker's
// replicas (none without --replicas); token is a seed token.
func (f seedTrackerFlags) replicas(token string) ([]server.Option, error) {
	if len(f.Replicas) == 0 {
		return nil, nil
	}
	opts, err := caClient(f.ReplicasCA)
	if err != nil {
		return nil, err
	}
	rs, err := newWebhookReplicas(tracker.SplitURLs(f.Replicas), f.ReplicaSelf, token, opts...)
	if err != nil {
		return nil, err
	}
	return []server.Option{server.WithReplicas(rs)}, nil
}

func (f seedTrackerFlags) apply(c *server.Config) error {
	if f.SeedTokenFile != "" {
		toks, err := readTokens(f.SeedTokenFile)
		if err != nil {
			return err
		}
		c.SeedTokens = toks
	}
	c.SeedPinTTL = f.SeedPinTTL
	c.WebhookRepos, c.WebhookTags, c.WebhookReplicas = f.WebhookRepos, f.WebhookTags, f.WebhookReplicas
	return nil
}
