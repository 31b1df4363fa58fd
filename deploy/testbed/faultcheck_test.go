package testbed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParseFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []Fault
		ok   bool
	}{
		{"all", AllFaults, true},
		{"none", []Fault{FaultNone}, true},
		{"none, kill-tracker", []Fault{FaultNone, FaultKillTracker}, true},
		{"kill-everything", nil, false},
		{"", nil, false},
	} {
		got, err := ParseFaults(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("ParseFaults(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestFaultScenarioValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultFaultScenario().Validate(); err != nil {
		t.Fatalf("default: %v", err)
	}
	for name, mutate := range map[string]func(*FaultScenario){
		"no layers":         func(s *FaultScenario) { s.Layers = 0 },
		"layers too small":  func(s *FaultScenario) { s.ImageSize = 1 << 20; s.Layers = 2 },
		"kill all":          func(s *FaultScenario) { s.KillFraction = 1 },
		"slow by one":       func(s *FaultScenario) { s.SlowFactor = 1 },
		"disk as big":       func(s *FaultScenario) { s.DiskFraction = 1 },
		"no pull timeout":   func(s *FaultScenario) { s.PullTimeout = 0 },
		"bad repository":    func(s *FaultScenario) { s.Repo = "Bad/Repo" },
		"sampling too fast": func(s *FaultScenario) { s.SampleInterval = 0 },
	} {
		s := DefaultFaultScenario()
		mutate(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, s)
		}
	}
}

// TestCheckStore: a blob that hashes to its name passes, one that does not
// and a name that is not a digest are both reported, and a missing store is
// empty.
func TestCheckStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	good := []byte("good blob")
	sum := sha256.Sum256(good)
	write(hex.EncodeToString(sum[:]), good)
	bad := sha256.Sum256([]byte("what it should have been"))
	write(hex.EncodeToString(bad[:]), []byte("what it is"))
	write("not-a-digest", nil)
	n, corrupt, err := checkStore(context.Background(), dir)
	if err != nil || n != 1 {
		t.Fatalf("checkStore = %d, %v, %v; want 1 good", n, corrupt, err)
	}
	slices.Sort(corrupt)
	if want := []string{hex.EncodeToString(bad[:]), "not-a-digest"}; !slices.Equal(corrupt, want) {
		t.Errorf("corrupt = %v, want %v", corrupt, want)
	}
	if n, corrupt, err := checkStore(context.Background(), filepath.Join(dir, "missing")); n != 0 || corrupt != nil || err != nil {
		t.Errorf("missing store = %d, %v, %v", n, corrupt, err)
	}
}

// TestDurableBytes reads a committed layer whole and a partial one's
// journal records, ignores the config and a torn last record.
func TestDurableBytes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	for _, d := range []string{"blobs/sha256", "ingest"} {
		if err := os.MkdirAll(filepath.Join(store, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	desc := func(s string, size int64) ocispec.Descriptor {
		return ocispec.Descriptor{Digest: digest.FromString(s), Size: size}
	}
	img := Image{Blobs: []ocispec.Descriptor{desc("config", 10), desc("committed", 1000), desc("partial", 5000), desc("absent", 7000)}}
	for _, i := range []int{0, 1} {
		if err := os.WriteFile(filepath.Join(store, "blobs/sha256", img.Blobs[i].Digest.Encoded()), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j := make([]byte, 16) // the header's content is not read
	for _, r := range [][2]uint64{{0, 1024}, {2048, 512}} {
		j = binary.BigEndian.AppendUint64(j, r[0])
		j = binary.BigEndian.AppendUint64(j, r[1])
		j = append(j, 0, 0, 0, 0)
	}
	j = append(j, 1, 2, 3) // torn
	if err := os.WriteFile(filepath.Join(store, "ingest", img.Blobs[2].Digest.Encoded()+".journal"), j, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := durableBytes(dir, img)
	if want := int64(1000 + 1024 + 512); err != nil || got != want {
		t.Errorf("durableBytes = %d, %v; want %d", got, err, want)
	}
}

func TestCounterSum(t *testing.T) {
	t.Parallel()
	r := &faultRun{metrics: []string{
		"# HELP shoal_swarm_pieces_total x\nshoal_swarm_pieces_total{result=\"rejected\"} 3\nshoal_swarm_pieces_total{result=\"verified\"} 40\nshoal_swarm_peers_dropped_total 2\n",
		"", // an agent that did not answer
		"shoal_swarm_pieces_total{result=\"rejected\"} 1.5e1\nshoal_swarm_peers_dropped_total_other 9\n",
	}}
	if got := r.counterSum("shoal_swarm_pieces_total", "result", "rejected"); got != 18 {
		t.Errorf("rejected = %v, want 18", got)
	}
	if got := r.counterSum("shoal_swarm_peers_dropped_total", "", ""); got != 2 {
		t.Errorf("dropped = %v, want 2", got)
	}
}

func TestLastLine(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"ip netns exec h crane pull x /d: exit status 1: Error: unexpected EOF": "exit status 1: Error: unexpected EOF",
		"retrying\nip netns exec h crane: signal: killed":                       "signal: killed",
		"plain": "plain",
	} {
		if got := lastLine(in); got != want {
			t.Errorf("lastLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFaultTable writes a report with every kind of row.
func TestFaultTable(t *testing.T) {
	t.Parallel()
	rep := &FaultReport{Hosts: 3, ImageBytes: 3 << 20, Layers: 1, HostRate: MBps, OriginRate: MBps, TrackerRate: MBps, LimitSeconds: 3.1}
	rep.Results = []*FaultResult{
		{Fault: FaultNone, InjectedSeconds: -1, Required: 3, Completed: 3, P50: 4, Max: 5, MaxUntouched: 5, OriginEgressCopies: 1},
		{Fault: FaultKillTracker, Injected: "tracker+seeder SIGKILLed", InjectedSeconds: 1.5, Required: 3, Completed: 3, Max: 10, OriginEgressCopies: 2.5,
			Notes: []string{"origin fallbacks: 3"}},
		{Fault: FaultDiskFull, Injected: "tmpfs", InjectedSeconds: 0, Required: 2, Completed: 2, Max: 5, MayFail: []string{"h003"},
			Problems: []string{"h003 kept fetching\nsecond line"}},
		{Fault: FaultSlowPeer, InjectedSeconds: -1, Problems: []string{"the fault was never injected"}},
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"2.00x", "start", "never", "1 problems", "! h003 kept fetching", "may fail: h003", "- origin fallbacks: 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "second line") {
		t.Errorf("a problem's second line is in the table:\n%s", out)
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil || !strings.Contains(js.String(), `"fault": "kill-tracker"`) {
		t.Errorf("WriteJSON: %v\n%s", err, js.String())
	}
}
