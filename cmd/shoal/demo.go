package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/time/rate"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

type demoFlags struct {
	logFlags  `mapstructure:",squash"`
	Agents    int   `mapstructure:"agents"`
	Layers    int   `mapstructure:"layers"`
	LayerSize int64 `mapstructure:"layer-size"`
	Keep      bool  `mapstructure:"keep"`
	Rate      int64 `mapstructure:"rate"`
}

func newDemoCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a local demo swarm: an origin, a tracker and agents all pulling one generated image at once",
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	addLogFlags(fs)
	fs.Lookup("log-level").DefValue = "warn"
	_ = fs.Set("log-level", "warn")
	fs.Int("agents", 8, "agents pulling at once")
	fs.Int("layers", 5, "layers of the generated image")
	fs.Int64("layer-size", 16<<20, "bytes per layer")
	fs.Bool("keep", false, "keep the data directory")
	fs.Int64("rate", 0, "bandwidth cap in bytes/s for every node's peer traffic and for the origin (0: unlimited)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var f demoFlags
		if err := loadConfig(cmd, &f); err != nil {
			return err
		}
		if f.Agents < 1 || f.Agents > 200 || f.Layers < 1 || f.LayerSize < 1 {
			return fmt.Errorf("want 1–200 agents, at least one layer of at least one byte")
		}
		log, err := stderrLogger(f.logFlags)
		if err != nil {
			return err
		}
		if path := os.Getenv("SHOAL_DEMO_CPUPROFILE"); path != "" {
			pf, err := os.Create(path)
			if err != nil {
				return err
			}
			defer pf.Close()
			if err := pprof.StartCPUProfile(pf); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
		}
		return runDemo(cmd.Context(), cmd.OutOrStdout(), f, log)
	}
	return cmd
}

// countingOrigin is go-containerregistry's in-process registry, counting
// the blob bytes it sends.
type countingOrigin struct {
	reg  http.Handler
	sent atomic.Int64
	lim  *rate.Limiter // nil: unlimited
}

func (o *countingOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
		w = &countingWriter{ResponseWriter: w, o: o, ctx: r.Context()}
	}
	o.reg.ServeHTTP(w, r)
}

type countingWriter struct {
	http.ResponseWriter
	o   *countingOrigin
	ctx context.Context
}

func (c *countingWriter) Write(p []byte) (int, error) {
	var written int
	for len(p) > 0 {
		chunk := p[:min(len(p), 32<<10)]
		if c.o.lim != nil {
			if err := c.o.lim.WaitN(c.ctx, len(chunk)); err != nil {
				return written, err
			}
		}
		n, err := c.ResponseWriter.Write(chunk)
		written += n
		c.o.sent.Add(int64(n))
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func listenLoopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func runDemo(ctx context.Context, out io.Writer, f demoFlags, log *slog.Logger) error {
	dir, err := os.MkdirTemp("", "shoal-demo-")
	if err != nil {
		return err
	}
	if !f.Keep {
		defer os.RemoveAll(dir)
	}
	var servers []*http.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	serveOn := func(h http.Handler) (string, error) {
		ln, err := listenLoopback()
		if err != nil {
			return "", err
		}
		s := &http.Server{Handler: h, ErrorLog: stdlog.New(io.Discard, "", 0)}
		servers = append(servers, s)
		go s.Serve(ln)
		return "http://" + ln.Addr().String(), nil
	}

	// The origin registry, with a generated image.
	origin := &countingOrigin{reg: registry.New(registry.Logger(stdlog.New(io.Discard, "", 0)))}
	if f.Rate > 0 {
		origin.lim = rate.NewLimiter(rate.Limit(f.Rate), 64<<10)
	}
	originURL, err := serveOn(origin)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "generating an image of %d layers × %s and pushing it to the origin at %s\n", f.Layers, mib(f.LayerSize), originURL)
	img, err := random.Image(f.LayerSize, int64(f.Layers))
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(strings.TrimPrefix(originURL, "http://")+"/demo/app:v1", name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push to origin: %w", err)
	}
	size, err := imageSize(img)
	if err != nil {
		return err
	}
	origin.sent.Store(0)

	// The tracker and its seeder.
	tln, err := listenLoopback()
	if err != nil {
		return err
	}
	tcfg := server.DefaultConfig()
	tcfg.Tokens = []string{"demo-token"}
	tcfg.AnnounceInterval = time.Second
	tcfg.PeerTTL = 3 * time.Second
	seed := demoConfig(defaultSeederConfig(), filepath.Join(dir, "seeder"), originURL, f.Rate)
	tn, err := newTrackerNode(tcfg, seed, log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer tn.Close()
	ts := &http.Server{Handler: tn.server.Handler()}
	servers = append(servers, ts)
	go ts.Serve(tln)
	trackerURL := "http://" + tln.Addr().String()

	// The agents.
	agents := make([]*agent.Agent, f.Agents)
	addrs := make([]string, f.Agents)
	for i := range agents {
		cfg := demoConfig(defaultNodeConfig(), filepath.Join(dir, fmt.Sprintf("agent-%02d", i)), originURL, f.Rate)
		if err := cfg.loadIdentity(); err != nil {
			return err
		}
		tc, err := tracker.NewClient(trackerURL, tcfg.Tokens[0], tracker.WithKey(cfg.Identity))
		if err != nil {
			return err
		}
		n, err := newNode(cfg, tc, false, log.With("agent", i), prometheus.NewRegistry())
		if err != nil {
			return err
		}
		defer n.Close()
		agents[i] = n.agent
		u, err := serveOn(n.agent.Handler())
		if err != nil {
			return err
		}
		addrs[i] = strings.TrimPrefix(u, "http://")
	}
	fmt.Fprintf(out, "tracker at %s; %d agents; all pulling demo/app:v1 (%s) at once through their local registry endpoints\n\n", trackerURL, f.Agents, mib(size))

	type result struct {
		took time.Duration
		err  error
	}
	results := make([]result, f.Agents)
	start := time.Now()
	if os.Getenv("SHOAL_DEMO_TRACE") != "" {
		go func() {
			for range time.Tick(time.Second) {
				var p, sd int64
				for _, a := range agents {
					st := a.Stats()
					p += st.Peer
					sd += st.Seeder
				}
				fmt.Fprintf(os.Stderr, "t=%4.1fs origin %s  seeder→agents %s  agent→agent %s\n", time.Since(start).Seconds(), mib(origin.sent.Load()), mib(sd), mib(p))
			}
		}()
	}
	var wg sync.WaitGroup
	for i := range agents {
		wg.Go(func() {
			t0 := time.Now()
			err := pullImage(ctx, addrs[i]+"/demo/app:v1")
			results[i] = result{time.Since(t0), err}
		})
	}
	wg.Wait()
	wall := time.Since(start)

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "agent\ttime\tfrom peers\tfrom seeder\tfrom origin\tresult\t")
	var failed int
	var peers int64
	for i, a := range agents {
		st := a.Stats()
		peers += st.Peer
		res := "ok, digests verified"
		if results[i].err != nil {
			res = results[i].err.Error()
			failed++
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t\n", i, results[i].took.Round(time.Millisecond), mib(st.Peer), mib(st.Seeder), mib(st.Origin), res)
	}
	tw.Flush()
	if f.Rate > 0 {
		limit := time.Duration(float64(size) / float64(f.Rate) * float64(time.Second))
		var slowest time.Duration
		for _, r := range results {
			slowest = max(slowest, r.took)
		}
		fmt.Fprintf(out, "\nphysical limit (image size ÷ per-node bandwidth): %s; slowest agent %s (%.2f×)\n",
			limit.Round(time.Millisecond), slowest.Round(time.Millisecond), float64(slowest)/float64(limit))
	}
	sent := origin.sent.Load()
	fmt.Fprintf(out, "\nall %d agents done in %s; the origin sent %s for a %s image (%.2f copies); %s of %s moved between agents\n",
		f.Agents, wall.Round(time.Millisecond), mib(sent), mib(size), float64(sent)/float64(size), mib(peers), mib(size*int64(f.Agents)))
	if failed > 0 {
		return fmt.Errorf("%d of %d pulls failed", failed, f.Agents)
	}
	return nil
}

func demoConfig(cfg nodeConfig, dir, originURL string, rate int64) nodeConfig {
	cfg.P2P.UploadRate, cfg.P2P.DownloadRate = rate, rate
	cfg.DataDir = dir
	cfg.Upstream.Default = originURL
	cfg.Swarm.PeersRefresh = 500 * time.Millisecond
	return cfg
}

// pullImage pulls ref like a runtime does: manifest, config, then the
// layers concurrently, each checked against its digest.
func pullImage(ctx context.Context, ref string) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	errs := make([]error, len(layers))
	var wg sync.WaitGroup
	for i, l := range layers {
		wg.Go(func() { errs[i] = verifyLayer(l) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func verifyLayer(l v1.Layer) error {
	want, err := l.Digest()
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	d := digest.SHA256.Digester()
	if _, err := io.Copy(d.Hash(), rc); err != nil {
		return fmt.Errorf("layer %s: %w", want, err)
	}
	if d.Digest().String() != want.String() {
		return fmt.Errorf("layer %s: got %s", want, d.Digest())
	}
	return nil
}

func imageSize(img v1.Image) (int64, error) {
	layers, err := img.Layers()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawConfigFile()
	total := int64(len(raw))
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, err
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
