package registryshim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shoal-dev/shoal/registryshim"
	"github.com/shoal-dev/shoal/registryshim/shimtest"
)

var (
	alpine = registryshim.Repo{Name: "library/alpine"}
	deep   = registryshim.Repo{Name: "a/b/c/d/e/f"}
	ghcr   = registryshim.Repo{Registry: "ghcr.io", Name: "org/app"}
)

// fixture is a handler over a Memory holding one manifest and one blob in
// each of the repositories above.
type fixture struct {
	mem      *shimtest.Memory
	h        *registryshim.Handler
	manifest []byte
	mdgst    digest.Digest
	blob     []byte
	bdgst    digest.Digest
}

func newFixture(t testing.TB, blobSize int, opts ...registryshim.Option) *fixture {
	t.Helper()
	f := &fixture{mem: shimtest.NewMemory()}
	f.blob = make([]byte, blobSize)
	for i := range f.blob {
		f.blob[i] = byte(i * 7)
	}
	f.bdgst = digest.FromBytes(f.blob)
	f.manifest = []byte(`{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageManifest + `","layers":[{"digest":"` + f.bdgst.String() + `"}]}`)
	f.mdgst = digest.FromBytes(f.manifest)
	for _, r := range []registryshim.Repo{alpine, deep, ghcr} {
		f.mem.PutBlob(r, f.blob)
		f.mem.PutManifest(r, "latest", ocispec.MediaTypeImageManifest, f.manifest)
		f.mem.PutManifest(r, "v1", ocispec.MediaTypeImageManifest, f.manifest)
	}
	f.h = registryshim.New(f.mem, opts...)
	return f
}

func (f *fixture) do(method, target string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 {
		t.Fatalf("status %d, body %q: not an OCI error body (%v)", w.Code, w.Body, err)
	}
	return body.Errors[0].Code
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1000)
	blobPath := "/v2/library/alpine/blobs/" + f.bdgst.String()
	manifestHeaders := map[string]string{
		"Content-Type":          ocispec.MediaTypeImageManifest,
		"Content-Length":        strconv.Itoa(len(f.manifest)),
		"Docker-Content-Digest": f.mdgst.String(),
		"Etag":                  `"` + f.mdgst.String() + `"`,
	}
	blobHeaders := map[string]string{
		"Content-Type":          "application/octet-stream",
		"Content-Length":        "1000",
		"Docker-Content-Digest": f.bdgst.String(),
		"Etag":                  `"` + f.bdgst.String() + `"`,
		"Accept-Ranges":         "bytes",
	}
	tests := []struct {
		name    string
		method  string
		target  string
		status  int
		code    string            // OCI error code, for errors
		body    []byte            // exact body, for successes
		headers map[string]string // headers that must be present
	}{
		{name: "base", method: "GET", target: "/v2/", status: 200, body: []byte("{}")},
		{name: "base head", method: "HEAD", target: "/v2/", status: 200, body: []byte{}},
		{name: "manifest by tag", method: "GET", target: "/v2/library/alpine/manifests/latest", status: 200, body: f.manifest, headers: manifestHeaders},
		{name: "manifest head", method: "HEAD", target: "/v2/library/alpine/manifests/latest", status: 200, body: []byte{}, headers: manifestHeaders},
		{name: "manifest by digest", method: "GET", target: "/v2/library/alpine/manifests/" + f.mdgst.String(), status: 200, body: f.manifest, headers: manifestHeaders},
		{name: "manifest many slashes", method: "GET", target: "/v2/a/b/c/d/e/f/manifests/v1", status: 200, body: f.manifest, headers: manifestHeaders},
		{name: "manifest ns", method: "GET", target: "/v2/org/app/manifests/latest?ns=ghcr.io", status: 200, body: f.manifest, headers: manifestHeaders},
		{name: "manifest ns upper case", method: "GET", target: "/v2/org/app/manifests/latest?ns=GHCR.io", status: 200, body: f.manifest},
		{name: "manifest ns missing", method: "GET", target: "/v2/org/app/manifests/latest", status: 404, code: "NAME_UNKNOWN"},
		{name: "manifest ns other registry", method: "GET", target: "/v2/library/alpine/manifests/latest?ns=docker.io", status: 404, code: "NAME_UNKNOWN"},
		{name: "manifest ns junk", method: "GET", target: "/v2/org/app/manifests/latest?ns=ghcr.io/evil", status: 400, code: "NAME_INVALID"},
		{name: "manifest unknown tag", method: "GET", target: "/v2/library/alpine/manifests/nope", status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest unknown digest", method: "GET", target: "/v2/library/alpine/manifests/" + f.bdgst.String(), status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest invalid tag", method: "GET", target: "/v2/library/alpine/manifests/.latest", status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "manifest invalid digest", method: "GET", target: "/v2/library/alpine/manifests/sha256:1234", status: 400, code: "DIGEST_INVALID"},
		{name: "manifest invalid name", method: "GET", target: "/v2/Library/alpine/manifests/latest", status: 400, code: "NAME_INVALID"},
		{name: "manifest unknown repo", method: "GET", target: "/v2/library/busybox/manifests/latest", status: 404, code: "NAME_UNKNOWN"},
		{name: "blob", method: "GET", target: blobPath, status: 200, body: f.blob, headers: blobHeaders},
		{name: "blob head", method: "HEAD", target: blobPath, status: 200, body: []byte{}, headers: blobHeaders},
		{name: "blob many slashes", method: "GET", target: "/v2/a/b/c/d/e/f/blobs/" + f.bdgst.String(), status: 200, body: f.blob},
		{name: "blob ns", method: "GET", target: "/v2/org/app/blobs/" + f.bdgst.String() + "?ns=ghcr.io", status: 200, body: f.blob},
		{name: "blob ns junk", method: "HEAD", target: "/v2/org/app/blobs/" + f.bdgst.String() + "?ns=%20", status: 400},
		{name: "blob unknown", method: "GET", target: "/v2/library/alpine/blobs/" + f.mdgst.String(), status: 404, code: "BLOB_UNKNOWN"},
		{name: "blob unknown head", method: "HEAD", target: "/v2/library/alpine/blobs/" + f.mdgst.String(), status: 404},
		{name: "blob invalid digest", method: "GET", target: "/v2/library/alpine/blobs/sha256:xyz", status: 400, code: "DIGEST_INVALID"},
		{name: "blob tag instead of digest", method: "GET", target: "/v2/library/alpine/blobs/latest", status: 400, code: "DIGEST_INVALID"},
		{name: "tags", method: "GET", target: "/v2/library/alpine/tags/list", status: 200, body: []byte(`{"name":"library/alpine","tags":["latest","v1"]}`)},
		{name: "tags head", method: "HEAD", target: "/v2/library/alpine/tags/list", status: 200, body: []byte{}},
		{name: "tags n", method: "GET", target: "/v2/library/alpine/tags/list?n=1", status: 200, body: []byte(`{"name":"library/alpine","tags":["latest"]}`),
			headers: map[string]string{"Link": `</v2/library/alpine/tags/list?last=latest&n=1>; rel="next"`}},
		{name: "tags n ns", method: "GET", target: "/v2/org/app/tags/list?n=1&ns=ghcr.io", status: 200,
			headers: map[string]string{"Link": `</v2/org/app/tags/list?last=latest&n=1&ns=ghcr.io>; rel="next"`}},
		{name: "tags last", method: "GET", target: "/v2/library/alpine/tags/list?last=latest", status: 200, body: []byte(`{"name":"library/alpine","tags":["v1"]}`)},
		{name: "tags none left", method: "GET", target: "/v2/library/alpine/tags/list?last=zzz", status: 200, body: []byte(`{"name":"library/alpine","tags":[]}`)},
		{name: "tags n zero", method: "GET", target: "/v2/library/alpine/tags/list?n=0", status: 200, body: []byte(`{"name":"library/alpine","tags":[]}`)},
		{name: "tags n negative", method: "GET", target: "/v2/library/alpine/tags/list?n=-1", status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "tags n junk", method: "GET", target: "/v2/library/alpine/tags/list?n=ten", status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "tags unknown repo", method: "GET", target: "/v2/nope/tags/list", status: 404, code: "NAME_UNKNOWN"},
		{name: "catalog", method: "GET", target: "/v2/_catalog", status: 404, code: "NOT_FOUND"},
		{name: "outside v2", method: "GET", target: "/metrics", status: 404, code: "NOT_FOUND"},
		{name: "upload path", method: "GET", target: "/v2/library/alpine/blobs/uploads/", status: 404, code: "NOT_FOUND"},
		{name: "referrers", method: "GET", target: "/v2/library/alpine/referrers/" + f.mdgst.String(), status: 404, code: "NOT_FOUND"},
	}
	for _, method := range []string{"PUT", "POST", "DELETE", "PATCH", "OPTIONS"} {
		for _, target := range []string{"/v2/", "/v2/library/alpine/manifests/latest", blobPath, "/v2/library/alpine/blobs/uploads/", "/v2/library/alpine/tags/list"} {
			tests = append(tests, struct {
				name    string
				method  string
				target  string
				status  int
				code    string
				body    []byte
				headers map[string]string
			}{name: method + " " + target, method: method, target: target, status: 405, code: "UNSUPPORTED", headers: map[string]string{"Allow": "GET, HEAD"}})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := f.do(tt.method, tt.target)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %q", w.Code, tt.status, w.Body)
			}
			if got := w.Header().Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
				t.Errorf("API version header = %q", got)
			}
			for k, v := range tt.headers {
				if got := w.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if tt.code != "" {
				if got := errorCode(t, w); got != tt.code {
					t.Errorf("error code = %s, want %s", got, tt.code)
				}
			}
			if tt.body != nil && !bytes.Equal(w.Body.Bytes(), tt.body) {
				t.Errorf("body = %q, want %q", w.Body, tt.body)
			}
		})
	}
}

// Invalid requests must be refused before the backend is asked anything.
func TestValidationBeforeBackend(t *testing.T) {
	t.Parallel()
	for _, target := range []string{
		"/v2/UPPER/manifests/latest",
		"/v2/a/manifests/sha256:00",
		"/v2/a/manifests/-x",
		"/v2/a/blobs/sha256:00",
		"/v2/a/manifests/latest?ns=a_b",
		"/v2/a/blobs/" + testDigest + "?ns=a:99999",
		"/v2/a/tags/list?n=x",
		"/v2/a/tags/list?ns=[::1",
	} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 10)
			if w := f.do("GET", target); w.Code/100 != 4 {
				t.Errorf("status = %d, want 4xx", w.Code)
			}
			if calls := f.mem.Calls(); len(calls) != 0 {
				t.Errorf("backend called: %+v", calls)
			}
		})
	}
}

const testDigest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"

func TestHeadBlobDoesNotDownload(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10)
	if w := f.do("HEAD", "/v2/library/alpine/blobs/"+f.bdgst.String()); w.Code != 200 {
		t.Fatalf("status = %d", w.Code)
	}
	calls := f.mem.Calls()
	if len(calls) != 1 || calls[0].Op != shimtest.OpStatBlob {
		t.Errorf("calls = %+v, want one StatBlob", calls)
	}
}

func TestManifestHeadAsksBackendForHead(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10)
	f.do("HEAD", "/v2/library/alpine/manifests/latest")
	f.do("GET", "/v2/library/alpine/manifests/latest")
	calls := f.mem.Calls()
	if len(calls) != 2 || !calls[0].Head || calls[1].Head {
		t.Errorf("calls = %+v, want a HEAD then a GET", calls)
	}
}

func TestStaleManifest(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10)
	if w := f.do("GET", "/v2/library/alpine/manifests/latest"); w.Header().Get("Warning") != "" || w.Header().Get("Shoal-Stale") != "" {
		t.Errorf("fresh manifest marked stale: %v", w.Header())
	}
	f.mem.SetStale(true)
	for _, method := range []string{"GET", "HEAD"} {
		w := f.do(method, "/v2/library/alpine/manifests/latest")
		if w.Code != 200 {
			t.Fatalf("%s status = %d", method, w.Code)
		}
		if got := w.Header().Get("Warning"); got != `110 shoal "Response is Stale"` {
			t.Errorf("%s Warning = %q", method, got)
		}
		if got := w.Header().Get("Shoal-Stale"); got != "true" {
			t.Errorf("%s Shoal-Stale = %q", method, got)
		}
	}
}

func TestBackendErrors(t *testing.T) {
	t.Parallel()
	const secret = "/ip4/10.9.8.7/tcp/4001/p2p/12D3KooWLeak"
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("upstream %s: %w", secret, registryshim.ErrUnavailable), 503, "UNAVAILABLE"},
		{fmt.Errorf("upstream %s: %w", secret, registryshim.ErrUnauthorized), 401, "UNAUTHORIZED"},
		{fmt.Errorf("upstream %s: %w", secret, registryshim.ErrDenied), 403, "DENIED"},
		{fmt.Errorf("upstream %s: %w", secret, registryshim.ErrTooManyRequests), 429, "TOOMANYREQUESTS"},
		{fmt.Errorf("swarm %s: %w", secret, context.DeadlineExceeded), 503, "UNAVAILABLE"},
		{errors.New(secret), 500, "UNKNOWN"},
	}
	for _, tt := range tests {
		for _, target := range []string{
			"GET /v2/library/alpine/manifests/latest",
			"HEAD /v2/library/alpine/manifests/latest",
			"GET /v2/library/alpine/blobs/" + testDigest,
			"HEAD /v2/library/alpine/blobs/" + testDigest,
			"GET /v2/library/alpine/tags/list",
		} {
			t.Run(tt.code+" "+target, func(t *testing.T) {
				t.Parallel()
				var logs bytes.Buffer
				f := newFixture(t, 10, registryshim.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
				f.mem.SetHook(func(context.Context, shimtest.Call) error { return tt.err })
				method, path, _ := strings.Cut(target, " ")
				w := f.do(method, path)
				if w.Code != tt.status {
					t.Fatalf("status = %d, want %d", w.Code, tt.status)
				}
				if method == "GET" {
					if got := errorCode(t, w); got != tt.code {
						t.Errorf("code = %s, want %s", got, tt.code)
					}
				}
				if strings.Contains(w.Body.String(), "12D3KooW") || strings.Contains(fmt.Sprint(w.Header()), "12D3KooW") {
					t.Errorf("response leaks the wrapped error: %v %s", w.Header(), w.Body)
				}
				if tt.status >= 500 && !strings.Contains(logs.String(), "12D3KooWLeak") {
					t.Errorf("full error not logged: %s", logs.String())
				}
			})
		}
	}
}

// badBackend answers manifests that contradict themselves.
type badBackend struct {
	*shimtest.Memory
	m *registryshim.Manifest
}

func (b badBackend) Manifest(context.Context, registryshim.Repo, string, bool) (*registryshim.Manifest, error) {
	return b.m, nil
}

func TestInconsistentManifestRefused(t *testing.T) {
	t.Parallel()
	body := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(body)
	other := digest.FromString("other")
	good := registryshim.Manifest{MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(body)), Body: body}
	tests := []struct {
		name   string
		target string
		edit   func(m *registryshim.Manifest)
	}{
		{"no media type", "latest", func(m *registryshim.Manifest) { m.MediaType = "" }},
		{"bad digest", "latest", func(m *registryshim.Manifest) { m.Digest = "sha256:1" }},
		{"other digest than asked", other.String(), func(*registryshim.Manifest) {}},
		{"size mismatch", "latest", func(m *registryshim.Manifest) { m.Size++ }},
		{"negative size", "latest", func(m *registryshim.Manifest) { m.Size = -1; m.Body = nil }},
		{"body does not hash", "latest", func(m *registryshim.Manifest) { m.Digest = other }},
		{"no body on GET", "latest", func(m *registryshim.Manifest) { m.Body = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := good
			tt.edit(&m)
			h := registryshim.New(badBackend{Memory: shimtest.NewMemory(), m: &m})
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/v2/a/manifests/"+tt.target, nil))
			if w.Code != 500 {
				t.Errorf("status = %d, want 500", w.Code)
			}
		})
	}
	t.Run("nil", func(t *testing.T) {
		t.Parallel()
		h := registryshim.New(badBackend{Memory: shimtest.NewMemory()})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("HEAD", "/v2/a/manifests/latest", nil))
		if w.Code != 500 {
			t.Errorf("status = %d, want 500", w.Code)
		}
	})
	t.Run("good", func(t *testing.T) {
		t.Parallel()
		m := good
		h := registryshim.New(badBackend{Memory: shimtest.NewMemory(), m: &m})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/v2/a/manifests/"+d.String(), nil))
		if w.Code != 200 {
			t.Errorf("status = %d, want 200", w.Code)
		}
	})
}

func TestRange(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1000)
	etag := `"` + f.bdgst.String() + `"`
	tests := []struct {
		name         string
		header       []string
		status       int
		body         []byte
		contentRange string
	}{
		{"none", nil, 200, f.blob, ""},
		{"first bytes", []string{"Range", "bytes=0-9"}, 206, f.blob[:10], "bytes 0-9/1000"},
		{"middle", []string{"Range", "bytes=100-199"}, 206, f.blob[100:200], "bytes 100-199/1000"},
		{"open end", []string{"Range", "bytes=990-"}, 206, f.blob[990:], "bytes 990-999/1000"},
		{"suffix", []string{"Range", "bytes=-5"}, 206, f.blob[995:], "bytes 995-999/1000"},
		{"end clamped", []string{"Range", "bytes=500-5000"}, 206, f.blob[500:], "bytes 500-999/1000"},
		{"past the end", []string{"Range", "bytes=1000-"}, 416, nil, "bytes */1000"},
		{"empty suffix", []string{"Range", "bytes=-0"}, 416, nil, "bytes */1000"},
		{"multi range served whole", []string{"Range", "bytes=0-1,5-6"}, 200, f.blob, ""},
		{"malformed ignored", []string{"Range", "bytes=x-y"}, 200, f.blob, ""},
		{"reversed ignored", []string{"Range", "bytes=9-1"}, 200, f.blob, ""},
		{"other unit ignored", []string{"Range", "pieces=0-1"}, 200, f.blob, ""},
		{"if-range matches", []string{"Range", "bytes=0-9", "If-Range", etag}, 206, f.blob[:10], "bytes 0-9/1000"},
		{"if-range stale", []string{"Range", "bytes=0-9", "If-Range", `"sha256:0"`}, 200, f.blob, ""},
		{"if-range date", []string{"Range", "bytes=0-9", "If-Range", "Mon, 02 Jan 2006 15:04:05 GMT"}, 200, f.blob, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := f.do("GET", "/v2/library/alpine/blobs/"+f.bdgst.String(), tt.header...)
			if w.Code != tt.status {
				t.Fatalf("status = %d, want %d", w.Code, tt.status)
			}
			if got := w.Header().Get("Content-Range"); got != tt.contentRange {
				t.Errorf("Content-Range = %q, want %q", got, tt.contentRange)
			}
			if tt.status == 416 {
				if got := errorCode(t, w); got != "RANGE_NOT_SATISFIABLE" {
					t.Errorf("code = %s", got)
				}
				return
			}
			if !bytes.Equal(w.Body.Bytes(), tt.body) {
				t.Errorf("body is %d bytes, want %d", w.Body.Len(), len(tt.body))
			}
			if got, want := w.Header().Get("Content-Length"), strconv.Itoa(len(tt.body)); got != want {
				t.Errorf("Content-Length = %s, want %s", got, want)
			}
		})
	}
}

func TestEmptyBlob(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 0)
	w := f.do("GET", "/v2/library/alpine/blobs/"+f.bdgst.String())
	if w.Code != 200 || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "0" {
		t.Errorf("status %d, %d bytes, Content-Length %q", w.Code, w.Body.Len(), w.Header().Get("Content-Length"))
	}
	if w := f.do("GET", "/v2/library/alpine/blobs/"+f.bdgst.String(), "Range", "bytes=0-"); w.Code != 416 {
		t.Errorf("range on empty blob: status %d, want 416", w.Code)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f := newFixture(t, 1000, registryshim.WithRegisterer(reg))
	// A second handler on the same registerer shares the collectors.
	second := registryshim.New(f.mem, registryshim.WithRegisterer(reg))

	f.do("GET", "/v2/library/alpine/blobs/"+f.bdgst.String())
	f.do("GET", "/v2/library/alpine/manifests/nope")
	f.do("PUT", "/v2/library/alpine/manifests/latest")
	w := httptest.NewRecorder()
	second.ServeHTTP(w, httptest.NewRequest("HEAD", "/v2/library/alpine/manifests/latest", nil))

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"shoal_registry_requests_total", map[string]string{"route": "blob", "method": "GET", "code": "200"}, 1},
		{"shoal_registry_requests_total", map[string]string{"route": "manifest", "method": "HEAD", "code": "200"}, 1},
		{"shoal_registry_requests_total", map[string]string{"route": "manifest", "method": "GET", "code": "404"}, 1},
		{"shoal_registry_requests_total", map[string]string{"route": "manifest", "method": "other", "code": "405"}, 1},
		{"shoal_registry_response_bytes_total", map[string]string{"route": "blob"}, 1000},
		{"shoal_registry_request_duration_seconds", map[string]string{"route": "manifest"}, 3}, // sample count
	} {
		if got := metricValue(families, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

// metricValue returns a counter's value or a histogram's sample count.
func metricValue(families []*dto.MetricFamily, name string, labels map[string]string) float64 {
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}
