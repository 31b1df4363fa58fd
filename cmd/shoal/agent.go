package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/agent/upstream"
)

type agentFlags struct {
	logFlags        `mapstructure:",squash"`
	Listen          string        `mapstructure:"listen"`
	Upstream        string        `mapstructure:"upstream"`
	DataDir         string        `mapstructure:"data-dir"`
	Registry        []string      `mapstructure:"registry"`
	Insecure        []string      `mapstructure:"insecure-registry"`
	DockerConfig    string        `mapstructure:"docker-config"`
	UpstreamTimeout time.Duration `mapstructure:"upstream-timeout"`
	TagTTL          time.Duration `mapstructure:"tag-ttl"`
	StoreCapacity   int64         `mapstructure:"store-capacity"`
	StoreHigh       float64       `mapstructure:"store-high-watermark"`
	StoreLow        float64       `mapstructure:"store-low-watermark"`
	ShutdownTimeout time.Duration `mapstructure:"shutdown-timeout"`
}

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: a local OCI registry that pulls through the swarm",
		Args:  cobra.NoArgs,
	}
	def := agent.DefaultConfig()
	fs := cmd.Flags()
	addLogFlags(fs)
	fs.String("listen", "127.0.0.1:5050", "address of the registry endpoint")
	fs.String("upstream", "", "default upstream registry URL, for requests without ?ns= (e.g. http://127.0.0.1:15000)")
	fs.String("data-dir", "/var/lib/shoal", "directory for the content store and state")
	fs.StringSlice("registry", nil, "upstream registry as HOST or HOST=ENDPOINT-URL (repeatable)")
	fs.StringSlice("insecure-registry", nil, "registry HOST allowed over plain HTTP (repeatable)")
	fs.String("docker-config", "", "docker config.json with registry credentials (default: the docker keychain)")
	fs.Duration("upstream-timeout", def.Upstream.Timeout, "bound on connecting to, and silence from, an upstream registry")
	fs.Duration("tag-ttl", def.TagTTL, "how long a tag's resolution is reused before asking the upstream again")
	fs.Int64("store-capacity", 0, "content store capacity in bytes (0: unlimited)")
	fs.Float64("store-high-watermark", def.Store.HighWatermark, "start evicting above this fraction of the capacity")
	fs.Float64("store-low-watermark", def.Store.LowWatermark, "evict down to this fraction of the capacity")
	fs.Duration("shutdown-timeout", 10*time.Second, "how long in-flight responses may finish on shutdown")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var f agentFlags
		if err := loadConfig(cmd, &f); err != nil {
			return err
		}
		log, err := stderrLogger(f.logFlags)
		if err != nil {
			return err
		}
		cfg, err := f.config()
		if err != nil {
			return err
		}
		return runAgent(cmd.Context(), cfg, f, log)
	}
	return cmd
}

func (f agentFlags) config() (agent.Config, error) {
	cfg := agent.DefaultConfig()
	cfg.DataDir = f.DataDir
	cfg.TagTTL = f.TagTTL
	cfg.Store.Capacity = f.StoreCapacity
	cfg.Store.HighWatermark = f.StoreHigh
	cfg.Store.LowWatermark = f.StoreLow
	cfg.Upstream.Default = f.Upstream
	cfg.Upstream.DockerConfig = f.DockerConfig
	cfg.Upstream.Timeout = f.UpstreamTimeout
	insecure := make(map[string]bool)
	for _, h := range f.Insecure {
		insecure[h] = true
	}
	for _, r := range f.Registry {
		host, endpoint, _ := strings.Cut(r, "=")
		if host == "" {
			return cfg, fmt.Errorf("registry %q: want HOST or HOST=URL", r)
		}
		cfg.Upstream.Registries = append(cfg.Upstream.Registries, upstream.Registry{Host: host, Endpoint: endpoint, Insecure: insecure[host]})
		delete(insecure, host)
	}
	for h := range insecure {
		cfg.Upstream.Registries = append(cfg.Upstream.Registries, upstream.Registry{Host: h, Insecure: true})
	}
	return cfg, cfg.Validate()
}

func runAgent(ctx context.Context, cfg agent.Config, f agentFlags, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a, err := agent.New(cfg, agent.WithLogger(log), agent.WithRegisterer(reg))
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", a.Handler())
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	log.Info("agent listening", "addr", ln.Addr().String(), "upstream", cfg.Upstream.Default, "data_dir", cfg.DataDir)
	return serve(ctx, ln, mux, f.ShutdownTimeout, a.Drain, log)
}

// serve runs an HTTP server until ctx ends, then lets in-flight requests
// finish for up to grace before closing their connections.
func serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration, drain func(), log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	drain()
	log.Info("shutting down", "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("in-flight requests aborted", "err", err)
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
