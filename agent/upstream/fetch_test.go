package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestManifest(t *testing.T) {
	t.Parallel()
	origin := newOrigin()
	img := pushImage(t, origin, "team/app", 1)
	c := newClient(t, testConfig(serve(t, origin).URL))
	ctx := t.Context()

	for _, tag := range []string{"docker", "oci", "index", "list"} {
		t.Run(tag, func(t *testing.T) {
			t.Parallel()
			want := img.manifests[tag]
			wantDesc := Descriptor{MediaType: img.mediaTypes[tag], Digest: digest.FromBytes(want), Size: int64(len(want))}
			for _, ref := range []string{tag, wantDesc.Digest.String()} {
				d, body, err := c.Manifest(ctx, "", "team/app", ref)
				if err != nil {
					t.Fatalf("Manifest(%s): %v", ref, err)
				}
				if !bytes.Equal(body, want) {
					t.Errorf("Manifest(%s): body differs from what was pushed", ref)
				}
				if d != wantDesc {
					t.Errorf("Manifest(%s) = %+v, want %+v", ref, d, wantDesc)
				}
				hd, err := c.HeadManifest(ctx, "", "team/app", ref)
				if err != nil {
					t.Fatalf("HeadManifest(%s): %v", ref, err)
				}
				if hd != wantDesc {
					t.Errorf("HeadManifest(%s) = %+v, want %+v", ref, hd, wantDesc)
				}
			}
		})
	}
}

// stripRange serves h as a registry that ignores Range.
func stripRange(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Range")
		h.ServeHTTP(w, r)
	})
}

func TestBlob(t *testing.T) {
	t.Parallel()
	origin := newOrigin()
	img := pushImage(t, origin, "app", 2)
	size := int64(len(img.layer))
	for _, tc := range []struct {
		name    string
		handler http.Handler
	}{
		{"range", origin},
		{"range ignored", stripRange(origin)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, testConfig(serve(t, tc.handler).URL))
			ctx := t.Context()
			got, err := c.BlobSize(ctx, "", "app", img.layerDesc.Digest)
			if err != nil || got != size {
				t.Fatalf("BlobSize = %d, %v; want %d", got, err, size)
			}
			for _, off := range []int64{0, 1, 4096, size - 1, size} {
				rc, err := c.Blob(ctx, "", "app", img.layerDesc.Digest, off)
				if err != nil {
					t.Fatalf("Blob(offset %d): %v", off, err)
				}
				if b := readAll(t, rc); !bytes.Equal(b, img.layer[off:]) {
					t.Errorf("Blob(offset %d): got %d bytes, not the blob's tail of %d", off, len(b), size-off)
				}
			}
			_, err = c.Blob(ctx, "", "app", img.layerDesc.Digest, size+1)
			if !errors.Is(err, ErrRangeNotSatisfiable) {
				t.Errorf("Blob(offset past end) = %v, want ErrRangeInvalid", err)
			}
		})
	}
}

// BlobRange asks for its range only, with the end spelled out, so the
// upstream sends no byte past it; a range past the blob's end gets its
// tail; an upstream that ignores Range still gives the right bytes first.
func TestBlobRange(t *testing.T) {
	t.Parallel()
	origin := newOrigin()
	img := pushImage(t, origin, "app", 2)
	size := int64(len(img.layer))
	var mu sync.Mutex
	var ranges []string
	recording := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") && r.Method == http.MethodGet {
				mu.Lock()
				ranges = append(ranges, r.Header.Get("Range"))
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		})
	}
	for _, tc := range []struct {
		name    string
		handler http.Handler
	}{
		{"range", recording(origin)},
		{"range ignored", stripRange(origin)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, testConfig(serve(t, tc.handler).URL))
			for _, r := range []struct{ off, n int64 }{{0, 10}, {100, 1000}, {size - 5, 5}, {size - 5, 50}} {
				rc, err := c.BlobRange(t.Context(), "", "app", img.layerDesc.Digest, r.off, r.n)
				if err != nil {
					t.Fatalf("BlobRange(%d, %d): %v", r.off, r.n, err)
				}
				got, err := io.ReadAll(io.LimitReader(rc, r.n))
				rc.Close()
				if want := img.layer[r.off:min(size, r.off+r.n)]; err != nil || !bytes.Equal(got, want) {
					t.Errorf("BlobRange(%d, %d): %d bytes, %v; want %d bytes of the blob", r.off, r.n, len(got), err, len(want))
				}
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	// The last range ends past the blob: an upstream may answer 416 and be
	// asked again with the blob's end.
	want := []string{"bytes=0-9", "bytes=100-1099", fmt.Sprintf("bytes=%d-%d", size-5, size-1)}
	if len(ranges) < len(want) || !slices.Equal(ranges[:len(want)], want) {
		t.Errorf("Ranges sent %q, want %q first", ranges, want)
	}
	for _, r := range ranges {
		if strings.HasSuffix(r, "-") {
			t.Errorf("open-ended Range %q sent", r)
		}
	}
}

func TestTags(t *testing.T) {
	t.Parallel()
	origin := newOrigin()
	pushImage(t, origin, "app", 3) // tags: docker, index, list, oci
	c := newClient(t, testConfig(serve(t, origin).URL))
	for _, tc := range []struct {
		n    int
		last string
		want []string
	}{
		{0, "", []string{"docker", "index", "list", "oci"}},
		{2, "", []string{"docker", "index"}},
		{2, "index", []string{"list", "oci"}},
		{10, "list", []string{"oci"}},
	} {
		got, err := c.Tags(t.Context(), "", "app", tc.n, tc.last)
		if err != nil {
			t.Fatalf("Tags(%d, %q): %v", tc.n, tc.last, err)
		}
		if len(got) != len(tc.want) || (len(got) > 0 && !equal(got, tc.want)) {
			t.Errorf("Tags(%d, %q) = %q, want %q", tc.n, tc.last, got, tc.want)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestErrors(t *testing.T) {
	t.Parallel()
	origin := newOrigin()
	img := pushImage(t, origin, "app", 4)
	c := newClient(t, testConfig(serve(t, origin).URL))
	missing := digest.FromString("missing")
	blob := func(repo string, d digest.Digest, off int64) func(context.Context) error {
		return func(ctx context.Context) error {
			rc, err := c.Blob(ctx, "", repo, d, off)
			if err == nil {
				rc.Close()
			}
			return err
		}
	}
	manifest := func(repo, ref string) func(context.Context) error {
		return func(ctx context.Context) error { _, _, err := c.Manifest(ctx, "", repo, ref); return err }
	}
	for _, tc := range []struct {
		name string
		call func(context.Context) error
		want error
	}{
		{"unknown tag", manifest("app", "nope"), ErrManifestNotFound},
		{"unknown manifest digest", manifest("app", missing.String()), ErrManifestNotFound},
		{"unknown repository", manifest("other", "latest"), ErrRepositoryNotFound},
		{"head unknown tag", func(ctx context.Context) error { _, err := c.HeadManifest(ctx, "", "app", "nope"); return err }, ErrManifestNotFound},
		{"unknown blob", blob("app", missing, 0), ErrBlobNotFound},
		{"unknown blob size", func(ctx context.Context) error { _, err := c.BlobSize(ctx, "", "app", missing); return err }, ErrBlobNotFound},
		{"tags of unknown repository", func(ctx context.Context) error { _, err := c.Tags(ctx, "", "other", 0, ""); return err }, ErrRepositoryNotFound},
		{"invalid repository", manifest("App/../x", "latest"), ErrInvalidName},
		{"invalid digest", manifest("app", "sha256:xyz"), ErrInvalidDigest},
		{"unsupported digest algorithm", manifest("app", "md5:d41d8cd98f00b204e9800998ecf8427e"), ErrInvalidDigest},
		{"invalid tag", manifest("app", "-bad"), ErrManifestNotFound},
		{"invalid blob digest", blob("app", "sha256:zz", 0), ErrInvalidDigest},
		{"negative offset", blob("app", img.layerDesc.Digest, -1), ErrRangeNotSatisfiable},
		{"negative n", func(ctx context.Context) error { _, err := c.Tags(ctx, "", "app", -1, ""); return err }, ErrInvalidPagination},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.call(t.Context()); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// fakeOrigin answers /v2/ with 200 and everything else with answer.
func fakeOrigin(answer http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		answer(w, r)
	})
}

func TestStatusMapping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		body   string
		want   error
	}{
		{http.StatusUnauthorized, "", ErrUnauthorized},
		{http.StatusForbidden, "", ErrDenied},
		{http.StatusTooManyRequests, `{"errors":[{"code":"TOOMANYREQUESTS"}]}`, ErrTooManyRequests},
		{http.StatusInternalServerError, "oops", ErrUnavailable},
		{http.StatusBadGateway, "", ErrUnavailable},
		{http.StatusNotFound, `{"errors":[{"code":"NAME_UNKNOWN","message":"no such repo"}]}`, ErrRepositoryNotFound},
		{http.StatusNotFound, "", ErrManifestNotFound},
		{http.StatusBadRequest, `{"errors":[{"code":"MANIFEST_INVALID"}]}`, ErrInvalidManifest},
		{http.StatusTeapot, "", ErrUnexpected},
	} {
		t.Run(http.StatusText(tc.status)+" "+tc.body, func(t *testing.T) {
			t.Parallel()
			srv := serve(t, fakeOrigin(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			}))
			c := newClient(t, testConfig(srv.URL))
			if _, _, err := c.Manifest(t.Context(), "", "app", "v1"); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestManifestVerified checks that no 200 with wrong bytes gets through and
// that a manifest with a vague Content-Type still gets its real type.
func TestManifestVerified(t *testing.T) {
	t.Parallel()
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{},"layers":[]}`)
	other := digest.FromString("something else")
	srv := serve(t, fakeOrigin(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v2/app/manifests/lying" {
			w.Header().Set(headerDigest, other.String())
		}
		w.Write(body)
	}))
	c := newClient(t, testConfig(srv.URL))
	ctx := t.Context()

	d, got, err := c.Manifest(ctx, "", "app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	want := Descriptor{MediaType: mediaTypeDockerManifest, Digest: digest.FromBytes(body), Size: int64(len(body))}
	if d != want || !bytes.Equal(got, body) {
		t.Errorf("Manifest = %+v, want %+v", d, want)
	}
	if hd, err := c.HeadManifest(ctx, "", "app", "v1"); err != nil || hd != want {
		t.Errorf("HeadManifest = %+v, %v; want %+v (from a GET, as HEAD said too little)", hd, err, want)
	}
	for _, ref := range []string{other.String(), "lying"} {
		_, _, err := c.Manifest(ctx, "", "app", ref)
		if !errors.Is(err, ErrDigestMismatch) || !errors.Is(err, ErrUnavailable) {
			t.Errorf("Manifest(%s) = %v, want ErrDigestMismatch and ErrUnavailable", ref, err)
		}
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	origin := newOrigin()
	img := pushImage(t, origin, "app", 5)
	reg := prometheus.NewRegistry()
	c := newClient(t, testConfig(serve(t, origin).URL), WithRegisterer(reg))
	ctx := t.Context()
	readAll(t, must(c.Blob(ctx, "", "app", img.layerDesc.Digest, 0)))
	c.Manifest(ctx, "", "app", "nope")
	c.HeadManifest(ctx, "", "app", "oci")

	m := c.metrics
	if got := value(t, m.bytes); got != float64(len(img.layer)) {
		t.Errorf("bytes_total = %v, want %d", got, len(img.layer))
	}
	for _, tc := range []struct{ kind, code string }{{"blob", "200"}, {"manifest", "404"}, {"head", "200"}} {
		if got := value(t, m.requests.WithLabelValues(tc.kind, tc.code)); got != 1 {
			t.Errorf("requests_total{kind=%q,code=%q} = %v, want 1", tc.kind, tc.code, got)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "shoal_upstream_request_duration_seconds" && len(f.GetMetric()) != 3 {
			t.Errorf("duration series = %d, want 3 (blob, manifest, head)", len(f.GetMetric()))
		}
	}
	// A second client on another registry must not collide.
	newClient(t, testConfig(""), WithRegisterer(prometheus.NewRegistry()))
}

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
