package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
)

// origin is go-containerregistry's in-process registry behind a counter of
// blob bytes sent, with a switch that makes it unreachable, a hook that
// cuts blob bodies short and one that holds them.
type origin struct {
	*httptest.Server
	blobBytes atomic.Int64
	blobGets  atomic.Int64
	down      atomic.Bool
	// cutAfter, when > 0, ends the next blob body after that many bytes.
	cutAfter atomic.Int64
	// slow, when > 0, is a pause (ns) after every write of a blob body.
	slow atomic.Int64
	// hold, when set, stops blob bodies once blobBytes reaches its mark.
	hold atomic.Pointer[originHold]
}

type originHold struct {
	after   int64
	release chan struct{}
	once    sync.Once
}

// holdAfter makes the origin stop sending blob bytes once it has sent n in
// all (give or take one write per body under way) until release is called,
// at the latest when the test ends.
func (o *origin) holdAfter(t *testing.T, n int64) (release func()) {
	h := &originHold{after: n, release: make(chan struct{})}
	o.hold.Store(h)
	release = func() { h.once.Do(func() { close(h.release) }) }
	t.Cleanup(release) // before the server's Close, which waits for handlers
	return release
}

func newOrigin(t *testing.T) *origin {
	t.Helper()
	o := &origin{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.down.Load() {
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close()
			return
		}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			o.blobGets.Add(1)
			cw := &countingWriter{ResponseWriter: w, n: &o.blobBytes, limit: o.cutAfter.Swap(0), pause: time.Duration(o.slow.Load()),
				hold: &o.hold, ctx: r.Context()}
			reg.ServeHTTP(cw, r)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) host() string { return strings.TrimPrefix(o.URL, "http://") }

type countingWriter struct {
	http.ResponseWriter
	n       *atomic.Int64
	limit   int64
	written int64
	pause   time.Duration
	hold    *atomic.Pointer[originHold]
	ctx     context.Context
}

// Write passes p on in writes of at most 32 KiB, so that cutAfter, slow
// and hold act on a body as it streams: the registry writes a blob in one
// call.
func (c *countingWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), 32<<10)
		m, err := c.write(p[:n])
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

func (c *countingWriter) write(p []byte) (int, error) {
	if h := c.hold.Load(); h != nil && c.n.Load() >= h.after {
		select {
		case <-h.release:
		case <-c.ctx.Done():
			return 0, c.ctx.Err()
		}
	}
	if c.limit > 0 && c.written+int64(len(p)) > c.limit {
		p = p[:c.limit-c.written]
		n, _ := c.ResponseWriter.Write(p)
		c.n.Add(int64(n))
		panic(http.ErrAbortHandler) // cut the connection mid-body
	}
	time.Sleep(c.pause)
	n, err := c.ResponseWriter.Write(p)
	c.written += int64(n)
	c.n.Add(int64(n))
	return n, err
}

func push(t *testing.T, o *origin, repo, tag string, img v1.Image) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(o.host()+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// testLogger logs to stderr when SHOAL_TEST_LOG names a level.
func testLogger() *slog.Logger {
	var level slog.Level
	if level.UnmarshalText([]byte(os.Getenv("SHOAL_TEST_LOG"))) != nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func (n *node) host() string { return strings.TrimPrefix(n.srv.URL, "http://") }

// fetchImage pulls an image through the agent with go-containerregistry and
// checks the config's and every layer's bytes against their digests. It
// reports failures only by its error, so it may run on any goroutine.
func fetchImage(ctx context.Context, n *node, repo, ref string) (v1.Image, error) {
	r, err := name.ParseReference(n.host()+"/"+repo+ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, remote.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r, err)
	}
	if _, err := img.RawConfigFile(); err != nil {
		return nil, fmt.Errorf("pull %s: config: %w", r, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("pull %s: layers: %w", r, err)
	}
	for _, l := range layers {
		want, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			return nil, fmt.Errorf("pull %s: layer %s: %w", r, want, err)
		}
		got := digest.SHA256.Digester()
		_, err = io.Copy(got.Hash(), rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("pull %s: layer %s: %w", r, want, err)
		}
		if got.Digest().String() != want.String() {
			return nil, fmt.Errorf("pull %s: layer %s: got %s", r, want, got.Digest())
		}
	}
	return img, nil
}

// pull is fetchImage for the test's own goroutine: a failure ends the test.
// Other goroutines call fetchImage and report with t.Error.
func pull(t *testing.T, n *node, repo, ref string) v1.Image {
	t.Helper()
	img, err := fetchImage(t.Context(), n, repo, ref)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPullThroughThenFromStore(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	img, _ := random.Image(1<<20, 3)
	push(t, o, "app/web", "v1", img)
	a := startAgent(t, t.TempDir(), func(c *nodeConfig) { c.Upstream.Default = o.URL })

	pull(t, a, "app/web", ":v1")
	first := o.blobBytes.Load()
	pull(t, a, "app/web", ":v1")
	if again := o.blobBytes.Load() - first; again != 0 {
		t.Fatalf("second pull fetched %d blob bytes from the origin, want 0", again)
	}
	d, _ := img.Digest()
	pull(t, a, "app/web", "@"+d.String())
}

func TestConcurrentPullsShareOneDownload(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	img, _ := random.Image(4<<20, 2)
	push(t, o, "app", "v1", img)
	a := startAgent(t, t.TempDir(), func(c *nodeConfig) { c.Upstream.Default = o.URL })
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := fetchImage(t.Context(), a, "app", ":v1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// 2 layers + 1 config; each fetched from the origin once.
	if gets := o.blobGets.Load(); gets != 3 {
		t.Fatalf("origin served %d blob GETs for 3 blobs and 8 clients", gets)
	}
}

func TestNamespaceRouting(t *testing.T) {
	t.Parallel()
	o1, o2 := newOrigin(t), newOrigin(t)
	img1, _ := random.Image(1024, 1)
	img2, _ := random.Image(2048, 1)
	push(t, o1, "lib/x", "v1", img1)
	push(t, o2, "lib/x", "v1", img2)
	a := startAgent(t, t.TempDir(), func(c *nodeConfig) {
		c.Upstream.Default = o1.URL
		c.Upstream.AllowUnknown = false
		c.Upstream.Registries = append(c.Upstream.Registries, upstreamRegistry("other.example:5000", o2.URL))
	})
	for _, tc := range []struct {
		ns   string
		want v1.Image
	}{{"", img1}, {"other.example:5000", img2}} {
		u := a.srv.URL + "/v2/lib/x/manifests/v1"
		if tc.ns != "" {
			u += "?ns=" + url.QueryEscape(tc.ns)
		}
		resp := get(t, u, "GET")
		want, _ := tc.want.Digest()
		if got := resp.Header.Get("Docker-Content-Digest"); got != want.String() {
			t.Errorf("ns=%q: digest %s, want %s", tc.ns, got, want)
		}
	}
	resp := get(t, a.srv.URL+"/v2/lib/x/manifests/v1?ns=unknown.example", "GET")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("unknown registry: status %d, want 403", resp.StatusCode)
	}
}

func TestStaleTagWhenUpstreamDown(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	img, _ := random.Image(1024, 1)
	push(t, o, "app", "v1", img)
	a := startAgent(t, t.TempDir(), func(c *nodeConfig) {
		c.Upstream.Default = o.URL
		c.Agent.TagTTL = 0
	})
	u := a.srv.URL + "/v2/app/manifests/v1"
	if resp := get(t, u, "GET"); resp.StatusCode != http.StatusOK || resp.Header.Get("Shoal-Stale") != "" {
		t.Fatalf("fresh: status %d, stale header %q", resp.StatusCode, resp.Header.Get("Shoal-Stale"))
	}
	o.down.Store(true)
	resp := get(t, u, "GET")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Shoal-Stale") != "true" {
		t.Fatalf("upstream down: status %d, stale header %q; want 200 and true", resp.StatusCode, resp.Header.Get("Shoal-Stale"))
	}
	if resp := get(t, a.srv.URL+"/v2/app/manifests/never-seen", "GET"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("unknown tag with upstream down: status %d, want 503", resp.StatusCode)
	}
}

func TestErrorsAreOCI(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	img, _ := random.Image(1024, 1)
	push(t, o, "app", "v1", img)
	a := startAgent(t, t.TempDir(), func(c *nodeConfig) { c.Upstream.Default = o.URL })
	missing := digest.FromString("missing")
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/app/manifests/nope", 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/app/manifests/" + missing.String(), 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/app/blobs/" + missing.String(), 404, "BLOB_UNKNOWN"},
		{"HEAD", "/v2/app/blobs/" + missing.String(), 404, ""},
		{"GET", "/v2/app/blobs/sha256:xyz", 400, "DIGEST_INVALID"},
		{"GET", "/v2/App/manifests/v1", 400, "NAME_INVALID"},
		{"GET", "/v2/app/manifests/v1?ns=not%20a%20host", 400, "NAME_INVALID"},
	} {
		resp := get(t, a.srv.URL+tc.path, tc.method)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
			continue
		}
		if tc.code == "" {
			continue
		}
		var body struct{ Errors []struct{ Code string } }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Errors) == 0 || body.Errors[0].Code != tc.code {
			t.Errorf("%s %s: body %+v (%v), want code %s", tc.method, tc.path, body, err, tc.code)
		}
	}
}

// A download cut short by the origin and then abandoned by an agent restart
// resumes where it stopped: the bytes already on disk are not fetched again.
func TestRestartResumesPartialBlob(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	blob := make([]byte, 8<<20)
	rand.Read(blob)
	d := pushBlob(t, o, "big", blob)
	dir := t.TempDir()
	a := startAgent(t, dir, func(c *nodeConfig) { c.Upstream.Default = o.URL })
	o.cutAfter.Store(3 << 20)
	if resp := get(t, a.srv.URL+"/v2/big/blobs/"+d.String(), "GET"); resp.StatusCode == http.StatusOK {
		// The body is cut off: reading it fails or comes up short.
		if n, err := io.Copy(io.Discard, resp.Body); err == nil && n == int64(len(blob)) {
			t.Fatal("a cut download was served whole")
		}
	}
	a.srv.Close()
	a.Close()
	sent := o.blobBytes.Load()
	if sent < 3<<20 {
		t.Fatalf("origin sent only %d bytes before the cut", sent)
	}

	b := startAgent(t, dir, func(c *nodeConfig) { c.Upstream.Default = o.URL })
	resp := get(t, b.srv.URL+"/v2/big/blobs/"+d.String(), "GET")
	got, err := io.ReadAll(resp.Body)
	if err != nil || digest.FromBytes(got) != d {
		t.Fatalf("resumed blob: %d bytes, err %v", len(got), err)
	}
	if total := o.blobBytes.Load(); total > int64(len(blob))+(256<<10) {
		t.Fatalf("origin sent %d bytes in total for a %d-byte blob: the resume started over", total, len(blob))
	}
}

func TestRangeFromStore(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	d := pushBlob(t, o, "r", blob)
	a := startAgent(t, t.TempDir(), func(c *nodeConfig) { c.Upstream.Default = o.URL })
	req, _ := http.NewRequest("GET", a.srv.URL+"/v2/r/blobs/"+d.String(), nil)
	req.Header.Set("Range", "bytes=1000-1999")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || string(got) != string(blob[1000:2000]) {
		t.Fatalf("range: status %d, %d bytes", resp.StatusCode, len(got))
	}
}

func pushBlob(t *testing.T, o *origin, repo string, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	resp, err := http.Post(o.URL+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), "application/octet-stream", strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push blob: %s", resp.Status)
	}
	return d
}

func get(t *testing.T, u, method string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s %s: timed out", method, u)
		}
		t.Fatalf("%s %s: %v", method, u, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}
