package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// The benchmarks compare pulls through a real agent with pulls straight
// from the origin, with the same client (crane) and the same image in the
// same run. They report numbers and assert none; run them with
//
//	make bench-agent                        # or:
//	go test -run '^$' -bench . -benchtime 3x ./deploy/e2e
//
// SHOAL_BENCH_IMAGE_MB sets the image size (5 layers; default 40).

const benchLayers = 5

func benchImageBytes(b *testing.B) int64 {
	b.Helper()
	mb := int64(40)
	if s := os.Getenv("SHOAL_BENCH_IMAGE_MB"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < benchLayers {
			b.Fatalf("SHOAL_BENCH_IMAGE_MB=%q: want a whole number of MiB, at least %d", s, benchLayers)
		}
		mb = n
	}
	return mb << 20
}

// benchOrigin starts an origin holding a 5-layer image of the benchmark
// size and returns it with the image's reference and bytes.
func benchOrigin(b *testing.B, opts agenttest.DistributionOptions) (*agenttest.Origin, v1.Image, string, int64) {
	b.Helper()
	total := benchImageBytes(b)
	origin := agenttest.StartDistribution(b, opts)
	img := agenttest.Image(b, agenttest.ImageOptions{Layers: benchLayers, LayerSize: total / benchLayers, Seed: 10_001})
	ref := origin.Push(b, img, "bench/app:v1")
	size, err := imageBytes(img)
	if err != nil {
		b.Fatal(err)
	}
	origin.ResetCounters()
	return origin, img, ref, size
}

// cranePull times one `crane pull` of ref into a fresh directory, removed
// afterwards so that iterations do not fill the disk.
func cranePull(b *testing.B, ref string) time.Duration {
	b.Helper()
	crane := agenttest.ToolPath(b, "crane")
	dir := filepath.Join(b.TempDir(), "pull")
	defer os.RemoveAll(dir)
	env := []string{"DOCKER_CONFIG=" + b.TempDir()}
	start := time.Now()
	out, err := agenttest.RunTool(b.Context(), env, crane, "pull", "--insecure", "--format=oci", ref, dir)
	took := time.Since(start)
	if err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	return took
}

func reportRatio(b *testing.B, agent, direct time.Duration, n int) {
	b.ReportMetric(float64(agent.Milliseconds())/float64(n), "agent-ms")
	b.ReportMetric(float64(direct.Milliseconds())/float64(n), "direct-ms")
	b.ReportMetric(agent.Seconds()/direct.Seconds(), "ratio")
}

// BenchmarkPullCold: each iteration pulls the image straight from the
// origin, then through a new agent with an empty data directory. ratio is
// agent time / direct time (target ≤ 1.05); agent-cpu-ms is the CPU time
// the agent used for its pull.
func BenchmarkPullCold(b *testing.B) {
	origin, _, ref, size := benchOrigin(b, agenttest.DistributionOptions{})
	var agentTotal, directTotal, cpuTotal time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		directTotal += cranePull(b, ref)
		b.StopTimer()
		agent := startAgent(b, origin)
		cpuBefore, err := agent.CPU()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		agentTotal += cranePull(b, via(agent, ref))
		b.StopTimer()
		cpuAfter, err := agent.CPU()
		if err != nil {
			b.Fatal(err)
		}
		cpuTotal += cpuAfter - cpuBefore
		if err := agent.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.SetBytes(size)
	reportRatio(b, agentTotal, directTotal, b.N)
	// On a busy machine the agent's CPU time explains a ratio above 1.
	b.ReportMetric(float64(cpuTotal.Milliseconds())/float64(b.N), "agent-cpu-ms")
}

// BenchmarkPullWarm: the agent holds the whole image; each iteration pulls
// it straight from the origin, then from the agent. ratio is agent time /
// direct time (target ≤ 1: the agent serves from its store on loopback).
func BenchmarkPullWarm(b *testing.B) {
	origin, _, ref, size := benchOrigin(b, agenttest.DistributionOptions{})
	agent := startAgent(b, origin)
	cranePull(b, via(agent, ref))
	var agentTotal, directTotal time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		directTotal += cranePull(b, ref)
		agentTotal += cranePull(b, via(agent, ref))
	}
	b.SetBytes(size)
	reportRatio(b, agentTotal, directTotal, b.N)
}

// BenchmarkTTFB: the origin sends 32 MiB/s; each iteration GETs one layer
// through a new agent and reports when the first body byte arrived
// (ttfb-ms) against when the last did (total-ms). An agent that streams
// while it downloads answers in milliseconds; one that waits for the whole
// blob answers near total-ms.
func BenchmarkTTFB(b *testing.B) {
	const rate = 32 << 20
	origin, img, _, _ := benchOrigin(b, agenttest.DistributionOptions{Rate: rate})
	layers, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		b.Fatal(err)
	}
	var ttfb, total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		agent := startAgent(b, origin)
		b.StartTimer()
		first, all := timeBlob(b, agent.URL+"/v2/bench/app/blobs/"+layer.String())
		ttfb += first
		total += all
		b.StopTimer()
		if err := agent.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(ttfb.Microseconds())/1000/float64(b.N), "ttfb-ms")
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "total-ms")
	b.ReportMetric(ttfb.Seconds()/total.Seconds(), "ttfb/total")
}

// timeBlob GETs url and returns the time to the first body byte and to
// the end of the body.
func timeBlob(b *testing.B, url string) (first, all time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	start := time.Now()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %s", url, resp.Status)
	}
	var one [1]byte
	if _, err := io.ReadFull(resp.Body, one[:]); err != nil {
		b.Fatal(err)
	}
	first = time.Since(start)
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		b.Fatal(err)
	}
	return first, time.Since(start)
}

// BenchmarkAgentMemory reports the agent's resident memory idle (after
// start and one manifest request; target ≤ 40 MB) and its peak while
// serving 10 concurrent cold pulls of the image (target ≤ 150 MB).
func BenchmarkAgentMemory(b *testing.B) {
	const pulls = 10
	origin, _, ref, _ := benchOrigin(b, agenttest.DistributionOptions{})
	crane := agenttest.ToolPath(b, "crane")
	var idle, peak int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		agent := startAgent(b, origin)
		b.StartTimer()
		if status, body := do(b, http.MethodGet, agent.URL+"/v2/bench/app/manifests/v1", ""); status != http.StatusOK {
			b.Fatalf("manifest: %d %s", status, body)
		}
		m, err := agent.Memory()
		if err != nil {
			b.Fatal(err)
		}
		idle = max(idle, m.RSS)
		var wg sync.WaitGroup
		for range pulls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cranePullNoFatal(b, crane, via(agent, ref))
			}()
		}
		wg.Wait()
		if m, err = agent.Memory(); err != nil {
			b.Fatal(err)
		}
		peak = max(peak, m.Peak)
		b.StopTimer()
		if err := agent.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(idle)/1e6, "idle-MB")
	b.ReportMetric(float64(peak)/1e6, "busy-peak-MB")
}

// cranePullNoFatal is cranePull for goroutines, which must not call
// b.Fatal: a failure is reported with b.Error.
func cranePullNoFatal(b *testing.B, crane, ref string) {
	dir, err := os.MkdirTemp("", "bench-pull-")
	if err != nil {
		b.Error(err)
		return
	}
	defer os.RemoveAll(dir)
	out, err := agenttest.RunTool(b.Context(), []string{"DOCKER_CONFIG=" + dir}, crane,
		"pull", "--insecure", "--format=oci", ref, filepath.Join(dir, "pull"))
	if err != nil {
		b.Error(fmt.Errorf("%w\n%s", err, out))
	}
}
