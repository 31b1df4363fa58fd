package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// TestAgentBadInput sends malformed and unanswerable requests to the real
// binary: each gets the OCI error JSON with the right status, and the agent
// keeps serving pulls afterwards.
func TestAgentBadInput(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 1, LayerSize: 64 << 10, Seed: 8001})
	ref := origin.Push(t, img, "app:v1")
	agent := startAgent(t, origin)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	unknown := "sha256:" + strings.Repeat("0", 64)

	// The group returns once its parallel subtests are done.
	t.Run("requests", func(bad *testing.T) { testBadRequests(bad, agent.URL, layer.String(), unknown) })

	// The agent must have survived.
	if status, _ := do(t, "GET", agent.URL+"/healthz", ""); status != http.StatusOK {
		t.Errorf("/healthz after bad input: %d", status)
	}
	status, body := do(t, "GET", agent.URL+"/v2/app/blobs/"+layer.String(), "bytes=0-9")
	if status != http.StatusPartialContent || len(body) != 10 {
		t.Errorf("a valid Range after bad input: %d with %d bytes", status, len(body))
	}
	agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, via(agent, ref), nil)), img)
}

func testBadRequests(bad *testing.T, base, layer, unknown string) {
	for _, tc := range []struct {
		name, method, path, rangeHdr string
		status                       int
		code                         string // OCI error code; "" for no JSON body check
	}{
		{"bad digest", "GET", "/v2/app/blobs/sha256:xyz", "", 400, "DIGEST_INVALID"},
		{"digest of wrong length", "GET", "/v2/app/blobs/sha256:abcd", "", 400, "DIGEST_INVALID"},
		{"unknown algorithm", "GET", "/v2/app/blobs/md5:" + strings.Repeat("a", 32), "", 400, "DIGEST_INVALID"},
		{"upper-case name", "GET", "/v2/App/manifests/v1", "", 400, "NAME_INVALID"},
		{"name with a space", "GET", "/v2/app%20x/manifests/v1", "", 400, "NAME_INVALID"},
		{"bad ns", "GET", "/v2/app/manifests/v1?ns=bad%20host", "", 400, "NAME_INVALID"},
		{"unknown manifest", "GET", "/v2/app/manifests/nope", "", 404, "MANIFEST_UNKNOWN"},
		{"unknown manifest digest", "GET", "/v2/app/manifests/" + unknown, "", 404, "MANIFEST_UNKNOWN"},
		{"unknown blob", "GET", "/v2/app/blobs/" + unknown, "", 404, "BLOB_UNKNOWN"},
		{"unknown repository", "GET", "/v2/nobody/here/manifests/v1", "", 404, ""},
		{"range past the end", "GET", "/v2/app/blobs/" + layer, "bytes=999999999-", 416, "RANGE_NOT_SATISFIABLE"},
		{"push refused", "POST", "/v2/app/blobs/uploads/", "", 405, "UNSUPPORTED"},
		{"no such route", "GET", "/v2/app/nothing/here", "", 404, ""},
	} {
		bad.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, body := do(t, tc.method, base+tc.path, tc.rangeHdr)
			if status != tc.status {
				t.Errorf("%s %s: status %d, want %d; body %q", tc.method, tc.path, status, tc.status, body)
			}
			if tc.code == "" {
				return
			}
			var e struct {
				Errors []struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"errors"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) == 0 {
				t.Fatalf("%s %s: not an OCI error body (%v): %q", tc.method, tc.path, err, body)
			}
			if e.Errors[0].Code != tc.code {
				t.Errorf("%s %s: code %s, want %s", tc.method, tc.path, e.Errors[0].Code, tc.code)
			}
		})
	}

}

// do sends one request with an optional Range and returns the status and
// up to 64 KiB of the body.
func do(t testing.TB, method, url, rangeHdr string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rangeHdr != "" {
		req.Header.Set("Range", rangeHdr)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}
