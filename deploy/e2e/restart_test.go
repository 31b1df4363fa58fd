package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// journalSyncBytes is the agent store's default JournalSyncBytes: ranges
// reach the journal, and so survive a kill, in batches of this size.
const journalSyncBytes = 32 << 20

// TestAgentResumesAfterKill pulls a large layer from an origin capped at a
// few MiB/s, kills the agent with SIGKILL part way, restarts it on the same
// data directory and pulls again: the layer must arrive intact, the
// restarted agent must resume with a Range request, and the origin must
// send little more than the layer once.
//
// "early" is the case of issue 2 (kill at 40% of a 48 MiB layer, origin
// total < 1.15 × the layer). "after-sync" kills once the store has
// journalled its first batch and checks the resume itself: the restarted
// agent asks only for what follows the last journalled byte.
func TestAgentResumesAfterKill(t *testing.T) {
	t.Parallel()
	const layerSize = 48 << 20
	for _, tc := range []struct {
		name string
		// killAt is the fraction of the layer the origin has sent when the
		// agent is killed, in percent.
		killAt int
		// maxResent bounds the bytes the origin may send beyond the layer.
		maxResent func(blobSize int64) int64
	}{
		{"early", 40, func(size int64) int64 { return size * 15 / 100 }},
		{"after-sync", 85, func(size int64) int64 { return size*85/100 - journalSyncBytes + 1<<20 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testResume(t, layerSize, tc.killAt, tc.maxResent)
		})
	}
}

func testResume(t *testing.T, layerSize int64, killAt int, maxResent func(int64) int64) {
	const rate = 16 << 20 // about three seconds for the whole layer
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 1, LayerSize: layerSize, Seed: 7000 + uint64(killAt)})
	ref := origin.Push(t, img, "big/app:v1")
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layerDigest, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	blobSize, err := layers[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	origin.ResetCounters()
	origin.SetRate(rate)
	agent := startAgent(t, origin)

	// The first pull dies with the agent.
	pullCtx, cancelPull := context.WithTimeout(t.Context(), time.Minute)
	defer cancelPull()
	crane := agenttest.ToolPath(t, "crane")
	firstDone := make(chan error, 1)
	go func() {
		_, err := agenttest.RunTool(pullCtx, []string{"DOCKER_CONFIG=" + t.TempDir()},
			crane, "pull", "--insecure", "--format=oci", via(agent, ref), t.TempDir()+"/first")
		firstDone <- err
	}()
	killBytes := blobSize * int64(killAt) / 100
	if !waitFor(t.Context(), 30*time.Second, func() bool { return origin.BytesSent() >= killBytes }) {
		t.Fatalf("the origin sent only %d bytes in 30 s", origin.BytesSent())
	}
	if err := agent.Kill(); err == nil {
		t.Fatal("the agent exited cleanly before SIGKILL")
	}
	sentAtKill := origin.BytesSent()
	if err := <-firstDone; err == nil {
		t.Fatal("crane finished a pull through an agent killed part way")
	}

	agent.Restart(t)
	got := agenttest.VerifyOCILayout(t, agenttest.CranePull(t, via(agent, ref), nil))
	agenttest.RequireContent(t, got, img)

	sent := origin.BytesSent()
	gets := origin.BlobGetsOf(layerDigest.String())
	t.Logf("killed after the origin sent %d of %d bytes; %d in all; layer GETs: %+v", sentAtKill, blobSize, sent, gets)
	resumedFrom := int64(-1)
	for _, g := range gets {
		if off, ok := rangeStart(g.Range); ok && off > 0 {
			resumedFrom = off
		}
	}
	if resumedFrom < 0 {
		t.Errorf("no layer GET after the restart asked for a Range: the restarted agent fetched the layer from byte 0")
	}
	if limit := blobSize + maxResent(blobSize); sent >= limit {
		t.Errorf("the origin sent %d bytes in all for a layer of %d (limit %d, %.2f× the layer)",
			sent, blobSize, limit, float64(sent)/float64(blobSize))
	}
}

// rangeStart parses the start of a "bytes=N-" or "bytes=N-M" header.
func rangeStart(h string) (int64, bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil
}

// waitFor polls cond every few milliseconds until it holds (true) or
// timeout passes or ctx ends (false).
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-tick.C:
		}
	}
	return true
}
