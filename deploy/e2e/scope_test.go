package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// A blob or manifest cached under one repository is not served under
// another that the origin (CNCF distribution, which scopes blobs by
// repository) does not hold it in: 404 through the agent, with the bytes
// on the agent's disk. What the other repository does hold it serves.
func TestRepositoryScopedServing(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 2, LayerSize: 96 << 10, Seed: 41})
	ref := origin.Push(t, img, "tenant-a/app:v1")
	other := agenttest.Image(t, agenttest.ImageOptions{Layers: 1, LayerSize: 32 << 10, Seed: 42})
	origin.Push(t, other, "tenant-b/app:v1")
	dataDir := t.TempDir()
	agent := startAgent(t, origin, "--data-dir", dataDir)

	agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, via(agent, ref), nil)), img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, _ := layers[0].Digest()
	if _, err := os.Stat(filepath.Join(dataDir, "store", "blobs", "sha256", ld.Hex)); err != nil {
		t.Fatalf("the layer is not in the agent's store: %v", err)
	}
	md, _ := img.Digest()

	get := func(method, path string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, "http://"+agent.Addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, fmt.Sprintf("/v2/tenant-a/app/blobs/%s", ld), http.StatusOK},
		{http.MethodGet, fmt.Sprintf("/v2/tenant-b/app/blobs/%s", ld), http.StatusNotFound},
		{http.MethodHead, fmt.Sprintf("/v2/tenant-b/app/blobs/%s", ld), http.StatusNotFound},
		{http.MethodGet, fmt.Sprintf("/v2/tenant-b/app/blobs/%s", ld), http.StatusNotFound}, // still, once asked
		{http.MethodGet, fmt.Sprintf("/v2/tenant-a/app/manifests/%s", md), http.StatusOK},
		{http.MethodGet, fmt.Sprintf("/v2/tenant-b/app/manifests/%s", md), http.StatusNotFound},
		{http.MethodGet, fmt.Sprintf("/v2/no-such/repo/blobs/%s", ld), http.StatusNotFound},
	} {
		if got := get(tc.method, tc.path); got != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}
	if n := agent.Metric(t, "shoal_agent_confirmations_total", "result=refused"); n < 3 {
		t.Errorf("%v refused confirmations counted, want at least 3", n)
	}
}
