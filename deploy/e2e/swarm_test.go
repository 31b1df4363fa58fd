package e2e

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// TestSwarm runs a tracker (with its embedded seeder) and four agents as
// separate processes on loopback. The four pull the same multi-layer image
// at the same moment with crane, each through its own agent: every blob
// must verify, the origin must send less than 1.5 copies of the image (the
// seeder's one and little else), and the agents must have exchanged pieces
// among themselves. With the tracker killed, an agent must still pull a
// new image, straight from the origin.
func TestSwarm(t *testing.T) {
	t.Parallel()
	const (
		agents = 4
		token  = "swarm-e2e-token"
		// The cap keeps the seeder fetching while the agents start, so that
		// they meet while pieces are still scarce, as in a real rollout.
		originRate = 32 << 20
	)
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 4, LayerSize: 6 << 20, Seed: 9001})
	ref := origin.Push(t, img, "swarm/app:v1")
	size, err := imageBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	origin.ResetCounters()
	origin.SetRate(originRate)

	tracker := agenttest.StartShoal(t, shoalBin, "tracker", "--token", token, "--upstream", origin.URL)
	nodes := make([]*agenttest.Shoal, agents)
	for i := range nodes {
		nodes[i] = startAgent(t, origin, "--tracker", tracker.URL, "--tracker-token", token)
	}

	crane := agenttest.ToolPath(t, "crane")
	dirs := make([]string, agents)
	outs := make([]string, agents)
	errs := make([]error, agents)
	var wg sync.WaitGroup
	for i, n := range nodes {
		dirs[i] = filepath.Join(t.TempDir(), "pull")
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = agenttest.RunTool(t.Context(), []string{"DOCKER_CONFIG=" + t.TempDir()},
				crane, "pull", "--insecure", "--format=oci", via(n, ref), dirs[i])
		}()
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("pull through agent %d: %v\n%s", i, errs[i], outs[i])
		}
		agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, dirs[i]), img)
	}

	var peer, seeder, fromOrigin float64
	for _, n := range nodes {
		peer += n.Metric(t, "shoal_swarm_received_bytes_total", "source=peer")
		seeder += n.Metric(t, "shoal_swarm_received_bytes_total", "source=seeder")
		fromOrigin += n.Metric(t, "shoal_swarm_received_bytes_total", "source=origin")
	}
	sent := origin.BytesSent()
	t.Logf("image %d bytes; origin sent %d (%.2f copies); agents received %.0f from peers, %.0f from the seeder, %.0f from the origin",
		size, sent, float64(sent)/float64(size), peer, seeder, fromOrigin)
	if limit := size * 3 / 2; sent >= limit {
		t.Errorf("the origin sent %d bytes, %.2f copies of the image (limit 1.5)", sent, float64(sent)/float64(size))
	}
	if peer <= 0 {
		t.Error("no agent received a byte from another agent")
	}

	// Without the tracker, pulls go straight to the origin.
	if err := tracker.Kill(); err == nil {
		t.Fatal("the tracker exited cleanly before SIGKILL")
	}
	origin.SetRate(0)
	next := agenttest.Image(t, agenttest.ImageOptions{Layers: 2, LayerSize: 1 << 20, Seed: 9002})
	nextRef := origin.Push(t, next, "swarm/next:v1")
	for i, n := range nodes[:2] {
		t.Run(fmt.Sprintf("tracker-down-agent-%d", i), func(t *testing.T) {
			agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, via(n, nextRef), nil)), next)
		})
	}
	if down := nodes[0].Metric(t, "shoal_agent_tracker_unavailable_total"); down == 0 {
		t.Error("the pull without a tracker did not count as tracker-unavailable")
	}
}
