package testbed

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// faultPrefix and faultSubnet keep the fault suite's beds apart from
// TestRollout's and the benchmarks'.
const faultPrefix = "shoalft-"

var faultSubnet = netip.MustParsePrefix("10.214.0.0/16")

// TestFaults runs the fault suite at small scale: five hosts, a 24 MiB
// image, 10 MB/s links, every fault on a bed of its own. Each fault's own
// checks (survivors finish with the right bytes, no stored blob is corrupt,
// the fault struck mid-rollout, and what the fault itself must show) fail
// the subtest; times and origin copies are logged in the table, not
// asserted.
func TestFaults(t *testing.T) {
	requireBed(t)
	registry := DefaultConfig().RegistryBin
	if _, err := os.Stat(registry); err != nil {
		skipOrFatal(t, "%s missing: %v", registry, err)
	}
	cfg := DefaultConfig()
	cfg.Prefix, cfg.Subnet = faultPrefix, faultSubnet
	cfg.Hosts = 5
	cfg.HostUpload, cfg.HostDownload = 10*MBps, 10*MBps
	cfg.OriginRate, cfg.TrackerRate = 10*MBps, 10*MBps
	cfg.CraneBin = tool(t, "crane")
	cfg.ShoalBin = shoalBinary(t)

	sc := DefaultFaultScenario()
	sc.ImageSize, sc.Layers = 24<<20, 3
	sc.SampleInterval = 100 * time.Millisecond
	sc.PullTimeout = 45 * time.Second
	sc.LiarBin = liarBinary(t)

	work := t.TempDir()
	img, err := GenerateImage(filepath.Join(work, "image"), sc.ImageSize, sc.Layers, sc.Seed)
	if err != nil {
		t.Fatal(err)
	}
	rep := NewFaultReport(cfg, img, sc.Layers)
	for _, f := range AllFaults {
		t.Run(string(f), func(t *testing.T) {
			var logBuf syncBuffer
			log := slog.New(slog.NewTextHandler(&logBuf, nil))
			fcfg := cfg
			fcfg.WorkDir = filepath.Join(work, string(f))
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			t0 := time.Now()
			res, err := RunFault(ctx, fcfg, sc, img, f, log)
			defer func() {
				if t.Failed() {
					t.Logf("testbed log:\n%s", logBuf.String())
					dumpLogs(t, filepath.Join(fcfg.WorkDir, "logs"))
				}
			}()
			if err != nil {
				t.Fatal(err)
			}
			rep.Results = append(rep.Results, res)
			t.Logf("%s: %d/%d done, p50 %.2f s, max %.2f s, origin %.2f copies, %d stored blobs verified, %.1f s in all",
				f, res.Completed, res.Required, res.P50, res.Max, res.OriginEgressCopies, res.StoreBlobs, time.Since(t0).Seconds())
			for _, n := range res.Notes {
				t.Logf("note: %s", n)
			}
			for _, p := range res.Problems {
				t.Error(p)
			}
			if res.StoreBlobs == 0 {
				t.Error("no stored blob was checked")
			}
		})
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("fault table:\n%s", table.String())
	left, err := listNS(context.Background(), faultPrefix)
	if err != nil || len(left) > 0 {
		t.Fatalf("after the suite: namespaces %v, %v", left, err)
	}
}

// liarBinary is $LIAR_BIN, or a fresh build of cmd/liar.
func liarBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LIAR_BIN"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "liar")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/shoal-dev/shoal/deploy/testbed/cmd/liar")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build liar: %v\n%s", err, out)
	}
	return bin
}
