package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// TestAgentResumesAfterKill pulls a large layer from an origin capped at a
// few MiB/s, kills the agent with SIGKILL part way, restarts it on the same
// data directory and pulls again: the layer must arrive intact, the
// restarted agent must resume with a Range request, and the origin must
// send little more than the layer once.
//
// "early" is the case of issue 2: kill once the origin has sent 40% of a
// 48 MiB layer; the origin may send 1.15 × the layer in all. "after-sync"
// kills once the store has journalled its first batch of bytes (its
// ingest/<hex>.journal holds a record) and checks the resume itself: the
// origin resends only what the journal did not record.
func TestAgentResumesAfterKill(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		afterSync bool
	}{
		{"early", false},
		{"after-sync", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testResume(t, tc.afterSync)
		})
	}
}

// journalRecord is the size of the store journal's header and of one record
// (see agent/store/journal.go): a journal at least this long records bytes.
const journalRecord = 16 + 20

func testResume(t *testing.T, afterSync bool) {
	const (
		layerSize = 48 << 20
		rate      = 16 << 20 // about three seconds for the whole layer
	)
	seed := uint64(7001)
	if afterSync {
		seed++
	}
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 1, LayerSize: layerSize, Seed: seed})
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
	journal := filepath.Join(agent.DataDir, "store", "ingest", layerDigest.Hex+".journal")
	killNow := func() bool { return origin.BytesSent() >= blobSize*2/5 }
	if afterSync {
		killNow = func() bool {
			fi, err := os.Stat(journal)
			return err == nil && fi.Size() >= journalRecord
		}
	}
	if !waitFor(t.Context(), 30*time.Second, killNow) {
		t.Fatalf("the kill condition did not come in 30 s; the origin sent %d bytes", origin.BytesSent())
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
	maxResent := blobSize * 15 / 100
	if afterSync {
		// Only what the journal had not recorded may come again.
		maxResent = sentAtKill - max(resumedFrom, 0) + 1<<20
	}
	if limit := blobSize + maxResent; sent >= limit {
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
