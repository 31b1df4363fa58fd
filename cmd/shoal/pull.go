package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/agent/unpack"
)

// defaultAgent is where `shoal agent` listens by default; pull uses it when
// it answers.
const defaultAgent = "127.0.0.1:5050"

// agentProbeTimeout bounds the check for the default agent, so that a pull
// without one is not held up noticeably.
const agentProbeTimeout = 300 * time.Millisecond

type pullFlags struct {
	logFlags `mapstructure:",squash"`
	Unpack   string `mapstructure:"unpack"`
	Agent    string `mapstructure:"agent"`
	Platform string `mapstructure:"platform"`
	Jobs     int    `mapstructure:"jobs"`
	Insecure bool   `mapstructure:"insecure"`
	MaxSize  int64  `mapstructure:"max-size"`
	Force    bool   `mapstructure:"force"`
	Progress string `mapstructure:"progress"`
	StdGzip  bool   `mapstructure:"std-gzip"`
}

func newPullCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pull IMAGE --unpack DIR",
		Short: "Pull an image and unpack it into DIR/rootfs, checking every layer's digest and diff_id",
		Long: `Pull an image and unpack it into DIR/rootfs, with its config in DIR/config.json.

Layers are fetched and unpacked in parallel, each as one stream: download,
digest check, decompression, diff_id check, tar extraction. The image comes
through the local Shoal agent when one answers on ` + defaultAgent + ` (or the
one named by --agent), straight from the registry otherwise.`,
		Args: cobra.ExactArgs(1),
	}
	fs := cmd.Flags()
	addLogFlags(fs)
	fs.String("unpack", "", "target directory: DIR/rootfs and DIR/config.json are created (required)")
	fs.String("agent", "", "HOST:PORT of a Shoal agent to pull through; default "+defaultAgent+" if it answers; \"none\" pulls straight from the registry")
	fs.String("platform", "", "os/arch[/variant] to pick from an index (default: this host's)")
	fs.Int("jobs", 0, "layers fetched and unpacked at once (default: the number of CPUs)")
	fs.Bool("insecure", false, "plain HTTP to the registry (always allowed for loopback registries)")
	fs.Int64("max-size", unpack.DefaultMaxSize, "maximum bytes the image may unpack to, in total and per file")
	fs.Bool("force", false, "replace an existing DIR/rootfs")
	fs.String("progress", "auto", "progress display: auto (terminal display on a TTY, log lines otherwise), tty, log or none")
	// The benchmark's baseline: the same pipeline with the standard
	// library's gzip. Hidden because it only makes pulls slower.
	fs.Bool("std-gzip", false, "decode gzip layers with compress/gzip instead of pgzip")
	_ = fs.MarkHidden("std-gzip")

	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var f pullFlags
		if err := loadConfig(cmd, &f); err != nil {
			return err
		}
		if f.Unpack == "" {
			return errors.New("pull: --unpack DIR is required")
		}
		log, err := f.logger(cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		return runPull(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], f, log)
	}
	return cmd
}

func runPull(ctx context.Context, out, errw io.Writer, ref string, f pullFlags, log *slog.Logger) error {
	opts := unpack.Options{
		Ref:      ref,
		Dir:      f.Unpack,
		Platform: f.Platform,
		Jobs:     f.Jobs,
		Insecure: f.Insecure,
		MaxSize:  f.MaxSize,
		Force:    f.Force,
		StdGzip:  f.StdGzip,
		Logger:   log,
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	via, err := chooseAgent(ctx, ref, f.Agent, f.Insecure)
	if err != nil {
		return err
	}
	opts.Agent = via

	var term *unpack.TermProgress
	switch mode := f.Progress; {
	case mode == "tty" || mode == "auto" && isTerminal(errw):
		term = unpack.NewTermProgress(errw)
		opts.Progress = term
		// Info lines would scroll the layer block away while it is redrawn.
		opts.Logger = slog.New(minLevel{Handler: log.Handler(), min: slog.LevelWarn})
	case mode == "log" || mode == "auto":
		opts.Progress = unpack.NewLogProgress(log)
	case mode == "none":
	default:
		return fmt.Errorf("pull: --progress %q: want auto, tty, log or none", mode)
	}
	if via != "" {
		log.Info("pulling through agent", "agent", via, "ref", ref)
	} else {
		log.Info("pulling from the registry", "ref", ref)
	}

	res, err := unpack.Pull(ctx, opts)
	if term != nil {
		_ = term.Close()
	}
	if err != nil {
		return err
	}
	printSummary(out, res, via, f.Unpack)
	return nil
}

// chooseAgent returns the agent to pull through: the flag's, unless it is
// "none"; without the flag, the default agent if it answers /v2/ at once.
// A reference naming the agent itself is pulled from it directly, as from a
// registry.
func chooseAgent(ctx context.Context, ref, flag string, insecure bool) (string, error) {
	if flag == "none" {
		return "", nil
	}
	var nopts []name.Option
	if insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return "", fmt.Errorf("pull: invalid image reference %q: %w", ref, err)
	}
	registry := r.Context().RegistryStr()
	if flag == "" {
		if registry == defaultAgent || probeAgent(ctx, defaultAgent, agentProbeTimeout) != nil {
			return "", nil
		}
		return defaultAgent, nil
	}
	if _, _, err := net.SplitHostPort(flag); err != nil {
		return "", fmt.Errorf("pull: --agent %q: want HOST:PORT or none", flag)
	}
	if flag == registry {
		return "", nil
	}
	// Named explicitly, the agent must be there: say so rather than let
	// the first registry request fail with the agent's address in it.
	if err := probeAgent(ctx, flag, explicitAgentTimeout); err != nil {
		return "", fmt.Errorf("pull: agent %s: %w", flag, err)
	}
	return flag, nil
}

// explicitAgentTimeout bounds the check of an agent named by --agent.
const explicitAgentTimeout = 5 * time.Second

// probeAgent checks that a registry endpoint at hostport answers GET /v2/
// with 200 within timeout.
func probeAgent(ctx context.Context, hostport string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostport+"/v2/", nil)
	if err != nil {
		return err
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return op // "dial tcp ...: connection refused", without the URL
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /v2/ answered %s, not 200", resp.Status)
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && unpack.IsTerminal(f)
}

func printSummary(w io.Writer, res *unpack.Result, via, dir string) {
	source := "from the registry"
	if via != "" {
		source = "through agent " + via
	}
	secs := res.Duration.Seconds()
	rate := func(n int64) float64 {
		if secs <= 0 {
			return 0
		}
		return float64(n) / 1e6 / secs
	}
	fmt.Fprintf(w, "pulled %s (%s) %s\n", res.Ref, res.Platform, source)
	fmt.Fprintf(w, "  digest   %s\n", res.Digest)
	fmt.Fprintf(w, "  layers   %d, %s compressed → %s unpacked, digests and diff_ids verified\n",
		len(res.Layers), megabytes(res.CompressedBytes), megabytes(res.UnpackedBytes))
	fmt.Fprintf(w, "  time     %s (%.1f MB/s in, %.1f MB/s out)\n",
		res.Duration.Round(time.Millisecond), rate(res.CompressedBytes), rate(res.UnpackedBytes))
	fmt.Fprintf(w, "  rootfs   %s\n  config   %s\n", res.Rootfs, filepath.Join(dir, "config.json"))
}

func megabytes(n int64) string {
	if n < 1e6 {
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

// minLevel drops records below min, whatever the wrapped handler allows.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(as), min: h.min}
}

func (h minLevel) WithGroup(g string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(g), min: h.min}
}

var _ slog.Handler = minLevel{}
