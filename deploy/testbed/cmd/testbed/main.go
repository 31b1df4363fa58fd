package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/deploy/testbed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testbed:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := testbed.DefaultConfig()
	sc := testbed.DefaultScenario()
	var (
		sizeMiB     = flag.Int64("size-mib", sc.ImageSize>>20, "image size in MiB (layers only)")
		hostMBps    = flag.Float64("host-mbps", float64(cfg.HostDownload)/testbed.MBps, "each host's upload and download cap, MB/s (10^6 bytes)")
		originMBps  = flag.Float64("origin-mbps", float64(cfg.OriginRate)/testbed.MBps, "the origin's cap, MB/s")
		trackerMBps = flag.Float64("tracker-mbps", 0, "the tracker's cap, MB/s (0: as the hosts)")
		out         = flag.String("out", "out/bench-swarm", "directory for the report, the chart and the logs")
		work        = flag.String("work", "", "scratch directory for registry storage, agent data and pulls (default: a new temporary directory, removed at the end)")
		agentArgs   = flag.String("agent-args", "", "extra flags for every agent, space-separated (e.g. \"--log-level debug\")")
		trackerArgs = flag.String("tracker-args", "", "extra flags for the tracker, space-separated")
		noBaseline  = flag.Bool("no-baseline", false, "skip the no-P2P baseline")
		preseed     = flag.Bool("preseed", false, "also roll out an image after `shoal seed IMAGE --wait` on a fresh swarm, against the cold rollout")
		verbose     = flag.Bool("v", false, "log debug details of the testbed itself")
	)
	flag.IntVar(&cfg.Hosts, "n", cfg.Hosts, "number of agent hosts")
	flag.IntVar(&sc.Layers, "layers", sc.Layers, "number of layers")
	flag.Uint64Var(&sc.Seed, "seed", sc.Seed, "seed of the image's bytes")
	flag.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "prefix of every namespace name (leftovers with it are removed)")
	flag.StringVar(&cfg.ShoalBin, "shoal", "bin/shoal", "shoal binary")
	flag.StringVar(&cfg.CraneBin, "crane", "", "crane binary (default: from PATH or Go's bin directory)")
	flag.StringVar(&cfg.RegistryBin, "registry", cfg.RegistryBin, "docker-registry binary")
	flag.DurationVar(&cfg.QueueDelay, "queue", cfg.QueueDelay, "each capped link's queue, in time at its rate (0: the kernel's default FIFO of txqueuelen packets)")
	flag.DurationVar(&sc.SeedTimeout, "seed-timeout", sc.SeedTimeout, "with -preseed, shoal seed's --timeout")
	flag.DurationVar(&sc.SampleInterval, "sample", sc.SampleInterval, "how often agents' counters are sampled")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	sc.ImageSize = *sizeMiB << 20
	sc.Baseline = !*noBaseline
	sc.Preseed = *preseed
	sc.AgentArgs = strings.Fields(*agentArgs)
	sc.TrackerArgs = strings.Fields(*trackerArgs)
	cfg.HostUpload = int64(*hostMBps * testbed.MBps)
	cfg.HostDownload = cfg.HostUpload
	cfg.OriginRate = int64(*originMBps * testbed.MBps)
	cfg.TrackerRate = cfg.HostUpload
	if *trackerMBps > 0 {
		cfg.TrackerRate = int64(*trackerMBps * testbed.MBps)
	}
	if cfg.CraneBin == "" {
		cfg.CraneBin = findCrane()
	}
	if err := sc.Validate(); err != nil {
		return err
	}

	ctx, cleanup, err := testbed.Command(&cfg, *out, *work, "shoal-bench-")
	if err != nil {
		return err
	}
	defer cleanup()
	begin := time.Now()
	bed, err := testbed.Start(ctx, cfg, testbed.WithLogger(log))
	if err != nil {
		return err
	}
	rep, runErr := testbed.Run(ctx, bed, sc, log)
	// Keep the processes' logs: copy them out before the bed goes.
	logs := filepath.Join(*out, "logs")
	_ = os.RemoveAll(logs)
	if err := os.Rename(filepath.Join(cfg.WorkDir, "logs"), logs); err != nil {
		log.Warn("cannot keep the logs", "err", err)
	}
	closeErr := bed.Close()
	if runErr != nil {
		return errors.Join(runErr, closeErr)
	}
	if closeErr != nil {
		log.Warn("cleanup", "err", closeErr)
	}
	if err := writeOutputs(*out, rep); err != nil {
		return err
	}
	log.Info("done", "duration", time.Since(begin).Round(time.Second), "out", *out)
	return nil
}

func writeOutputs(dir string, rep *testbed.Report) error {
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	files := []struct {
		name  string
		write func(*os.File) error
	}{
		{"report.json", func(f *os.File) error { return rep.WriteJSON(f) }},
		{"report.txt", func(f *os.File) error { return rep.WriteTable(f) }},
		{"chart.svg", func(f *os.File) error { return rep.WriteSVG(f) }},
	}
	for _, file := range files {
		f, err := os.Create(filepath.Join(dir, file.name))
		if err != nil {
			return err
		}
		err = file.write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file.name, err)
		}
	}
	return nil
}

// findCrane looks in PATH, then where `go install` puts binaries.
func findCrane() string {
	if p, err := exec.LookPath("crane"); err == nil {
		return p
	}
	for _, dir := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("HOME"), "go", "bin")} {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, "crane")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return "crane"
}
