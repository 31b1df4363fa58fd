package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// ciPrefix keeps this test's namespaces apart from the benchmark's.
const ciPrefix = "shoalci-"

// skipOrFatal skips, or fails under CI=true (agenttest.InCI), where
// everything the test needs must be installed and allowed.
func skipOrFatal(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if agenttest.InCI() {
		t.Fatalf("%s (CI=true: required; run deploy/deps.sh as root)", msg)
	}
	t.Skipf("%s (run deploy/deps.sh as root)", msg)
}

// requireBed checks the machine can run a bed. Without root, network
// namespaces or iproute2 it skips, except under CI=true where it fails:
// CI must run the bed.
func requireBed(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test in network namespaces; skipped with -short")
	}
	if err := Probe(t.Context(), ciPrefix); err != nil {
		if errors.Is(err, ErrUnavailable) {
			skipOrFatal(t, "cannot run here: %v", err)
		}
		skipOrFatal(t, "%v", err)
	}
}

// tool finds a program in PATH, then where `go install` puts it.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	skipOrFatal(t, "%s not found", name)
	return ""
}

// shoalBinary is $SHOAL_BIN, or a fresh build of cmd/shoal (without the race
// detector: a dozen processes share two cores).
func shoalBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SHOAL_BIN"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "shoal")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/shoal-dev/shoal/cmd/shoal")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build shoal: %v\n%s", err, out)
	}
	return bin
}

// TestRollout runs the benchmark's scenario at small scale and checks only
// correctness: every host gets every blob with the right digest, the origin
// sends fewer than N copies, and a peer killed halfway through does not
// stop the others. It also checks the bed removes leftovers at start and
// everything it made at the end.
func TestRollout(t *testing.T) {
	requireBed(t)
	registry := DefaultConfig().RegistryBin
	if _, err := os.Stat(registry); err != nil {
		skipOrFatal(t, "%s missing: %v", registry, err)
	}
	cfg := DefaultConfig()
	cfg.Prefix = ciPrefix
	cfg.Hosts = 4
	cfg.HostUpload, cfg.HostDownload = 16*MBps, 16*MBps
	cfg.OriginRate, cfg.TrackerRate = 16*MBps, 16*MBps
	cfg.WorkDir = t.TempDir()
	cfg.CraneBin = tool(t, "crane")
	cfg.ShoalBin = shoalBinary(t)

	// A leftover of an earlier run, with a process still inside.
	ctx := t.Context()
	leftover := ciPrefix + "h001"
	_ = deleteNS(ctx, leftover)
	if err := run(ctx, "ip", "netns", "add", leftover); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("ip", "netns", "exec", leftover, "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	sleeperDone := make(chan struct{})
	go func() { _ = sleeper.Wait(); close(sleeperDone) }()

	var logBuf syncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	bed, err := Start(ctx, cfg, WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = bed.Close()
		}
		if t.Failed() {
			t.Logf("testbed log:\n%s", logBuf.String())
			dumpLogs(t, filepath.Join(cfg.WorkDir, "logs"))
		}
	})
	select {
	case <-sleeperDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover namespace's process survived Start")
	}

	sc := DefaultScenario()
	sc.ImageSize, sc.Layers = 24<<20, 3
	sc.SampleInterval = 100 * time.Millisecond
	sc.PullTimeout = 90 * time.Second
	const victim = 1
	var (
		killed        bool
		othersPending int
	)
	sc.OnSample = func(s Sample) {
		// Halfway for the victim is a quarter of the image received: its
		// pull has started and so have everyone else's.
		if killed || s.Done[victim] || s.Received[victim].Total() < sc.ImageSize/4 {
			return
		}
		bed.KillAgent(victim)
		killed = true
		for i, done := range s.Done {
			if i != victim && !done {
				othersPending++
			}
		}
		log.Info("killed a peer", "host", bed.Hosts[victim].Name, "received", s.Received[victim].Total(), "others_pending", othersPending)
	}
	rep, err := Run(ctx, bed, sc, log)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", table.String())

	if !killed {
		t.Fatalf("the victim finished before it got a quarter of the image; nothing was killed")
	}
	if othersPending == 0 {
		t.Logf("note: every other host had finished when the victim was killed")
	}
	for i, h := range rep.P2P.Hosts {
		if i != victim && h.Err != "" {
			t.Errorf("p2p: %s: %s", h.Host, h.Err)
		}
	}
	if n := int64(cfg.Hosts); rep.P2P.OriginEgressBytes >= n*rep.ImageBytes {
		t.Errorf("p2p: the origin sent %d bytes, %v copies of the image: want fewer than %d", rep.P2P.OriginEgressBytes, rep.P2P.OriginEgressCopies, n)
	}
	for _, h := range rep.Baseline.Hosts {
		if h.Err != "" {
			t.Errorf("baseline: %s: %s", h.Host, h.Err)
		}
	}
	var svg bytes.Buffer
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}

	closed = true
	if err := bed.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	left, err := listNS(context.Background(), ciPrefix)
	if err != nil || len(left) > 0 {
		t.Fatalf("after Close: namespaces %v, %v", left, err)
	}
}

func dumpLogs(t *testing.T, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || len(b) == 0 {
			continue
		}
		if len(b) > 8<<10 {
			b = append([]byte("...\n"), b[len(b)-8<<10:]...)
		}
		t.Logf("%s:\n%s", e.Name(), b)
	}
}

// syncBuffer is a bytes.Buffer the logger may write from any goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
