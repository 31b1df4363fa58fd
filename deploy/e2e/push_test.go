package e2e

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/agenttest"
	"github.com/shoal-dev/shoal/tracker"
)

// writeLayout writes img as the one image of a new OCI image layout, which
// crane and skopeo push from.
func writeLayout(t testing.TB, img v1.Image) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return dir
}

// requireOrigin checks that the origin serves repo:tag as img, byte for
// byte: the manifest's digest and every blob's content (a pull that
// verifies each blob against its digest).
func requireOrigin(t *testing.T, origin *agenttest.Origin, repoTag string, img agenttest.Digester) {
	t.Helper()
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(origin.Ref(repoTag), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(ref, remote.WithAuth(origin.Auth()), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("origin HEAD %s: %v", repoTag, err)
	}
	if desc.Digest != want {
		t.Errorf("origin serves %s as %s, pushed %s", repoTag, desc.Digest, want)
	}
	agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, origin.Ref(repoTag), origin.Creds)), img)
}

// storeHolds reports whether an agent's store holds a blob.
func storeHolds(node *agenttest.Shoal, h v1.Hash) bool {
	_, err := os.Stat(filepath.Join(node.DataDir, "store", "blobs", "sha256", h.Hex))
	return err == nil
}

func imageBlobs(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	hs := []v1.Hash{m.Config.Digest}
	for _, l := range m.Layers {
		hs = append(hs, l.Digest)
	}
	return hs
}

// TestPushThrough pushes an image through an agent with --allow-push, with
// crane and with skopeo: the origin then serves it byte for byte, and the
// agent serves it from its store, the origin sending no blob again.
func TestPushThrough(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	node := startAgent(t, origin, "--allow-push")

	for _, tool := range []string{"crane", "skopeo"} {
		t.Run(tool, func(t *testing.T) {
			img := agenttest.Image(t, agenttest.ImageOptions{Layers: 3, LayerSize: 1 << 20, Seed: 1405 + uint64(len(tool))})
			dir := writeLayout(t, img)
			repoTag := "push/" + tool + ":v1"
			switch tool {
			case "crane":
				agenttest.Crane(t, "push", "--insecure", dir, node.Addr+"/"+repoTag)
			case "skopeo":
				agenttest.Skopeo(t, "copy", "--quiet", "--dest-tls-verify=false", "oci:"+dir, "docker://"+node.Addr+"/"+repoTag)
			}
			requireOrigin(t, origin, repoTag, img)
			for _, h := range imageBlobs(t, img) {
				if !storeHolds(node, h) {
					t.Errorf("the agent's store lacks pushed blob %s", h)
				}
			}
			before := origin.BlobGets()
			agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, node.Addr+"/"+repoTag, nil)), img)
			if n := origin.BlobGets() - before; n != 0 {
				t.Errorf("pulling the pushed image through the agent fetched %d blobs from the origin, want 0", n)
			}
		})
	}
}

// TestPushThroughKinds pushes a Docker image, an OCI index and a Docker
// manifest list through the agent with go-containerregistry (crane's
// library): the origin serves each byte for byte, children and all.
func TestPushThroughKinds(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	node := startAgent(t, origin, "--allow-push")
	small := agenttest.ImageOptions{Layers: 2, LayerSize: 128 << 10}
	docker, ociIdx, dockerIdx := small, small, small
	docker.Seed, docker.MediaType = 1421, agenttest.Docker
	ociIdx.Seed = 1422
	dockerIdx.Seed, dockerIdx.MediaType = 1423, agenttest.Docker
	for _, c := range []struct {
		name string
		obj  interface {
			agenttest.Digester
			remote.Taggable
		}
	}{
		{"docker-image", agenttest.Image(t, docker)},
		{"oci-index", agenttest.Index(t, ociIdx)},
		{"docker-list", agenttest.Index(t, dockerIdx)},
	} {
		t.Run(c.name, func(t *testing.T) {
			repoTag := "kinds/" + c.name + ":v1"
			agenttest.Push(t, c.obj, node.Addr+"/"+repoTag, nil)
			requireOrigin(t, origin, repoTag, c.obj)
		})
	}
}

// TestPushThroughCredentials: a pusher's own credentials, offered after the
// agent's Basic challenge, are the ones the push is made with; wrong ones
// are refused by the origin, so by the agent, and nothing of that push is
// kept or served. Without any, the node's credentials push. An agent
// without credentials for the origin (requester mode) refuses every push
// of a client that has none either, and takes one with the pusher's.
func TestPushThroughCredentials(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{
		BasicAuth: &agenttest.BasicAuth{User: "pusher", Password: "push-secret"},
	})
	node := startAgent(t, origin, "--allow-push") // with the origin's credentials
	bare := agenttest.StartShoal(t, shoalBin, "agent", "--upstream", origin.URL, "--allow-push")
	crane := agenttest.ToolPath(t, "crane")

	push := func(t *testing.T, via *agenttest.Shoal, seed uint64, repoTag string, c *agenttest.BasicAuth) (v1.Image, string, error) {
		img := agenttest.Image(t, agenttest.ImageOptions{Layers: 2, LayerSize: 512 << 10, Seed: seed})
		env := []string{"DOCKER_CONFIG=" + agenttest.DockerConfig(t, via.Addr, c)}
		out, err := agenttest.RunTool(t.Context(), env, crane, "push", "--insecure", writeLayout(t, img), via.Addr+"/"+repoTag)
		return img, out, err
	}
	refused := func(t *testing.T, via *agenttest.Shoal, img v1.Image, repoTag, out string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("the push was accepted:\n%s", out)
		}
		if !strings.Contains(out, "UNAUTHORIZED") && !strings.Contains(out, "401") {
			t.Errorf("crane's error does not say UNAUTHORIZED:\n%s", out)
		}
		for _, h := range imageBlobs(t, img) {
			if storeHolds(via, h) {
				t.Errorf("the agent kept blob %s of a refused push", h)
			}
		}
		ref, _ := name.ParseReference(origin.Ref(repoTag), name.Insecure)
		if _, err := remote.Head(ref, remote.WithAuth(origin.Auth()), remote.WithContext(t.Context())); err == nil {
			t.Errorf("the origin holds %s after a refused push", repoTag)
		}
		if out, err := agenttest.RunTool(t.Context(), []string{"DOCKER_CONFIG=" + t.TempDir()}, crane, "manifest", "--insecure", node.Addr+"/"+repoTag); err == nil {
			t.Errorf("the agent serves %s after a refused push:\n%s", repoTag, out)
		}
	}
	accepted := func(t *testing.T, via *agenttest.Shoal, img v1.Image, repoTag, out string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("push: %v\n%s", err, out)
		}
		requireOrigin(t, origin, repoTag, img)
		for _, h := range imageBlobs(t, img) {
			if !storeHolds(via, h) {
				t.Errorf("the agent's store lacks pushed blob %s", h)
			}
		}
	}

	t.Run("wrong-credentials", func(t *testing.T) {
		img, out, err := push(t, node, 7001, "refused/wrong:v1", &agenttest.BasicAuth{User: "pusher", Password: "wrong"})
		refused(t, node, img, "refused/wrong:v1", out, err)
	})
	t.Run("requester-credentials", func(t *testing.T) {
		img, out, err := push(t, node, 7002, "accepted/mine:v1", origin.Creds)
		accepted(t, node, img, "accepted/mine:v1", out, err)
	})
	t.Run("node-credentials", func(t *testing.T) {
		img, out, err := push(t, node, 7003, "accepted/node:v1", nil)
		accepted(t, node, img, "accepted/node:v1", out, err)
	})
	t.Run("no-credentials", func(t *testing.T) {
		img, out, err := push(t, bare, 7004, "refused/none:v1", nil)
		refused(t, bare, img, "refused/none:v1", out, err)
	})
	// Without node credentials the registry is in requester mode: the
	// pusher's credentials make the checks before the upload too, and its
	// own pulls of what it pushed are served from the store.
	t.Run("requester-mode", func(t *testing.T) {
		img, out, err := push(t, bare, 7005, "accepted/tenant:v1", origin.Creds)
		accepted(t, bare, img, "accepted/tenant:v1", out, err)
		before := origin.BlobGets()
		agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, bare.Addr+"/accepted/tenant:v1", origin.Creds)), img)
		if n := origin.BlobGets() - before; n != 0 {
			t.Errorf("the pusher's pull took %d blobs from the origin, want 0", n)
		}
	})
}

// TestPushThroughSwarm: an image pushed through one agent of a swarm is
// pulled by another from the swarm, the origin sending none of its blobs
// again: the seeder takes them from the pusher's agent (agent/push_seed.go).
func TestPushThroughSwarm(t *testing.T) {
	t.Parallel()
	const token = "push-e2e-token"
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	trk := agenttest.StartShoal(t, shoalBin, "tracker", "--token", token, "--upstream", origin.URL)
	pusher := startAgent(t, origin, "--allow-push", "--tracker", trk.URL, "--tracker-token", token)
	puller := startAgent(t, origin, "--tracker", trk.URL, "--tracker-token", token)

	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 3, LayerSize: 2 << 20, Seed: 1414})
	agenttest.Crane(t, "push", "--insecure", writeLayout(t, img), pusher.Addr+"/push/swarm:v1")
	requireOrigin(t, origin, "push/swarm:v1", img)

	// The pull must find the pusher's agent holding every blob: wait for
	// its announce to reach the tracker.
	tc, err := tracker.NewClient(trk.URL, token)
	if err != nil {
		t.Fatal(err)
	}
	blobs := imageBlobs(t, img)
	announced := waitFor(t.Context(), 30*time.Second, func() bool {
		for _, h := range blobs {
			peers, err := tc.Peers(t.Context(), digest.Digest(h.String()), "")
			if err != nil || !slices.ContainsFunc(peers, func(p tracker.Peer) bool { return p.Complete }) {
				return false
			}
		}
		return true
	})
	if !announced {
		t.Fatal("the pusher's agent did not announce the pushed blobs")
	}

	origin.ResetCounters()
	agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, puller.Addr+"/push/swarm:v1", nil)), img)
	for _, h := range blobs {
		if gets := origin.BlobGetsOf(h.String()); len(gets) != 0 {
			t.Errorf("the origin was asked for pushed blob %s %d times after the push", h, len(gets))
		}
	}
	peer := puller.Metric(t, "shoal_swarm_received_bytes_total", "source=peer")
	seeder := puller.Metric(t, "shoal_swarm_received_bytes_total", "source=seeder")
	t.Logf("the puller received %.0f bytes from peers and %.0f from the seeder; the origin sent %d bytes in all after the push", peer, seeder, origin.BytesSent())
	if peer+seeder == 0 {
		t.Error("the puller received nothing from the swarm")
	}
}

// conformanceVersion pins the OCI distribution-spec conformance suite, a
// Go program built with the module proxy's help.
const conformanceVersion = "github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111"

// TestPushThroughConformance runs the OCI distribution-spec conformance
// suite against an agent in push mode and against its origin, Debian's
// docker-registry (CNCF distribution 2.8), directly: the agent must fail
// no test the origin passes. (Distribution 2.8 itself fails several of
// today's suite.) Deletes and the referrers API are not the agent's to
// serve (it is no registry of its own), and sha512 content is not served
// by its read path: those are left out.
func TestPushThroughConformance(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	out, err := agenttest.RunTool(t.Context(), []string{"GOBIN=" + bin, "GOFLAGS=-mod=mod"}, agenttest.ToolPath(t, "go"), "install", conformanceVersion)
	if err != nil {
		if agenttest.InCI() {
			t.Fatalf("building the conformance suite: %v\n%s", err, out)
		}
		t.Skipf("cannot build the conformance suite: %v\n%s", err, out)
	}
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	node := startAgent(t, origin, "--allow-push")

	direct := runConformance(t, filepath.Join(bin, "conformance"), origin.Addr)
	through := runConformance(t, filepath.Join(bin, "conformance"), node.Addr)
	if through.passed == 0 {
		t.Fatal("no conformance test passed through the agent")
	}
	for _, name := range through.failed {
		if !slices.Contains(direct.failed, name) {
			t.Errorf("fails through the agent, passes on the origin: %s", name)
		}
	}
	t.Logf("conformance: %d passed and %d failed through the agent; %d passed and %d failed on the origin directly",
		through.passed, len(through.failed), direct.passed, len(direct.failed))
}

type conformance struct {
	passed int
	failed []string
}

// runConformance runs the suite against registry (host:port, plain HTTP)
// and reads its JUnit report.
func runConformance(t *testing.T, bin, registry string) conformance {
	t.Helper()
	results := t.TempDir()
	cfg := filepath.Join(results, "oci-conformance.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"OCI_REGISTRY=" + registry, "OCI_TLS=disabled", "OCI_VERSION=1.1",
		"OCI_REPO1=conformance/repo1", "OCI_REPO2=conformance/repo2",
		"OCI_RESULTS_DIR=" + results, "OCI_CONFIGURATION=" + cfg,
		"OCI_API_BLOBS_DELETE=false", "OCI_API_MANIFESTS_DELETE=false", "OCI_API_TAGS_DELETE=false",
		"OCI_API_REFERRER=false", "OCI_DATA_SHA512=false",
	}
	// The suite exits non-zero on any failure, which the comparison judges.
	out, _ := agenttest.RunTool(t.Context(), env, bin)
	raw, err := os.ReadFile(filepath.Join(results, "junit.xml"))
	if err != nil {
		t.Fatalf("conformance suite against %s wrote no report: %v\n%s", registry, err, out)
	}
	var report struct {
		Cases []struct {
			Name   string `xml:"name,attr"`
			Status string `xml:"status,attr"`
		} `xml:"testsuite>testcase"`
	}
	if err := xml.Unmarshal(raw, &report); err != nil {
		t.Fatalf("conformance report: %v", err)
	}
	var c conformance
	for _, tc := range report.Cases {
		switch tc.Status {
		case "passed":
			c.passed++
		case "failure", "error":
			c.failed = append(c.failed, tc.Name)
		}
	}
	return c
}

// BenchmarkPushThroughMemory reports the agent's peak resident memory
// while crane pushes an image of two 128 MiB layers through it: the
// upload is streamed, so the peak should not grow with the layers.
func BenchmarkPushThroughMemory(b *testing.B) {
	origin := agenttest.StartDistribution(b, agenttest.DistributionOptions{})
	img := agenttest.Image(b, agenttest.ImageOptions{Layers: 2, LayerSize: 128 << 20, Seed: 1499})
	size, err := imageBytes(img)
	if err != nil {
		b.Fatal(err)
	}
	dir := writeLayout(b, img)
	var peak int64
	var took time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		node := startAgent(b, origin, "--allow-push")
		b.StartTimer()
		start := time.Now()
		agenttest.Crane(b, "push", "--insecure", dir, fmt.Sprintf("%s/bench/push%d:v1", node.Addr, i))
		took += time.Since(start)
		m, err := node.Memory()
		if err != nil {
			b.Fatal(err)
		}
		peak = max(peak, m.Peak)
		b.StopTimer()
		if err := node.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/1e6, "peak-MB")
	b.ReportMetric(float64(size)/1e6, "pushed-MB")
	b.ReportMetric(float64(size)*float64(b.N)/took.Seconds()/1e6, "MB/s")
}

// TestPushThroughBadInput sends the agent's push path malformed requests:
// each gets its OCI error, the agent stays up, and nothing reaches the
// store.
func TestPushThroughBadInput(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	node := startAgent(t, origin, "--allow-push")
	send := func(method, path string, hdr map[string]string, body string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, node.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return resp.StatusCode, string(b), resp.Header
	}
	status, _, hdr := send("POST", "/v2/bad/push/blobs/uploads/", nil, "")
	if status != http.StatusAccepted {
		t.Fatalf("start: %d", status)
	}
	loc := hdr.Get("Location")
	blob := "a blob pushed with the wrong digest"
	for _, c := range []struct {
		name, method, path string
		hdr                map[string]string
		body               string
		status             int
		code               string
	}{
		{"bad content-range", "PATCH", loc, map[string]string{"Content-Range": "10-2"}, "x", 400, "BLOB_UPLOAD_INVALID"},
		{"content-range and length disagree", "PATCH", loc, map[string]string{"Content-Range": "0-99"}, "x", 400, "SIZE_INVALID"},
		{"out of order", "PATCH", loc, map[string]string{"Content-Range": "5-5"}, "x", 416, "BLOB_UPLOAD_INVALID"},
		{"no digest", "PUT", loc, nil, "", 400, "DIGEST_INVALID"},
		{"wrong digest", "PUT", loc + "?digest=" + digest.FromString("other").String(), nil, blob, 400, "DIGEST_INVALID"},
		{"session gone after it", "PATCH", loc, nil, "x", 404, "BLOB_UPLOAD_UNKNOWN"},
		{"unknown uuid", "PATCH", "/v2/bad/push/blobs/uploads/not-a-session", nil, "x", 404, "BLOB_UPLOAD_UNKNOWN"},
		{"uuid outside the grammar", "GET", "/v2/bad/push/blobs/uploads/bad%20id%3B", nil, "", 404, "BLOB_UPLOAD_UNKNOWN"},
		{"bad name", "POST", "/v2/Bad//name/blobs/uploads/", nil, "", 400, "NAME_INVALID"},
		{"bad mount digest", "POST", "/v2/bad/push/blobs/uploads/?mount=sha256:zz&from=bad/other", nil, "", 400, "DIGEST_INVALID"},
		{"manifest not json", "PUT", "/v2/bad/push/manifests/v1", map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, "{", 400, "MANIFEST_INVALID"},
		{"manifest digest mismatch", "PUT", "/v2/bad/push/manifests/" + digest.FromString("x").String(), nil, `{"schemaVersion":2,"config":{}}`, 400, "DIGEST_INVALID"},
	} {
		status, body, _ := send(c.method, c.path, c.hdr, c.body)
		if status != c.status || !strings.Contains(body, `"`+c.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, body, c.status, c.code)
		}
	}
	if storeHolds(node, v1.Hash{Algorithm: "sha256", Hex: digest.FromString(blob).Encoded()}) {
		t.Error("the store holds the blob pushed with a wrong digest")
	}
	if status, _, _ := send("GET", "/healthz", nil, ""); status != http.StatusOK {
		t.Errorf("healthz after bad input: %d", status)
	}
}
