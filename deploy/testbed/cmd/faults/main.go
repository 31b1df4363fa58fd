package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoal-dev/shoal/deploy/testbed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
}

// errProblems is returned once the report is out when a fault broke an
// expectation.
var errProblems = errors.New("some faults broke expectations (see the table)")

func run() error {
	cfg := testbed.DefaultConfig()
	cfg.Prefix = "shoalflt-"
	cfg.Hosts = 10
	sc := testbed.DefaultFaultScenario()
	var (
		sizeMiB     = flag.Int64("size-mib", sc.ImageSize>>20, "image size in MiB (layers only)")
		hostMBps    = flag.Float64("host-mbps", 5, "each host's upload and download cap, MB/s (10^6 bytes)")
		originMBps  = flag.Float64("origin-mbps", 0, "the origin's cap, MB/s (0: as the hosts)")
		trackerMBps = flag.Float64("tracker-mbps", 0, "the tracker's cap, MB/s (0: as the hosts)")
		faults      = flag.String("faults", "all", "comma-separated faults to run: "+fmt.Sprint(testbed.AllFaults))
		out         = flag.String("out", "out/bench-faults", "directory for the report and the logs")
		work        = flag.String("work", "", "scratch directory (default: a new temporary directory, removed at the end)")
		agentArgs   = flag.String("agent-args", "", "extra flags for every agent, space-separated")
		trackerArgs = flag.String("tracker-args", "", "extra flags for the tracker, space-separated")
		verbose     = flag.Bool("v", false, "log debug details of the testbed itself")
	)
	flag.IntVar(&cfg.Hosts, "n", cfg.Hosts, "number of agent hosts")
	flag.IntVar(&sc.Layers, "layers", sc.Layers, "number of layers")
	flag.Uint64Var(&sc.Seed, "seed", sc.Seed, "seed of the image's bytes")
	flag.DurationVar(&sc.PullTimeout, "pull-timeout", sc.PullTimeout, "bound on each pull of a host")
	flag.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "prefix of every namespace name (leftovers with it are removed)")
	flag.StringVar(&cfg.ShoalBin, "shoal", "bin/shoal", "shoal binary")
	flag.StringVar(&sc.LiarBin, "liar", "bin/liar", "the corrupt peer's binary (deploy/testbed/cmd/liar)")
	flag.StringVar(&cfg.CraneBin, "crane", "crane", "crane binary")
	flag.StringVar(&cfg.RegistryBin, "registry", cfg.RegistryBin, "docker-registry binary")
	flag.DurationVar(&cfg.QueueDelay, "queue", cfg.QueueDelay, "each capped link's queue, in time at its rate (0: the kernel's default)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	list, err := testbed.ParseFaults(*faults)
	if err != nil {
		return err
	}
	sc.ImageSize = *sizeMiB << 20
	sc.AgentArgs = strings.Fields(*agentArgs)
	sc.TrackerArgs = strings.Fields(*trackerArgs)
	cfg.HostUpload = int64(*hostMBps * testbed.MBps)
	cfg.HostDownload = cfg.HostUpload
	cfg.OriginRate, cfg.TrackerRate = cfg.HostUpload, cfg.HostUpload
	if *originMBps > 0 {
		cfg.OriginRate = int64(*originMBps * testbed.MBps)
	}
	if *trackerMBps > 0 {
		cfg.TrackerRate = int64(*trackerMBps * testbed.MBps)
	}
	if err := sc.Validate(); err != nil {
		return err
	}
	ctx, cleanup, err := testbed.Command(&cfg, *out, *work, "shoal-faults-")
	if err != nil {
		return err
	}
	defer cleanup()
	begin := time.Now()
	img, err := testbed.GenerateImage(filepath.Join(cfg.WorkDir, "image"), sc.ImageSize, sc.Layers, sc.Seed)
	if err != nil {
		return err
	}
	rep := testbed.NewFaultReport(cfg, img, sc.Layers)
	logs := filepath.Join(*out, "logs")
	if err := os.RemoveAll(logs); err != nil {
		return err
	}
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	for _, f := range list {
		log.Info("fault scenario", "fault", string(f), "hosts", cfg.Hosts, "image_mib", img.Size()>>20)
		fcfg := cfg
		fcfg.WorkDir = filepath.Join(cfg.WorkDir, string(f))
		res, err := testbed.RunFault(ctx, fcfg, sc, img, f, log)
		// Keep the processes' logs whatever happened.
		if mvErr := os.Rename(filepath.Join(fcfg.WorkDir, "logs"), filepath.Join(logs, string(f))); mvErr != nil {
			log.Warn("cannot keep the logs", "fault", string(f), "err", mvErr)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		_ = os.RemoveAll(fcfg.WorkDir)
		rep.Results = append(rep.Results, res)
		log.Info("fault done", "fault", string(f), "completed", res.Completed, "of", res.Required,
			"max_s", res.Max, "origin_copies", res.OriginEgressCopies, "problems", len(res.Problems))
	}
	if err := writeOutputs(*out, rep); err != nil {
		return err
	}
	log.Info("done", "duration", time.Since(begin).Round(time.Second), "out", *out)
	for _, res := range rep.Results {
		if len(res.Problems) > 0 {
			return errProblems
		}
	}
	return nil
}

func writeOutputs(dir string, rep *testbed.FaultReport) error {
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	for name, write := range map[string]func(*os.File) error{
		"report.json": func(f *os.File) error { return rep.WriteJSON(f) },
		"report.txt":  func(f *os.File) error { return rep.WriteTable(f) },
	} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		err = write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}
