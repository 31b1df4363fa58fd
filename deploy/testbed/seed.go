package testbed

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Metrics every shoal node (agents and the tracker's seeder) exposes about
// its upstream registry: blob bytes received, and requests by kind.
const (
	upstreamBytesMetric    = "shoal_upstream_bytes_total"
	upstreamRequestsMetric = "shoal_upstream_requests_total"
)

// seedTokenFile writes the bed's seed token where the tracker's
// --seed-token-file and shoal seed's --token-file read it.
func (b *Bed) seedTokenFile() (string, error) {
	p := filepath.Join(b.cfg.WorkDir, "seed-token")
	if err := os.WriteFile(p, []byte(b.seedToken+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	return p, nil
}

// TrackerURL is where agents and shoal seed reach the tracker.
func (b *Bed) TrackerURL() string {
	return fmt.Sprintf("http://%s:%d", b.Tracker.IP, trackerPort)
}

// Seed runs `shoal seed refs... --wait` with the seed token, as a CI job
// would after pushing, from the tracker's namespace (its requests then
// cross no capped link and are not counted as origin egress), and returns
// its output once it exited 0. refs name images on the origin (as Push
// returns them).
func (b *Bed) Seed(ctx context.Context, timeout time.Duration, refs ...string) (string, error) {
	tok, err := b.seedTokenFile()
	if err != nil {
		return "", err
	}
	args := append([]string{"netns", "exec", b.Tracker.NS, b.cfg.ShoalBin, "seed"}, refs...)
	args = append(args, "--tracker", b.TrackerURL(), "--token-file", tok, "--wait", "--timeout", timeout.String())
	ctx, cancel := context.WithTimeout(ctx, timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("testbed: shoal seed: %w: %s", err, finalLine(out.String()))
	}
	return out.String(), nil
}

// Upstream is what shoal nodes took from their upstream registry: blob
// bytes and blob GETs.
type Upstream struct {
	BlobBytes int64 `json:"blob_bytes"`
	BlobGets  int64 `json:"blob_gets"`
}

func (u Upstream) sub(o Upstream) Upstream {
	return Upstream{BlobBytes: u.BlobBytes - o.BlobBytes, BlobGets: u.BlobGets - o.BlobGets}
}

// parseUpstream reads the upstream counters from Prometheus text
// exposition: bytes, and the requests of kind "blob" over every code.
// Absent counters are zero.
func parseUpstream(text string) (Upstream, error) {
	var u Upstream
	for lineNo, line := range strings.Split(text, "\n") {
		name, labels, value, ok := splitSample(line)
		if !ok || (name != upstreamBytesMetric && name != upstreamRequestsMetric) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || v > math.MaxInt64/2 {
			return Upstream{}, fmt.Errorf("%w: metrics line %d: value %q", ErrParse, lineNo+1, value)
		}
		switch {
		case name == upstreamBytesMetric:
			u.BlobBytes += int64(v)
		case labelValue(labels, "kind") == "blob":
			u.BlobGets += int64(v)
		}
	}
	return u, nil
}

// splitSample cuts a sample line into its metric name, labels (without
// braces) and value; comments and blank lines are not samples.
func splitSample(line string) (name, labels, value string, ok bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", "", "", false
	}
	rest := line
	if i := strings.IndexByte(line, '{'); i >= 0 {
		end := strings.LastIndexByte(line, '}')
		if end < i {
			return "", "", "", false
		}
		name, labels, rest = line[:i], line[i+1:end], line[end+1:]
	} else {
		var found bool
		if name, rest, found = strings.Cut(line, " "); !found {
			return "", "", "", false
		}
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return "", "", "", false
	}
	return name, labels, f[0], true
}

// UpstreamTaken sums the upstream counters of the tracker's seeder and of
// every agent that is running. It fails if one of them does not answer:
// the sum would then be short.
func (b *Bed) UpstreamTaken(ctx context.Context) (Upstream, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	type target struct {
		h   Host
		url string
	}
	targets := []target{{b.Tracker, b.TrackerURL() + "/metrics"}}
	for i, h := range b.Hosts {
		if b.agents != nil && b.agents[i] != nil && !b.agents[i].exited() {
			targets = append(targets, target{h, "http://" + agentAddr + "/metrics"})
		}
	}
	sums := make([]Upstream, len(targets))
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, tg := range targets {
		wg.Go(func() {
			body, err := b.get(ctx, tg.h, tg.url)
			if err == nil {
				sums[i], err = parseUpstream(string(body))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	var total Upstream
	for i := range targets {
		if errs[i] != nil {
			return Upstream{}, fmt.Errorf("testbed: upstream counters of %s: %w", targets[i].h.Name, errs[i])
		}
		total.BlobBytes += sums[i].BlobBytes
		total.BlobGets += sums[i].BlobGets
	}
	return total, nil
}

// finalLine is s's last non-empty line, cut as firstLine does.
func finalLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return firstLine(lines[len(lines)-1])
}
