package agenttest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BuildShoal compiles the shoal command into dir and returns the binary's
// path. Call it once from TestMain: a build per test would cost seconds.
// It must run inside the module (any package directory of it will do).
func BuildShoal(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "shoal")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/shoal-dev/shoal/cmd/shoal")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build shoal: %w\n%s", err, out)
	}
	return bin, nil
}

// Shoal is a running `shoal agent` or `shoal tracker` process.
type Shoal struct {
	// Addr is host:port of its HTTP API (registry, tracker, /metrics).
	Addr string
	// URL is "http://" + Addr.
	URL string
	// DataDir is its --data-dir, kept across Restart.
	DataDir string

	t    testing.TB
	bin  string
	args []string // as started, with --listen, --data-dir and --p2p-listen
	proc *Process
}

// StartShoal runs bin (see BuildShoal) with args, e.g. "agent",
// "--upstream", origin.URL. It supplies what the caller leaves out: --listen
// on a free loopback port, --data-dir in a new temporary directory,
// --p2p-listen on an ephemeral loopback port, and waits for /healthz. The
// process is stopped with SIGTERM in t.Cleanup and its log printed if the
// test failed.
func StartShoal(t testing.TB, bin string, args ...string) *Shoal {
	t.Helper()
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		t.Fatalf("agenttest: StartShoal needs a command (agent, tracker) first, got %q", args)
	}
	s := &Shoal{t: t, bin: bin, args: slices.Clone(args)}
	if v, ok := flagValue(args, "data-dir"); ok {
		s.DataDir = v
	} else {
		s.DataDir = filepath.Join(t.TempDir(), "data")
		s.args = append(s.args, "--data-dir", s.DataDir)
	}
	if !hasFlag(args, "p2p-listen") {
		s.args = append(s.args, "--p2p-listen", "/ip4/127.0.0.1/tcp/0")
	}
	if v, ok := flagValue(args, "listen"); ok {
		if err := s.start(v); err != nil {
			t.Fatalf("agenttest: %v", err)
		}
		return s
	}
	// A port from FreePort may be taken before shoal binds it: retry.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.start(fmt.Sprintf("127.0.0.1:%d", FreePort(t))); err == nil {
			s.args = append(s.args, "--listen", s.Addr)
			return s
		}
	}
	t.Fatalf("agenttest: %v", err)
	return nil
}

// start runs the binary listening on addr and waits until it answers.
func (s *Shoal) start(addr string) error {
	args := s.args
	if !hasFlag(args, "listen") {
		args = append(slices.Clone(args), "--listen", addr)
	}
	scheme := "http://"
	if hasFlag(args, "tls-cert") {
		scheme = "https://" // a tracker serving TLS
	}
	proc := StartProcess(s.t, ProcessOptions{}, s.bin, args...)
	if err := waitHTTP(s.t.Context(), proc, scheme+addr+"/healthz"); err != nil {
		_ = proc.Kill()
		return fmt.Errorf("shoal %s: %w\n%s", args[0], err, proc.Logs())
	}
	s.proc, s.Addr, s.URL = proc, addr, scheme+addr
	return nil
}

// Pid returns the process ID.
func (s *Shoal) Pid() int { return s.proc.Pid() }

// Logs returns the tail of the process's output.
func (s *Shoal) Logs() string { return s.proc.Logs() }

// Stop stops the process with SIGTERM (SIGKILL after a grace period) and
// returns how it exited; a SIGTERM exit is clean.
func (s *Shoal) Stop() error { return s.proc.Stop() }

// Kill ends the process with SIGKILL, as a crash or the OOM killer would,
// and waits for it.
func (s *Shoal) Kill() error { return s.proc.Kill() }

// Restart kills the process if it still runs and starts it again with the
// same arguments: the same port and the same data directory.
func (s *Shoal) Restart(t testing.TB) {
	t.Helper()
	_ = s.proc.Kill()
	s.t = t
	if err := s.start(s.Addr); err != nil {
		t.Fatalf("agenttest: restart: %v", err)
	}
}

// Metric fetches /metrics and returns the sum of the samples of the metric
// called name whose labels include every "key=value" in labels. A metric
// that is absent sums to 0.
func (s *Shoal) Metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/metrics", nil)
	if err != nil {
		t.Fatalf("agenttest: metrics: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("agenttest: metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("agenttest: metrics: %s", resp.Status)
	}
	v, err := sumMetric(resp.Body, name, labels)
	if err != nil {
		t.Fatalf("agenttest: metrics: %v", err)
	}
	return v
}

// sumMetric reads the Prometheus text format and adds up the samples of
// name that carry every label pair in want ("key=value").
func sumMetric(r io.Reader, name string, want []string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var sum float64
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		series, value, ok := cutLast(line, ' ')
		if !ok {
			return 0, fmt.Errorf("bad sample line %q", line)
		}
		metric, labels, _ := strings.Cut(series, "{")
		if metric != name || !hasLabels(strings.TrimSuffix(labels, "}"), want) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, fmt.Errorf("sample %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

func cutLast(s string, sep byte) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// hasLabels checks `k="v",k2="v2"` against "k=v" pairs. Label values in
// our metrics hold no commas or quotes, so a plain split is exact.
func hasLabels(labels string, want []string) bool {
	have := map[string]string{}
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			have[k] = strings.Trim(v, `"`)
		}
	}
	for _, w := range want {
		k, v, _ := strings.Cut(w, "=")
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Memory is a process's resident set size, in bytes, from /proc.
type Memory struct {
	RSS  int64 // VmRSS: resident now
	Peak int64 // VmHWM: the highest resident size so far
}

// Memory reads the process's VmRSS and VmHWM from /proc/PID/status.
func (s *Shoal) Memory() (Memory, error) { return ProcessMemory(s.Pid()) }

// ProcessMemory reads VmRSS and VmHWM from /proc/pid/status.
func ProcessMemory(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	return parseStatus(f)
}

func parseStatus(r io.Reader) (Memory, error) {
	var m Memory
	var found int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return Memory{}, fmt.Errorf("status line %q: want <n> kB", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("status line %q: %w", sc.Text(), err)
		}
		if key == "VmRSS" {
			m.RSS = kb << 10
		} else {
			m.Peak = kb << 10
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return Memory{}, err
	}
	if found != 2 {
		return Memory{}, errors.New("status lacks VmRSS or VmHWM (a kernel thread or an exited process?)")
	}
	return m, nil
}

// CPU returns the CPU time (user and system) the process has used so far.
func (s *Shoal) CPU() (time.Duration, error) { return ProcessCPU(s.Pid()) }

// clockTick is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// ProcessCPU reads utime+stime from /proc/pid/stat.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStat(string(b))
}

// parseStat reads fields 14 and 15 (utime, stime) of a /proc/PID/stat
// line. The command name, field 2, may hold spaces and parentheses, so
// fields are counted from its closing parenthesis.
func parseStat(line string) (time.Duration, error) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(line[i+1:]) // f[0] is field 3
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("stat: bad time %q", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// hasFlag reports whether args set --name (as "--name v" or "--name=v").
func hasFlag(args []string, name string) bool {
	_, ok := flagValue(args, name)
	return ok
}

func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// Kill ends the process group with SIGKILL and waits for it; it is safe
// to call after the process has exited.
func (p *Process) Kill() error {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	return p.waitErr
}
