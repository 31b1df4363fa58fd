package agent_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/upstream"
)

// pushOrigin is go-containerregistry's registry, which can be told to
// refuse blob commits or manifest PUTs with DENIED, and counts blob GETs.
type pushOrigin struct {
	*httptest.Server
	refuseBlobs, refuseManifests atomic.Bool
	blobGets                     atomic.Int64
}

func newPushOrigin(t *testing.T) *pushOrigin {
	t.Helper()
	o := &pushOrigin{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/") && o.refuseBlobs.Load(),
			r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") && o.refuseManifests.Load():
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"errors":[{"code":"DENIED","message":"read-only"}]}`)
			return
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && !strings.Contains(r.URL.Path, "/uploads/"):
			o.blobGets.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

// pushAgent is an agent with WithPush in front of an origin.
type pushAgent struct {
	*agent.Agent
	srv   *httptest.Server
	store *store.Disk
	spool string
}

func startPushAgent(t *testing.T, originURL string, cfg agent.PushConfig, now func() time.Time) *pushAgent {
	t.Helper()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	ucfg := upstream.DefaultConfig()
	ucfg.Default = originURL
	ucfg.Timeout = 5 * time.Second
	up, err := upstream.New(ucfg, upstream.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	scfg := store.DefaultConfig()
	scfg.Dir = filepath.Join(dir, "store")
	st, err := store.New(scfg, store.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(dir, "uploads")
	}
	opts := []agent.Option{agent.WithRegisterer(reg), agent.WithLogger(testLogger()), agent.WithPush(cfg)}
	if now != nil {
		opts = append(opts, agent.WithClock(now))
	}
	a, err := agent.New(agent.DefaultConfig(), up, st, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return &pushAgent{Agent: a, srv: srv, store: st, spool: cfg.Dir}
}

func (p *pushAgent) host() string { return strings.TrimPrefix(p.srv.URL, "http://") }

// spoolFiles lists what is left in the spool directory.
func (p *pushAgent) spoolFiles(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(p.spool)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func (p *pushAgent) holds(t *testing.T, d v1.Hash) bool {
	t.Helper()
	_, err := p.store.Stat(t.Context(), digest.Digest(d.String()))
	return err == nil
}

func imageDigests(t *testing.T, img v1.Image) []v1.Hash {
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

func pushRef(t *testing.T, host, repo string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// An image pushed through the agent reaches the origin as pushed, its
// blobs are in the store, the spool is empty, and a pull through the agent
// takes no blob from the origin.
func TestPushThroughAgent(t *testing.T) {
	t.Parallel()
	o := newPushOrigin(t)
	a := startPushAgent(t, o.URL, agent.PushConfig{AskCredentials: true}, nil)
	img, err := random.Image(256<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(pushRef(t, a.host(), "team/app:v1"), img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push through the agent: %v", err)
	}
	got, err := remote.Image(pushRef(t, strings.TrimPrefix(o.URL, "http://"), "team/app:v1"))
	if err != nil {
		t.Fatalf("origin: %v", err)
	}
	if g, w := mustHash(t, got.Digest), mustHash(t, img.Digest); g != w {
		t.Errorf("origin holds %s, pushed %s", g, w)
	}
	for _, h := range imageDigests(t, img) {
		if !a.holds(t, h) {
			t.Errorf("store lacks pushed blob %s", h)
		}
	}
	if left := a.spoolFiles(t); len(left) != 0 {
		t.Errorf("spool holds %v after the push", left)
	}
	before := o.blobGets.Load()
	pulled, err := remote.Image(pushRef(t, a.host(), "team/app:v1"))
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := pulled.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, rc)
		rc.Close()
	}
	if n := o.blobGets.Load() - before; n != 0 {
		t.Errorf("the pull through the agent took %d blobs from the origin, want 0", n)
	}

	// A cross-repository mount is the origin's to grant. This one cannot
	// mount and starts an upload instead, which the agent hands on as its
	// own session, and the client completes.
	l := layers[0]
	ld := mustHash(t, l.Digest)
	resp := rawPush(t, "POST", a.srv.URL+"/v2/team/other/blobs/uploads/?mount="+ld.String()+"&from=team/app", nil, "", 202, "")
	if resp.Header.Get("Docker-Upload-UUID") == "" {
		t.Error("mount fallback without Docker-Upload-UUID")
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	rawPush(t, "PUT", a.srv.URL+resp.Header.Get("Location")+"?digest="+ld.String(), nil, string(data), 201, "")
	rawPush(t, "HEAD", a.srv.URL+"/v2/team/other/blobs/"+ld.String(), nil, "", 200, "")
}

func mustHash(t *testing.T, f func() (v1.Hash, error)) v1.Hash {
	t.Helper()
	h, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// An origin that refuses a push has the agent refuse it with the origin's
// error, and nothing of it is kept, cached or served.
func TestPushRefusedByOrigin(t *testing.T) {
	t.Parallel()
	o := newPushOrigin(t)
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a := startPushAgent(t, o.URL, agent.PushConfig{IdleTimeout: time.Minute}, clock)

	t.Run("blobs", func(t *testing.T) {
		o.refuseBlobs.Store(true)
		defer o.refuseBlobs.Store(false)
		img, _ := random.Image(64<<10, 2)
		err := remote.Write(pushRef(t, a.host(), "ro/blobs:v1"), img, remote.WithContext(t.Context()))
		if err == nil || !strings.Contains(err.Error(), "DENIED") {
			t.Fatalf("push = %v, want DENIED", err)
		}
		for _, h := range imageDigests(t, img) {
			if a.holds(t, h) {
				t.Errorf("store kept blob %s of a refused push", h)
			}
		}
		// The client gave up on its other uploads without cancelling
		// them: they go once idle (a request of one may still be ending
		// on the server, so the sweep is repeated, a bounded number of
		// times).
		var left []string
		for range 50 {
			mu.Lock()
			now = now.Add(2 * time.Minute)
			mu.Unlock()
			loc := rawPush(t, "POST", a.srv.URL+"/v2/ro/blobs/blobs/uploads/", nil, "", 202, "").Header.Get("Location")
			rawPush(t, "DELETE", a.srv.URL+loc, nil, "", 204, "")
			if left = a.spoolFiles(t); len(left) == 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(left) != 0 {
			t.Errorf("spool holds %v after a refused push", left)
		}
	})
	t.Run("manifest", func(t *testing.T) {
		o.refuseManifests.Store(true)
		defer o.refuseManifests.Store(false)
		img, _ := random.Image(64<<10, 1)
		err := remote.Write(pushRef(t, a.host(), "ro/man:v1"), img, remote.WithContext(t.Context()))
		if err == nil || !strings.Contains(err.Error(), "DENIED") {
			t.Fatalf("push = %v, want DENIED", err)
		}
		d := mustHash(t, img.Digest)
		if _, err := remote.Get(pushRef(t, a.host(), "ro/man@"+d.String())); err == nil || !strings.Contains(err.Error(), "UNKNOWN") {
			t.Errorf("the agent serves the refused manifest: %v", err)
		}
		if _, err := remote.Get(pushRef(t, a.host(), "ro/man:v1")); err == nil {
			t.Error("the agent serves the refused tag")
		}
	})
}

// rawPush sends one request to the agent and checks the answer.
func rawPush(t *testing.T, method, url string, hdr map[string]string, body string, status int, code string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("%s %s: %d, want %d: %s", method, url, resp.StatusCode, status, raw)
	}
	if code != "" {
		var e struct{ Errors []struct{ Code string } }
		if json.Unmarshal(raw, &e) != nil || len(e.Errors) == 0 || e.Errors[0].Code != code {
			t.Fatalf("%s %s: %s, want %s", method, url, raw, code)
		}
	}
	return resp
}

// Bad input on the push path gets the OCI error and ends or keeps the
// session as the spec says; a wrong digest keeps nothing anywhere.
func TestPushBadInput(t *testing.T) {
	t.Parallel()
	o := newPushOrigin(t)
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	spool := filepath.Join(t.TempDir(), "uploads")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(spool, "upload-left-by-a-crash"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startPushAgent(t, o.URL, agent.PushConfig{Dir: spool, MaxUploads: 3, IdleTimeout: time.Minute}, clock)
	if left := a.spoolFiles(t); len(left) != 0 {
		t.Errorf("spool leftovers not removed at start: %v", left)
	}
	base := a.srv.URL
	start := func(t *testing.T, repo string) string {
		t.Helper()
		resp := rawPush(t, "POST", base+"/v2/"+repo+"/blobs/uploads/", nil, "", 202, "")
		return base + resp.Header.Get("Location")
	}
	blob := strings.Repeat("0123456789", 5000)
	d := digest.FromString(blob)

	t.Run("wrong-digest", func(t *testing.T) {
		loc := start(t, "bad/digest")
		wrong := digest.FromString("something else")
		rawPush(t, "PUT", loc+"?digest="+wrong.String(), nil, blob, 400, "DIGEST_INVALID")
		for _, x := range []digest.Digest{wrong, d} {
			if _, err := a.store.Stat(t.Context(), x); err == nil {
				t.Errorf("store holds %s after a wrong digest", x)
			}
		}
		if _, err := remote.Head(pushRef(t, strings.TrimPrefix(o.URL, "http://"), "bad/digest@"+d.String())); err == nil {
			t.Error("the origin committed the blob of a wrong digest")
		}
		rawPush(t, "PATCH", loc, nil, "x", 404, "BLOB_UPLOAD_UNKNOWN")
		if left := a.spoolFiles(t); len(left) != 0 {
			t.Errorf("spool holds %v", left)
		}
	})
	t.Run("out-of-order-then-right", func(t *testing.T) {
		loc := start(t, "bad/order")
		rawPush(t, "PATCH", loc, map[string]string{"Content-Range": "0-9"}, blob[:10], 202, "")
		resp := rawPush(t, "PATCH", loc, map[string]string{"Content-Range": "20-29"}, blob[20:30], 416, "BLOB_UPLOAD_INVALID")
		if r := resp.Header.Get("Range"); r != "0-9" {
			t.Errorf("416 Range %q, want 0-9", r)
		}
		rawPush(t, "PATCH", loc, map[string]string{"Content-Range": fmt.Sprintf("10-%d", len(blob)-1)}, blob[10:], 202, "")
		rawPush(t, "PUT", loc+"?digest="+d.String(), nil, "", 201, "")
		if _, err := a.store.Stat(t.Context(), d); err != nil {
			t.Errorf("store lacks the blob: %v", err)
		}
	})
	t.Run("unknown-and-foreign-sessions", func(t *testing.T) {
		loc := start(t, "bad/mine")
		id := loc[strings.LastIndexByte(loc, '/')+1:]
		rawPush(t, "PATCH", base+"/v2/bad/other/blobs/uploads/"+id, nil, "x", 404, "BLOB_UPLOAD_UNKNOWN")
		rawPush(t, "PATCH", loc, map[string]string{"Authorization": "Basic dTpw"}, "x", 404, "BLOB_UPLOAD_UNKNOWN")
		rawPush(t, "GET", base+"/v2/bad/mine/blobs/uploads/0123456789abcdef", nil, "", 404, "BLOB_UPLOAD_UNKNOWN")
		rawPush(t, "PATCH", loc, map[string]string{"Content-Range": "9-3"}, "x", 400, "BLOB_UPLOAD_INVALID")
		rawPush(t, "PUT", loc, nil, "", 400, "DIGEST_INVALID")
		rawPush(t, "DELETE", loc, nil, "", 204, "")
		rawPush(t, "GET", loc, nil, "", 404, "BLOB_UPLOAD_UNKNOWN")
	})
	t.Run("limit-and-idle", func(t *testing.T) {
		var locs []string
		for i := range 3 {
			locs = append(locs, start(t, fmt.Sprintf("bad/limit%d", i)))
		}
		rawPush(t, "POST", base+"/v2/bad/limit/blobs/uploads/", nil, "", 429, "TOOMANYREQUESTS")
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
		start(t, "bad/limit") // the idle ones make room
		for _, loc := range locs {
			rawPush(t, "GET", loc, nil, "", 404, "BLOB_UPLOAD_UNKNOWN")
		}
		if left := a.spoolFiles(t); len(left) != 1 {
			t.Errorf("spool holds %v, want the one open session's file", left)
		}
	})
	t.Run("requester-credentials-refused", func(t *testing.T) {
		// The origin is anonymous; a scheme the agent cannot pass on is
		// refused before it asks.
		rawPush(t, "POST", base+"/v2/bad/creds/blobs/uploads/", map[string]string{"Authorization": "Negotiate abc"}, "", 401, "UNAUTHORIZED")
	})
}
