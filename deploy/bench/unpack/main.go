package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

type config struct {
	shoal   string
	out     string
	layers  int
	size    int64
	runs    int
	tools   string
	workDir string
	hold    bool
}

func main() {
	var c config
	flag.StringVar(&c.shoal, "shoal", "bin/shoal", "shoal binary")
	flag.StringVar(&c.out, "out", "out/bench-unpack", "directory for results.json")
	flag.IntVar(&c.layers, "layers", 5, "layers in the image")
	flag.Int64Var(&c.size, "size", 200<<20, "unpacked bytes of file content in the whole image")
	flag.IntVar(&c.runs, "runs", 3, "timed runs per tool, round-robin, after one untimed warm-up run")
	flag.StringVar(&c.tools, "tools", "shoal,shoal-seq-stdgzip,ctr,podman", "tools to run, comma separated")
	flag.StringVar(&c.workDir, "work", "", "scratch directory (default: a temp dir, removed at the end)")
	flag.BoolVar(&c.hold, "hold", false, "push the image, print its reference and serve it until interrupted (for profiling)")
	flag.Parse()
	if err := run(context.Background(), c); err != nil {
		fmt.Fprintln(os.Stderr, "bench-unpack:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	if c.layers < 1 || c.size < int64(c.layers) || c.runs < 1 {
		return errors.New("want at least one layer, one byte per layer and one run")
	}
	shoal, err := filepath.Abs(c.shoal)
	if err != nil {
		return err
	}
	if _, err := os.Stat(shoal); err != nil {
		return fmt.Errorf("shoal binary: %w (run make build)", err)
	}
	work := c.workDir
	if work == "" {
		if work, err = os.MkdirTemp("", "bench-unpack-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}

	fmt.Fprintf(os.Stderr, "generating a %d-layer image of %d MiB ...\n", c.layers, c.size>>20)
	img, rep, err := generate(c.layers, c.size)
	if err != nil {
		return err
	}
	reg, stop, err := startRegistry(ctx, filepath.Join(work, "registry"))
	if err != nil {
		return err
	}
	defer stop()
	ref := reg + "/bench/unpack:v1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("pushing to docker-registry: %w", err)
	}
	fmt.Fprintf(os.Stderr, "image %s: %.1f MB compressed, %.1f MB of tar, %d files\n",
		ref, float64(rep.CompressedBytes)/1e6, float64(rep.UnpackedBytes)/1e6, rep.Files)

	if c.hold {
		fmt.Println(ref)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		return nil
	}

	rep.Date, rep.CPUs, rep.Kernel = time.Now().UTC(), runtime.NumCPU(), kernel()
	tools := map[string]func(dir string) (*exec.Cmd, func() (daemonStats, error), error){
		"shoal": func(dir string) (*exec.Cmd, func() (daemonStats, error), error) {
			return exec.Command(shoal, "pull", ref, "--unpack", dir, "--agent", "none", "--progress", "none", "--log-level", "warn"), nil, nil
		},
		"shoal-seq-stdgzip": func(dir string) (*exec.Cmd, func() (daemonStats, error), error) {
			return exec.Command(shoal, "pull", ref, "--unpack", dir, "--agent", "none", "--progress", "none", "--log-level", "warn",
				"--jobs", "1", "--std-gzip"), nil, nil
		},
		"ctr": func(dir string) (*exec.Cmd, func() (daemonStats, error), error) {
			d, err := startContainerd(ctx, dir)
			if err != nil {
				return nil, nil, err
			}
			cmd := exec.Command("ctr", "--address", d.sock, "--namespace", "bench", "images", "pull",
				"--plain-http", "--snapshotter", d.snapshotter, ref)
			return cmd, d.stop, nil
		},
		"podman": func(dir string) (*exec.Cmd, func() (daemonStats, error), error) {
			return exec.Command("podman", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"),
				"--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
				"pull", "--quiet", "--tls-verify=false", ref), nil, nil
		},
	}

	// Runs go round-robin over the tools, so that load from other work on
	// the machine falls on all of them alike.
	var active []string
	byTool := map[string]*result{}
	for _, tool := range strings.Split(c.tools, ",") {
		if _, ok := tools[tool]; !ok {
			return fmt.Errorf("unknown tool %q", tool)
		}
		res := &result{Tool: tool}
		byTool[tool] = res
		if tool == "podman" || tool == "ctr" {
			if _, err := exec.LookPath(tool); err != nil {
				res.Note = "not installed"
			} else if os.Geteuid() != 0 {
				res.Note = "needs root"
			}
		}
		if res.Note != "" {
			fmt.Fprintf(os.Stderr, "%s: %s, skipped\n", tool, res.Note)
			continue
		}
		active = append(active, tool)
	}
	// Unpacked trees are removed only at the end: ext4 on our machines
	// scans past inodes freed in the last seconds when it allocates new ones
	// (recently_deleted in the kernel profile), and removing 1,000 files
	// just before the next run made file creation a quarter of every tool's
	// CPU time, which no real pull pays.
	var done []string
	defer func() {
		for _, d := range done {
			if err := removeAll(d); err != nil {
				fmt.Fprintln(os.Stderr, "bench-unpack:", err)
			}
		}
	}()
	rep.LoadAvgBefore = loadavg()
	for i := -1; i < c.runs; i++ {
		for _, tool := range active {
			if i < 0 && tool != active[0] {
				continue // one untimed run warms the registry's page cache
			}
			res := byTool[tool]
			dir := filepath.Join(work, fmt.Sprintf("%s-%d", tool, i+1))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			cmd, after, err := tools[tool](dir)
			if err != nil {
				return fmt.Errorf("%s: %w", tool, err)
			}
			res.Command = strings.Join(cmd.Args, " ")
			m, err := timed(cmd, filepath.Join(work, "time.txt"))
			var daemon daemonStats
			if after != nil {
				d, aerr := after()
				err = errors.Join(err, aerr)
				daemon = d
			}
			m.cpu += daemon.cpu
			if err != nil {
				return fmt.Errorf("%s: %w", tool, err)
			}
			done = append(done, dir)
			if i < 0 {
				continue
			}
			fmt.Fprintf(os.Stderr, "%-18s run %d: %.2f s, %.2f s CPU, peak RSS %.0f MiB\n", tool, i+1, m.secs, m.cpu, m.rssMiB)
			res.Runs = append(res.Runs, m.secs)
			res.CPU = append(res.CPU, m.cpu)
			res.PeakRSSMiB = max(res.PeakRSSMiB, m.rssMiB)
			res.DaemonPeakRSSMiB = max(res.DaemonPeakRSSMiB, daemon.rssMiB)
		}
	}
	rep.LoadAvgAfter = loadavg()
	for _, tool := range strings.Split(c.tools, ",") {
		res := byTool[tool]
		if res.Note == "" {
			res.Seconds = median(res.Runs)
			res.MinSeconds = slices.Min(res.Runs)
			res.CPUSeconds = median(res.CPU)
			res.CompressedMBps = float64(rep.CompressedBytes) / 1e6 / res.Seconds
			res.UnpackedMBps = float64(rep.UnpackedBytes) / 1e6 / res.Seconds
		}
		rep.Results = append(rep.Results, *res)
	}

	printTable(os.Stdout, rep)
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(c.out, "results.json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", path)
	return nil
}

// removeAll removes dir even when it holds overlay mounts left by a runtime.
func removeAll(dir string) error {
	_ = exec.Command("umount", "-R", "-l", dir).Run() // nothing mounted is fine
	return os.RemoveAll(dir)
}
