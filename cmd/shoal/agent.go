package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/tracker"
)

// nodeFlags are the settings shared by the agent and the tracker's seeder:
// where blobs come from, where they are kept, how peers are reached.
type nodeFlags struct {
	logFlags        `mapstructure:",squash"`
	Listen          string        `mapstructure:"listen"`
	Upstream        string        `mapstructure:"upstream"`
	DataDir         string        `mapstructure:"data-dir"`
	Registry        []string      `mapstructure:"registry"`
	Insecure        []string      `mapstructure:"insecure-registry"`
	DockerConfig    string        `mapstructure:"docker-config"`
	UpstreamTimeout time.Duration `mapstructure:"upstream-timeout"`
	StoreCapacity   int64         `mapstructure:"store-capacity"`
	StoreHigh       float64       `mapstructure:"store-high-watermark"`
	StoreLow        float64       `mapstructure:"store-low-watermark"`
	ShutdownTimeout time.Duration `mapstructure:"shutdown-timeout"`
	P2PListen       []string      `mapstructure:"p2p-listen"`
	P2PKeyFile      string        `mapstructure:"p2p-key-file"`
	P2PSecurity     string        `mapstructure:"p2p-security"`
	P2PPSKFile      string        `mapstructure:"p2p-psk-file"`
	MaxUploads      int           `mapstructure:"max-uploads"`
	UploadQueue     time.Duration `mapstructure:"upload-queue"`
	UploadRate      int64         `mapstructure:"upload-rate"`
	DownloadRate    int64         `mapstructure:"download-rate"`
	StallTimeout    time.Duration `mapstructure:"stall-timeout"`
	PieceTimeout    time.Duration `mapstructure:"piece-timeout"`
	MaxInFlight     int           `mapstructure:"max-in-flight"`
	PerPeer         int           `mapstructure:"per-peer-in-flight"`
	NodeInFlight    int           `mapstructure:"node-in-flight"`
	PeersRefresh    time.Duration `mapstructure:"peers-refresh"`
}

func addNodeFlags(fs *pflag.FlagSet, listen string, def nodeConfig) {
	addLogFlags(fs)
	fs.String("listen", listen, "address to serve HTTP on")
	fs.String("upstream", "", "default upstream registry URL, for requests without ?ns= (e.g. http://127.0.0.1:15000)")
	fs.String("data-dir", "/var/lib/shoal", "directory for the content store and state")
	fs.StringSlice("registry", nil, "upstream registry as HOST or HOST=ENDPOINT-URL (repeatable)")
	fs.StringSlice("insecure-registry", nil, "registry HOST allowed over plain HTTP (repeatable)")
	fs.String("docker-config", "", "docker config.json with registry credentials (default: the docker keychain)")
	fs.Duration("upstream-timeout", def.Upstream.Timeout, "bound on connecting to, and silence from, an upstream registry")
	fs.Int64("store-capacity", 0, "content store capacity in bytes (0: unlimited)")
	fs.Float64("store-high-watermark", def.Store.HighWatermark, "start evicting above this fraction of the capacity")
	fs.Float64("store-low-watermark", def.Store.LowWatermark, "evict down to this fraction of the capacity")
	fs.Duration("shutdown-timeout", 10*time.Second, "how long in-flight responses may finish on shutdown")
	fs.StringSlice("p2p-listen", []string{"/ip4/0.0.0.0/tcp/4001"}, "libp2p listen multiaddrs for the piece protocol")
	fs.String("p2p-key-file", "", "peer identity key file (default: DATA-DIR/identity.key)")
	fs.String("p2p-security", def.P2P.Security, "peer channel security: tls or noise (the same on every node)")
	fs.String("p2p-psk-file", "", "file holding the cluster's 32-byte private network key (hex or raw); empty: no private network")
	fs.Int("max-uploads", def.P2P.MaxUploads, "piece uploads served at once; more wait up to --upload-queue, then are refused as busy")
	fs.Duration("upload-queue", def.P2P.UploadQueue, "how long a piece request may wait for an upload slot (0: refuse at once, so the client asks another peer)")
	fs.Int64("upload-rate", 0, "piece upload cap in bytes/s (0: unlimited)")
	fs.Int64("download-rate", 0, "piece download cap in bytes/s (0: unlimited)")
	fs.Duration("stall-timeout", def.Swarm.StallTimeout, "a download that verifies no piece and learns no new piece for this long takes the rest from the upstream")
	fs.Duration("piece-timeout", def.Swarm.PieceTimeout, "bound on one piece request to a peer")
	fs.Int("max-in-flight", def.Swarm.MaxInFlight, "piece requests in flight per blob")
	fs.Int("per-peer-in-flight", def.Swarm.PerPeer, "piece requests in flight to one peer")
	fs.Int("node-in-flight", def.Swarm.NodeInFlight, "piece requests in flight for all the node's downloads, shared among them (0: --max-in-flight each)")
	fs.Duration("peers-refresh", def.Swarm.PeersRefresh, "how often a download asks the tracker for peers")
}

type agentFlags struct {
	nodeFlags    `mapstructure:",squash"`
	Tracker      []string      `mapstructure:"tracker"`
	TrackerToken string        `mapstructure:"tracker-token"`
	TokenFile    string        `mapstructure:"tracker-token-file"`
	TrackerCA    string        `mapstructure:"tracker-ca"`
	TagTTL       time.Duration `mapstructure:"tag-ttl"`
	AuthTTL      time.Duration `mapstructure:"auth-ttl"`
	Credentials  []string      `mapstructure:"credentials"`
	AllowPush    bool          `mapstructure:"allow-push"`
	PushAskCreds bool          `mapstructure:"push-ask-credentials"`
	OpsListen    string        `mapstructure:"metrics-listen"`
	Zone         string        `mapstructure:"zone"`
}

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: a local OCI registry that pulls through the swarm",
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	addNodeFlags(fs, "127.0.0.1:5050", defaultNodeConfig())
	fs.StringSlice("tracker", nil, "tracker URL; several (repeated or comma-separated), or a dns+https://NAME:PORT whose every address is one, are replicas sharing the digests; empty: no swarm, every blob comes from the upstream")
	fs.String("tracker-token", "", "cluster token for the tracker (visible in ps: prefer --tracker-token-file)")
	fs.String("tracker-token-file", "", "file holding the cluster token for the tracker (its first token)")
	fs.String("tracker-ca", "", "PEM file of the CA certificates the tracker's TLS certificate is checked against (default: the system roots)")
	fs.Duration("tag-ttl", agent.DefaultConfig().TagTTL, "how long a tag's resolution is reused before asking the upstream again")
	fs.String("metrics-listen", "", "address to also serve /metrics, /healthz, /readyz and /v1/status on, without the registry (empty: none)")
	fs.Duration("auth-ttl", agent.DefaultConfig().AuthTTL, "how long the upstream's confirmation that a repository holds a manifest or blob is trusted before asking again")
	fs.StringSlice("credentials", nil, "whose credentials authorise pulls: MODE for every registry, or HOST=MODE (repeatable); MODE is node (the agent's, from --docker-config), requester (each client's own: tenant isolation) or auto (node where the agent has credentials, requester elsewhere)")
	fs.Bool("allow-push", false, "accept pushes and stream them to the origin with the pusher's credentials (or the node's); pushed blobs enter the store and the swarm")
	fs.String("zone", "", "this node's zone (its rack or availability zone; a-z, 0-9, '.', '_', '-'): peers of the same zone are preferred and each piece crosses into the zone about once (empty: no zone)")
	fs.Bool("push-ask-credentials", true, "with --allow-push, /v2/ asks clients for credentials so pushers offer theirs (the Docker daemon then needs a login to pull through the agent)")
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
		reg := newRegistry()
		if err := cfg.loadIdentity(); err != nil {
			return err
		}
		var tr nodeTracker
		var tc pingingTracker
		// The preheater takes work from the tracker's announce answers
		// and fetches through the agent: made first, started with it.
		pre, err := agent.NewPreheater(agent.DefaultPreheatConfig(), log, reg)
		if err != nil {
			return err
		}
		if len(f.Tracker) > 0 {
			if tc, err = f.trackerClient(cmd.Context(), log, tracker.WithKey(cfg.Identity), tracker.WithPreheat(pre.Offer)); err != nil {
				return err
			}
			tr = tc
		}
		n, err := newNode(cfg, tr, false, log, reg)
		if err != nil {
			return err
		}
		defer n.Close()
		pre.Start(n.agent)
		defer pre.Close()
		ln, err := net.Listen("tcp", f.Listen)
		if err != nil {
			return err
		}
		log.Info("agent listening", "addr", ln.Addr().String(), "upstream", cfg.Upstream.Default,
			"data_dir", cfg.DataDir, "tracker", strings.Join(f.Tracker, ","), "peer", n.peerID())
		var pinger agent.Pinger
		if tc != nil {
			pinger = tc
		}
		status := n.reporter(cfg, pinger, strings.Join(f.Tracker, ","))
		go status.Run(cmd.Context())
		h := withStatus(withMetrics(n.agent.Handler(), reg), status.Handler())
		if f.OpsListen != "" {
			if err := serveOps(cmd.Context(), f.OpsListen, opsHandler(n.agent.Handler(), reg, status.Handler()), f.ShutdownTimeout, log); err != nil {
				return err
			}
		}
		return serve(cmd.Context(), ln, h, f.ShutdownTimeout, n.agent.Drain, log)
	}
	return cmd
}

// trackerClient is the client of --tracker (of its replicas, when it names
// several: clusterTracker), with the token from the flag or its file and
// the CA from --tracker-ca. A tracker whose certificate does not verify is
// an error now, not a string of failed announces; one that does not answer
// yet is not (the agent pulls from the upstream until it does).
func (f agentFlags) trackerClient(ctx context.Context, log *slog.Logger, extra ...tracker.Option) (pingingTracker, error) {
	token := f.TrackerToken
	if f.TokenFile != "" {
		toks, err := readTokens(f.TokenFile)
		if err != nil {
			return nil, err
		}
		token = toks[0]
	}
	if token == "" {
		return nil, errors.New("a cluster token is required with --tracker: --tracker-token-file or --tracker-token")
	}
	ca, err := caClient(f.TrackerCA)
	if err != nil {
		return nil, err
	}
	opts := append(append([]tracker.Option{tracker.WithLogger(log)}, extra...), ca...)
	urls := tracker.SplitURLs(f.Tracker)
	c, err := clusterTracker(ctx, urls, token, log, opts...)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx); err != nil {
		if errors.Is(err, tracker.ErrCertificate) {
			return nil, fmt.Errorf("tracker %s: %w", strings.Join(urls, ","), err)
		}
		log.Warn("tracker not answering yet; pulling from the upstream until it does", "tracker", strings.Join(urls, ","), "err", err)
	}
	return c, nil
}

// config is the node's configuration from the flags, checked.
func (f agentFlags) config() (nodeConfig, error) {
	cfg, err := f.nodeFlags.config(defaultNodeConfig())
	if err != nil {
		return cfg, err
	}
	cfg.Agent.TagTTL = f.TagTTL
	cfg.Agent.AuthTTL = f.AuthTTL
	if tracker.ValidateZone(f.Zone) != nil {
		return cfg, fmt.Errorf("zone %q: want at most %d of a-z, 0-9, '.', '_' and '-'", f.Zone, tracker.MaxZoneLen)
	}
	cfg.Zone = f.Zone
	if err := applyCredentialModes(&cfg.Upstream, f.Credentials); err != nil {
		return cfg, err
	}
	if f.AllowPush {
		cfg.Push = &agent.PushConfig{AskCredentials: f.PushAskCreds}
	}
	return cfg, cfg.validate()
}

// config applies the flags to the defaults def.
func (f nodeFlags) config(def nodeConfig) (nodeConfig, error) {
	cfg := def
	cfg.DataDir = f.DataDir
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
	cfg.P2P.ListenAddrs = f.P2PListen
	cfg.P2P.KeyFile = f.P2PKeyFile
	cfg.P2P.Security = f.P2PSecurity
	cfg.P2P.MaxUploads = f.MaxUploads
	cfg.P2P.UploadQueue = f.UploadQueue
	cfg.P2P.UploadRate = f.UploadRate
	cfg.P2P.DownloadRate = f.DownloadRate
	cfg.Swarm.StallTimeout = f.StallTimeout
	cfg.Swarm.PieceTimeout = f.PieceTimeout
	cfg.Swarm.MaxInFlight = f.MaxInFlight
	cfg.Swarm.PerPeer = f.PerPeer
	cfg.Swarm.NodeInFlight = f.NodeInFlight
	cfg.Swarm.PeersRefresh = f.PeersRefresh
	if f.P2PPSKFile != "" {
		psk, err := readPSK(f.P2PPSKFile)
		if err != nil {
			return cfg, err
		}
		cfg.P2P.PSK = psk
	}
	return cfg, nil
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func withMetrics(h http.Handler, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
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

// applyCredentialModes sets the credential modes of --credentials: MODE
// for every registry without one of its own, HOST=MODE for one (listed
// if it was not). A host that names the default upstream's sets its mode.
func applyCredentialModes(cfg *upstream.Config, specs []string) error {
	for _, spec := range specs {
		host, mode, ok := strings.Cut(spec, "=")
		if !ok {
			host, mode = "", spec
		}
		m, err := upstream.ParseMode(mode)
		if err != nil {
			return fmt.Errorf("credentials %q: %w", spec, err)
		}
		if host == "" {
			cfg.Credentials = m
			continue
		}
		i := slices.IndexFunc(cfg.Registries, func(r upstream.Registry) bool { return r.Host == host })
		if i < 0 {
			r := upstream.Registry{Host: host}
			if u, err := url.Parse(cfg.Default); err == nil && u.Host == host {
				// The default upstream's host: keep its scheme.
				r.Endpoint, r.Insecure = cfg.Default, u.Scheme == "http"
			}
			cfg.Registries = append(cfg.Registries, r)
			i = len(cfg.Registries) - 1
		}
		cfg.Registries[i].Credentials = m
	}
	return nil
}
