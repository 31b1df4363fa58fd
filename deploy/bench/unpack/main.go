// Command unpack is the pull-and-unpack benchmark behind `make bench-unpack`.
//
// It generates a gzip image (default 200 MiB unpacked, 5 layers), serves it
// from Debian's docker-registry on loopback, and times, on the same image and
// registry, in turns:
//
//   - shoal pull --unpack (parallel layers, pgzip);
//   - the same binary and pipeline with one layer at a time and the standard
//     library's gzip (--jobs 1 --std-gzip): the baseline;
//   - containerd 1.6 `ctr images pull` (a fresh private daemon per run,
//     overlayfs or native snapshotter);
//   - `podman pull` (fresh --root per run, overlay driver), when installed.
//
// Every run starts from an empty target; the registry's files are in the page
// cache after the warm-up run, so the figures measure the pull, not the
// registry's disk. Peak RSS comes from /usr/bin/time -v (the daemon's from
// /proc VmHWM). Results go to stdout as a table and to OUT/results.json.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/shoal-dev/shoal/deploy/conf"
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

// result is one tool's figures, medians over the runs.
type result struct {
	Tool             string    `json:"tool"`
	Command          string    `json:"command"`
	Runs             []float64 `json:"runs_seconds"`
	Seconds          float64   `json:"median_seconds"`
	MinSeconds       float64   `json:"min_seconds"`      // the least disturbed by other work
	CPU              []float64 `json:"runs_cpu_seconds"` // user + system of the client, plus containerd's
	CPUSeconds       float64   `json:"median_cpu_seconds"`
	CompressedMBps   float64   `json:"compressed_mb_per_s"`
	UnpackedMBps     float64   `json:"unpacked_mb_per_s"`
	PeakRSSMiB       float64   `json:"peak_rss_mib"`        // the client process
	DaemonPeakRSSMiB float64   `json:"daemon_peak_rss_mib"` // containerd, 0 otherwise
	Note             string    `json:"note,omitempty"`
}

type report struct {
	Date            time.Time `json:"date"`
	CPUs            int       `json:"cpus"`
	Kernel          string    `json:"kernel"`
	Layers          int       `json:"layers"`
	CompressedBytes int64     `json:"compressed_bytes"`
	UnpackedBytes   int64     `json:"unpacked_bytes"` // tar streams
	Files           int       `json:"files"`
	LoadAvgBefore   string    `json:"loadavg_before"` // other work on the machine skews the figures
	LoadAvgAfter    string    `json:"loadavg_after"`
	Results         []result  `json:"results"`
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

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func printTable(w io.Writer, rep report) {
	fmt.Fprintf(w, "\npull and unpack of a %d-layer gzip image (%.1f MB compressed, %.1f MB unpacked, %d files) from docker-registry on loopback, %d CPUs\n\n",
		rep.Layers, float64(rep.CompressedBytes)/1e6, float64(rep.UnpackedBytes)/1e6, rep.Files, rep.CPUs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\ttime (median)\tmin\tvs shoal\tin MB/s\tout MB/s\tCPU\tpeak RSS\tdaemon RSS\t")
	var base float64
	for _, r := range rep.Results {
		if r.Tool == "shoal" {
			base = r.Seconds
		}
	}
	for _, r := range rep.Results {
		if r.Note != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\t\n", r.Tool, r.Note)
			continue
		}
		ratio, daemon := "", ""
		if base > 0 {
			ratio = fmt.Sprintf("%.2f×", r.Seconds/base)
		}
		if r.DaemonPeakRSSMiB > 0 {
			daemon = fmt.Sprintf("%.0f MiB", r.DaemonPeakRSSMiB)
		}
		fmt.Fprintf(tw, "%s\t%.2f s\t%.2f s\t%s\t%.0f\t%.0f\t%.2f s\t%.0f MiB\t%s\t\n", r.Tool, r.Seconds, r.MinSeconds, ratio, r.CompressedMBps, r.UnpackedMBps, r.CPUSeconds, r.PeakRSSMiB, daemon)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nCPU is user+system of the client process, plus containerd's for ctr; load average %s before, %s after\n",
		rep.LoadAvgBefore, rep.LoadAvgAfter)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type measurement struct {
	secs   float64 // wall time, measured here
	cpu    float64 // user + system seconds of the process, 0 if unknown
	rssMiB float64 // peak resident set, 0 if unknown
}

// timed runs cmd under /usr/bin/time -v when it is there.
func timed(cmd *exec.Cmd, timeFile string) (measurement, error) {
	var m measurement
	useTime := false
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		useTime = true
		path, err := exec.LookPath(cmd.Path)
		if err != nil {
			return m, err
		}
		cmd = exec.Command("/usr/bin/time", append([]string{"-v", "-o", timeFile, path}, cmd.Args[1:]...)...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	m.secs = time.Since(start).Seconds()
	if err != nil {
		return m, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	if !useTime {
		return m, nil
	}
	b, err := os.ReadFile(timeFile)
	if err != nil {
		return m, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			continue
		}
		x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			continue
		}
		switch k {
		case "Maximum resident set size (kbytes)":
			m.rssMiB = x / 1024
		case "User time (seconds)", "System time (seconds)":
			m.cpu += x
		}
	}
	return m, nil
}

// removeAll removes dir even when it holds overlay mounts left by a runtime.
func removeAll(dir string) error {
	_ = exec.Command("umount", "-R", "-l", dir).Run() // nothing mounted is fine
	return os.RemoveAll(dir)
}

// generate builds an image of n gzip layers totalling size bytes of file
// content: directories of files from 512 B to 2 MiB, most of them small, as
// in a distribution image, with text-like content gzip roughly halves.
func generate(n int, size int64) (v1.Image, report, error) {
	rep := report{Layers: n}
	layers := make([]v1.Layer, n)
	errs := make([]error, n)
	type stats struct {
		raw, gz int64
		files   int
	}
	st := make([]stats, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(i), 42))
			var raw bytes.Buffer
			tw := tar.NewWriter(&raw)
			mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
			var written int64
			for d := 0; written < size/int64(n); d++ {
				dir := fmt.Sprintf("layer%d/dir%03d/", i, d)
				if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
					errs[i] = err
					return
				}
				for f := 0; f < 32 && written < size/int64(n); f++ {
					sz := fileSize(rng)
					sz = min(sz, size/int64(n)-written)
					h := &tar.Header{Name: fmt.Sprintf("%sfile%03d", dir, f), Typeflag: tar.TypeReg, Mode: 0o644, Size: sz, ModTime: mtime}
					if err := tw.WriteHeader(h); err != nil {
						errs[i] = err
						return
					}
					if _, err := tw.Write(textLike(rng, int(sz))); err != nil {
						errs[i] = err
						return
					}
					written += sz
					st[i].files++
				}
			}
			if err := tw.Close(); err != nil {
				errs[i] = err
				return
			}
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz) // what docker and podman push: default level
			if _, err := zw.Write(raw.Bytes()); err != nil {
				errs[i] = err
				return
			}
			if err := zw.Close(); err != nil {
				errs[i] = err
				return
			}
			st[i].raw, st[i].gz = int64(raw.Len()), int64(gz.Len())
			b := gz.Bytes()
			layers[i], errs[i] = tarball.LayerFromOpener(func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(b)), nil
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, rep, err
	}
	for _, s := range st {
		rep.UnpackedBytes += s.raw
		rep.CompressedBytes += s.gz
		rep.Files += s.files
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, rep, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, rep, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = runtime.GOOS, runtime.GOARCH
	img, err = mutate.ConfigFile(img, cf)
	return img, rep, err
}

// fileSize draws from a log-uniform distribution between 512 B and 2 MiB.
func fileSize(rng *mrand.Rand) int64 {
	lo, hi := 9.0, 21.0 // log2
	e := lo + rng.Float64()*(hi-lo)
	return int64(1) << int(e) * int64(100+rng.IntN(100)) / 150
}

var vocabulary = strings.Fields(`the of and to in is for on that with as by this be are from at or it an
	layer piece peer tracker agent registry digest manifest blob config shoal rootfs usr lib bin share
	include function return struct const static void int char unsigned long error warning debug info`)

// textLike returns n bytes of words with a sprinkling of random bytes, so
// that gzip does roughly as well as on binaries and text of a real image.
func textLike(rng *mrand.Rand, n int) []byte {
	b := make([]byte, 0, n+32)
	var rnd [12]byte
	for len(b) < n {
		if rng.IntN(10) == 0 {
			for j := range rnd {
				rnd[j] = byte(rng.Uint32())
			}
			b = append(b, rnd[:]...)
			continue
		}
		b = append(b, vocabulary[rng.IntN(len(vocabulary))]...)
		b = append(b, ' ')
	}
	return b[:n]
}

// startRegistry runs docker-registry on a free loopback port and returns
// its host:port.
func startRegistry(ctx context.Context, dir string) (string, func(), error) {
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		return "", nil, fmt.Errorf("%s missing: apt-get install docker-registry", bin)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	cfg := conf.Distribution(filepath.Join(dir, "storage"), addr, "")
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "serve", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
	}
	if err := waitFor(ctx, func() bool {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}); err != nil {
		stop()
		b, _ := os.ReadFile(logf.Name())
		return "", nil, fmt.Errorf("docker-registry did not start: %w\n%s", err, b)
	}
	return addr, stop, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitFor(ctx context.Context, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

type containerd struct {
	sock        string
	snapshotter string
	stop        func() (daemonStats, error)
}

// startContainerd starts a containerd private to one run (own root, state
// and socket; CRI disabled), so no content or snapshot survives from an
// earlier run.
func startContainerd(ctx context.Context, dir string) (*containerd, error) {
	// Unix socket paths are limited to 108 bytes.
	short, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		return nil, err
	}
	d := &containerd{sock: filepath.Join(short, "sock")}
	cfg := conf.Containerd(filepath.Join(dir, "root"), filepath.Join(short, "state"), d.sock)
	path := filepath.Join(short, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/usr/bin/containerd", "--config", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d.stop = func() (daemonStats, error) {
		st := daemonStats{rssMiB: vmHWM(cmd.Process.Pid), cpu: cpuSeconds(cmd.Process.Pid)}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
		return st, os.RemoveAll(short)
	}
	if err := waitFor(ctx, func() bool {
		c, err := net.Dial("unix", d.sock)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}); err != nil {
		_, _ = d.stop()
		return nil, fmt.Errorf("containerd did not start: %w", err)
	}
	d.snapshotter = "native"
	out, err := exec.Command("ctr", "--address", d.sock, "plugins", "ls").Output()
	if err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "io.containerd.snapshotter.v1" && f[1] == "overlayfs" && f[len(f)-1] == "ok" {
				d.snapshotter = "overlayfs"
			}
		}
	}
	return d, nil
}

type daemonStats struct {
	rssMiB float64 // peak resident set
	cpu    float64 // user + system seconds
}

// cpuSeconds returns the user and system time pid has used, from
// /proc/PID/stat in clock ticks of (on Linux, always) 1/100 s.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields count from after its ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// vmHWM returns pid's peak resident set in MiB, 0 if unknown.
func vmHWM(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
