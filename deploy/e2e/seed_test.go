package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/shoal-dev/shoal/agent/agenttest"
	"github.com/shoal-dev/shoal/tracker"
)

const (
	seedClusterToken = "seed-e2e-cluster-token"
	seedSeedToken    = "seed-e2e-seed-token"
)

// tokenFile writes tok into a file of its own and returns the path.
func tokenFile(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startSeedTracker runs a tracker with a cluster and a seed token in front
// of origin.
func startSeedTracker(t *testing.T, origin *agenttest.Origin, extra ...string) *agenttest.Shoal {
	t.Helper()
	args := []string{"tracker", "--token-file", tokenFile(t, seedClusterToken), "--seed-token-file", tokenFile(t, seedSeedToken),
		"--upstream", origin.URL}
	return agenttest.StartShoal(t, shoalBin, append(args, extra...)...)
}

// runSeed runs `shoal seed` to its end.
func runSeed(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	return agenttest.RunTool(ctx, nil, shoalBin, append([]string{"seed"}, args...)...)
}

// blobsOf lists an image's config and layers.
func blobsOf(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := []v1.Hash{m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// holds reports whether a node's store has committed blob h.
func holds(n *agenttest.Shoal, h v1.Hash) bool {
	_, err := os.Stat(filepath.Join(n.DataDir, "store", "blobs", h.Algorithm, h.Hex))
	return err == nil
}

// pullAll pulls ref through every node at the same moment with crane and
// checks every blob.
func pullAll(t *testing.T, nodes []*agenttest.Shoal, ref string, img v1.Image) {
	t.Helper()
	crane := agenttest.ToolPath(t, "crane")
	dirs := make([]string, len(nodes))
	outs := make([]string, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		dirs[i] = filepath.Join(t.TempDir(), "pull")
		wg.Go(func() {
			outs[i], errs[i] = agenttest.RunTool(t.Context(), []string{"DOCKER_CONFIG=" + t.TempDir()},
				crane, "pull", "--insecure", "--format=oci", via(n, ref), dirs[i])
		})
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("pull through agent %d: %v\n%s", i, errs[i], outs[i])
		}
		agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, dirs[i]), img)
	}
}

// TestSeedThenRollout: after `shoal seed IMAGE --wait` exits 0, the seeder
// holds every blob, fetched from the origin once each, and three agents
// pulling the image at the same moment take no blob from the origin.
func TestSeedThenRollout(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 3, LayerSize: 3 << 20, Seed: 1401})
	ref := origin.Push(t, img, "seed/app:v1")
	origin.ResetCounters()
	tr := startSeedTracker(t, origin)
	nodes := make([]*agenttest.Shoal, 3)
	for i := range nodes {
		nodes[i] = startAgent(t, origin, "--tracker", tr.URL, "--tracker-token", seedClusterToken)
	}

	// Without --wait, seed returns once the image resolved (or the job is
	// done); with it, the same request follows the same job to its end.
	seedTok := tokenFile(t, seedSeedToken)
	start := time.Now()
	out, err := runSeed(t, ref, "--tracker", tr.URL, "--token-file", seedTok)
	if err != nil || !strings.Contains(out, "seed job ") {
		t.Fatalf("shoal seed without --wait: %v\n%s", err, out)
	}
	jobID := strings.Fields(strings.TrimPrefix(out[strings.Index(out, "seed job "):], "seed job "))[0]
	out, err = runSeed(t, ref, "--tracker", tr.URL, "--token-file", seedTok, "--wait", "--timeout", "60s")
	if err != nil {
		t.Fatalf("shoal seed: %v\n%s", err, out)
	}
	if !strings.Contains(out, "(job "+strings.TrimSuffix(jobID, ":")+")") {
		t.Errorf("seed --wait of the same image followed another job than %s:\n%s", jobID, out)
	}
	t.Logf("shoal seed took %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	blobs := blobsOf(t, img)
	if !strings.Contains(out, fmt.Sprintf("seeded 1 images, %d blobs", len(blobs))) {
		t.Errorf("no summary line in the output:\n%s", out)
	}
	for _, h := range blobs {
		if n := len(origin.BlobGetsOf(h.String())); n != 1 {
			t.Errorf("the seeder fetched blob %s %d times from the origin, want once", h, n)
		}
		if !holds(tr, h) {
			t.Errorf("the seeder's store lacks blob %s after seed --wait", h)
		}
	}

	origin.ResetCounters()
	pullAll(t, nodes, ref, img)
	t.Logf("rollout: the origin sent %d bytes (manifests and headers), %d blob GETs", origin.BytesSent(), origin.BlobGets())
	if n := origin.BlobGets(); n != 0 {
		t.Errorf("the rollout after seed asked the origin for %d blobs, want none", n)
	}
}

// TestSeedRefusals: a missing image, a wrong token, the cluster token and
// an unreachable tracker each make shoal seed exit non-zero with a line
// saying which.
func TestSeedRefusals(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 1, LayerSize: 64 << 10, Seed: 1402})
	ref := origin.Push(t, img, "seed/ok:v1")
	tr := startSeedTracker(t, origin)
	seedTok := tokenFile(t, seedSeedToken)
	closed := fmt.Sprintf("http://127.0.0.1:%d", agenttest.FreePort(t))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing image", []string{origin.Ref("seed/missing:v1"), "--tracker", tr.URL, "--token-file", seedTok}, "no such image"},
		{"missing tag", []string{origin.Ref("seed/ok:v2"), "--tracker", tr.URL, "--token-file", seedTok, "--wait"}, "no such image"},
		{"wrong token", []string{ref, "--tracker", tr.URL, "--token-file", tokenFile(t, "not-a-token-it-knows")}, "refused the token: not a seed token"},
		{"cluster token", []string{ref, "--tracker", tr.URL, "--token-file", tokenFile(t, seedClusterToken)}, "this is a cluster token"},
		{"unreachable tracker", []string{ref, "--tracker", closed, "--token-file", seedTok}, "unreachable"},
		{"unknown registry", []string{"elsewhere.example:5000/app:v1", "--tracker", tr.URL, "--token-file", seedTok}, "not configured on the tracker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runSeed(t, tc.args...)
			if err == nil {
				t.Fatalf("shoal seed exited 0:\n%s", out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			last := lines[len(lines)-1]
			t.Logf("exit: %v; %s", err, last)
			if !strings.Contains(last, tc.want) {
				t.Errorf("last line %q does not say %q\n%s", last, tc.want, out)
			}
		})
	}
}

// TestSeedJobLostOnTrackerRestart: jobs live in the tracker's memory; a
// tracker restarted mid-job makes seed --wait report the job lost and
// exit non-zero.
func TestSeedJobLostOnTrackerRestart(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 1, LayerSize: 4 << 20, Seed: 1403})
	ref := origin.Push(t, img, "seed/slow:v1")
	origin.SetRate(256 << 10) // about 16 s for the layer: the job is still running
	tr := startSeedTracker(t, origin)
	var out string
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, err = runSeed(t, ref, "--tracker", tr.URL, "--token-file", tokenFile(t, seedSeedToken), "--wait", "--timeout", "60s")
	}()
	waitSeedJob(t, tr, func(j tracker.SeedJobStatus) bool { return j.State == tracker.JobFetching })
	tr.Restart(t)
	<-done
	if err == nil || !strings.Contains(out, "lost") {
		t.Fatalf("seed --wait across a tracker restart: %v\n%s", err, out)
	}
}

// waitSeedJob polls the tracker's status until a seed job satisfies ok.
func waitSeedJob(t *testing.T, tr *agenttest.Shoal, ok func(tracker.SeedJobStatus) bool) tracker.SeedJobStatus {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, tr.URL+"/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+seedClusterToken)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var st tracker.Status
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			for _, j := range st.SeedJobs {
				if err == nil && ok(j) {
					return j
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no seed job reached the state looked for")
	return tracker.SeedJobStatus{}
}

// TestSeedReplicas: with --replicas 2, seed --wait exits 0 once two of
// three agents hold every blob, before any pull, taken from the seeder,
// not the origin. Then, for a second image, one of the agents placed is
// killed while it preheats (the agents' downloads are capped so that
// preheating takes seconds): its share moves to the third agent, and the
// two living agents end up holding every blob.
func TestSeedReplicas(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 4, LayerSize: 1 << 20, Seed: 1404})
	ref := origin.Push(t, img, "seed/replicas:v1")
	second := agenttest.Image(t, agenttest.ImageOptions{Layers: 6, LayerSize: 1 << 20, Seed: 1406})
	secondRef := origin.Push(t, second, "seed/replicas:v2")
	origin.ResetCounters()
	tr := startSeedTracker(t, origin, "--announce-interval", "500ms")
	nodes := make([]*agenttest.Shoal, 3)
	for i := range nodes {
		nodes[i] = startAgent(t, origin, "--tracker", tr.URL, "--tracker-token", seedClusterToken, "--download-rate", fmt.Sprint(2<<20))
	}
	seedTok := tokenFile(t, seedSeedToken)
	seedArgs := func(ref string) []string {
		return []string{ref, "--tracker", tr.URL, "--token-file", seedTok, "--replicas", "2", "--wait", "--timeout", "60s"}
	}
	// An agent announces a blob whole once its last piece is verified and
	// its store commits it right after: give the commit a moment.
	count := func(img v1.Image, ns []*agenttest.Shoal) map[v1.Hash]int {
		c := map[v1.Hash]int{}
		for _, h := range blobsOf(t, img) {
			for _, n := range ns {
				if holds(n, h) {
					c[h]++
				}
			}
		}
		return c
	}
	settled := func(img v1.Image, ns []*agenttest.Shoal) map[v1.Hash]int {
		deadline := time.Now().Add(5 * time.Second)
		for {
			c := count(img, ns)
			ok := true
			for _, h := range blobsOf(t, img) {
				ok = ok && c[h] >= 2
			}
			if ok || time.Now().After(deadline) {
				return c
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	if out, err := runSeed(t, seedArgs(ref)...); err != nil {
		t.Fatalf("shoal seed --replicas 2: %v\n%s", err, out)
	}
	blobs := blobsOf(t, img)
	for _, h := range blobs {
		if n := settled(img, nodes)[h]; n < 2 {
			t.Errorf("blob %s on %d agents after seed --replicas 2, want 2", h, n)
		}
	}
	if n := origin.BlobGets(); n != len(blobs) {
		t.Errorf("the origin served %d blob GETs for %d blobs: preheating must come from the seeder", n, len(blobs))
	}

	// The second image: kill the first agent seen holding part of it.
	var out string
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, err = runSeed(t, seedArgs(secondRef)...)
	}()
	victim := -1
	for victim < 0 {
		select {
		case <-done:
			t.Fatalf("seed finished before any agent was seen preheating: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
		for i, n := range nodes {
			if c := len(count(second, []*agenttest.Shoal{n})); c > 0 {
				victim = i
				t.Logf("killing agent %d, which holds %d of the image's %d blobs", i, c, len(blobsOf(t, second)))
				break
			}
		}
	}
	_ = nodes[victim].Kill()
	<-done
	if err != nil {
		t.Fatalf("shoal seed --replicas 2 with an agent killed: %v\n%s", err, out)
	}
	alive := append(append([]*agenttest.Shoal{}, nodes[:victim]...), nodes[victim+1:]...)
	// The dead agent counts as a holder until the tracker forgets it
	// (three announce intervals): ask again once it has.
	time.Sleep(2 * time.Second)
	if out, err := runSeed(t, seedArgs(secondRef)...); err != nil {
		t.Fatalf("shoal seed --replicas 2 once the dead agent is forgotten: %v\n%s", err, out)
	}
	for _, h := range blobsOf(t, second) {
		if n := settled(second, alive)[h]; n < 2 {
			t.Errorf("blob %s on %d living agents after a placed agent died, want 2", h, n)
		}
	}
}

// TestSeedCorruptBlobFails: an origin that serves a layer whose bytes do
// not match its digest fails the seed job, which names the blob, and the
// seeder keeps nothing of it.
func TestSeedCorruptBlobFails(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 2, LayerSize: 1 << 20, Seed: 1405})
	ref := origin.Push(t, img, "seed/corrupt:v1")
	bad := blobsOf(t, img)[2]
	data := filepath.Join(origin.RootDir, "docker", "registry", "v2", "blobs", bad.Algorithm, bad.Hex[:2], bad.Hex, "data")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff // same size, other bytes
	if err := os.WriteFile(data, b, 0o600); err != nil {
		t.Fatal(err)
	}
	tr := startSeedTracker(t, origin)
	out, err := runSeed(t, ref, "--tracker", tr.URL, "--token-file", tokenFile(t, seedSeedToken), "--wait", "--timeout", "60s")
	if err == nil || !strings.Contains(out, bad.Hex) || !strings.Contains(out, "failed") {
		t.Fatalf("seed of a corrupt blob: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	if holds(tr, bad) {
		t.Error("the seeder kept the corrupt blob")
	}
	if _, err := os.Stat(filepath.Join(tr.DataDir, "store", "ingest", bad.Hex)); err == nil {
		t.Error("the seeder kept a partial file of the corrupt blob")
	}
}
