package registryshim_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim"
	"github.com/shoal-dev/shoal/registryshim/shimtest"
)

// memPush is a PushBackend over shimtest.Memory: sessions in memory, a
// finished blob stored only when it hashes to its digest.
type memPush struct {
	*shimtest.Memory
	mu       sync.Mutex
	sessions map[string]*bytes.Buffer
}

func newMemPush() *memPush {
	return &memPush{Memory: shimtest.NewMemory(), sessions: map[string]*bytes.Buffer{}}
}

var _ registryshim.PushBackend = (*memPush)(nil)

func (m *memPush) StartUpload(context.Context, registryshim.Pusher) (string, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[id] = &bytes.Buffer{}
	return id, nil
}

func (m *memPush) session(id string) (*bytes.Buffer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.sessions[id]; s != nil {
		return s, nil
	}
	return nil, registryshim.ErrBlobUploadUnknown
}

func (m *memPush) UploadOffset(_ context.Context, _ registryshim.Pusher, id string) (int64, error) {
	s, err := m.session(id)
	if err != nil {
		return 0, err
	}
	return int64(s.Len()), nil
}

func (m *memPush) WriteUpload(_ context.Context, _ registryshim.Pusher, id string, c registryshim.Chunk) (int64, error) {
	s, err := m.session(id)
	if err != nil {
		return 0, err
	}
	if c.Offset >= 0 && c.Offset != int64(s.Len()) {
		return 0, registryshim.ErrUploadOutOfOrder
	}
	n, err := io.Copy(s, c.Body)
	if err != nil {
		return 0, err
	}
	if c.Length >= 0 && n != c.Length {
		return 0, registryshim.ErrSizeInvalid
	}
	return int64(s.Len()), nil
}

func (m *memPush) FinishUpload(ctx context.Context, p registryshim.Pusher, id string, d digest.Digest, c registryshim.Chunk) error {
	if _, err := m.WriteUpload(ctx, p, id, c); err != nil {
		return err
	}
	s, _ := m.session(id)
	m.mu.Lock()
	delete(m.sessions, id)
	m.mu.Unlock()
	if digest.FromBytes(s.Bytes()) != d {
		return registryshim.ErrDigestInvalid
	}
	m.PutBlob(p.Repo, s.Bytes())
	return nil
}

func (m *memPush) CancelUpload(_ context.Context, _ registryshim.Pusher, id string) error {
	if _, err := m.session(id); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, id)
	return nil
}

func (m *memPush) MountBlob(ctx context.Context, p registryshim.Pusher, from string, d digest.Digest) (string, error) {
	b, err := m.Blob(ctx, registryshim.Repo{Registry: p.Repo.Registry, Name: from}, d)
	if err != nil {
		return m.StartUpload(ctx, p)
	}
	defer b.Close()
	data := make([]byte, b.Size())
	if _, err := b.ReadAt(data, 0); err != nil && err != io.EOF {
		return "", err
	}
	m.PutBlob(p.Repo, data)
	return "", nil
}

func (m *memPush) PutManifest(_ context.Context, p registryshim.Pusher, ref string, man *registryshim.Manifest) error {
	tag := ref
	if strings.Contains(ref, ":") {
		tag = ""
	}
	m.Memory.PutManifest(p.Repo, tag, man.MediaType, man.Body)
	return nil
}

// A real client pushes an image and an index through the handler, then
// pulls them back and verifies every digest.
func TestGoContainerRegistryPush(t *testing.T) {
	t.Parallel()
	// With the challenge: a client holding no credentials goes on.
	srv := httptest.NewServer(registryshim.New(newMemPush(), registryshim.WithCredentialChallenge()))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	opt := remote.WithTransport(srv.Client().Transport)

	img, err := random.Image(100<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(4096, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	imgRef, _ := name.ParseReference(host + "/push/img:v1")
	idxRef, _ := name.ParseReference(host + "/push/idx:v1")
	if err := remote.Write(imgRef, img, opt); err != nil {
		t.Fatalf("push image: %v", err)
	}
	if err := remote.WriteIndex(idxRef, idx, opt); err != nil {
		t.Fatalf("push index: %v", err)
	}
	got, err := remote.Image(imgRef, opt)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustDigest(t, got.Digest), mustDigest(t, img.Digest); a != b {
		t.Errorf("pulled %s, pushed %s", a, b)
	}
	verifyImage(t, got)
	gotIdx, err := remote.Index(idxRef, opt)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustDigest(t, gotIdx.Digest), mustDigest(t, idx.Digest); a != b {
		t.Errorf("pulled index %s, pushed %s", a, b)
	}
	// A second push of the same image mounts nothing and uploads nothing
	// new; it must succeed all the same. And one into another repository
	// mounts the layers across.
	if err := remote.Write(imgRef, img, opt); err != nil {
		t.Fatalf("second push: %v", err)
	}
	other, _ := name.ParseReference(host + "/push/other:v1")
	if err := remote.Write(other, img, opt); err != nil {
		t.Fatalf("push to another repository: %v", err)
	}
}

func mustDigest[T fmt.Stringer](t *testing.T, f func() (T, error)) string {
	t.Helper()
	d, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// pushCase is one raw request of the push workflow and what must come back.
type pushCase struct {
	method, path string
	header       map[string]string
	body         string
	status       int
	code         string // OCI error code, when status is an error
}

func (c pushCase) do(t *testing.T, base string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), c.method, base+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != c.status {
		t.Fatalf("%s %s: status %d, want %d; body %s", c.method, c.path, resp.StatusCode, c.status, body)
	}
	if c.code != "" {
		var e struct {
			Errors []struct{ Code string } `json:"errors"`
		}
		if json.Unmarshal(body, &e) != nil || len(e.Errors) != 1 || e.Errors[0].Code != c.code {
			t.Fatalf("%s %s: body %s, want code %s", c.method, c.path, body, c.code)
		}
	}
	return resp
}

// location is the path of a response's Location header.
func location(t *testing.T, resp *http.Response) string {
	t.Helper()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/v2/") {
		t.Fatalf("Location %q", loc)
	}
	return loc
}

// TestPushWorkflow walks the OCI conformance suite's push workflow with
// raw requests: monolithic (POST then PUT, and POST with ?digest=),
// chunked with status checks and an out-of-order chunk, cross-repository
// mount and its fallback, cancel, manifests by tag and digest, and every
// error it expects.
func TestPushWorkflow(t *testing.T) {
	t.Parallel()
	mem := newMemPush()
	srv := httptest.NewServer(registryshim.New(mem, registryshim.WithCredentialChallenge()))
	defer srv.Close()
	base := srv.URL
	blob := strings.Repeat("shoal push ", 1000)
	d := digest.FromString(blob).String()
	octet := map[string]string{"Content-Type": "application/octet-stream"}

	t.Run("base-challenges", func(t *testing.T) {
		resp := pushCase{method: "GET", path: "/v2/", status: 401, code: "UNAUTHORIZED"}.do(t, base)
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
		}
		pushCase{method: "GET", path: "/v2/", header: map[string]string{"Authorization": "Basic dTpw"}, status: 200}.do(t, base)
	})
	t.Run("post-then-put", func(t *testing.T) {
		resp := pushCase{method: "POST", path: "/v2/conf/a/blobs/uploads/", status: 202}.do(t, base)
		loc := location(t, resp)
		if resp.Header.Get("Docker-Upload-UUID") == "" {
			t.Error("no Docker-Upload-UUID")
		}
		resp = pushCase{method: "PUT", path: loc + "?digest=" + d, header: octet, body: blob, status: 201}.do(t, base)
		if got := resp.Header.Get("Location"); got != "/v2/conf/a/blobs/"+d {
			t.Errorf("Location %q", got)
		}
		if resp.Header.Get("Docker-Content-Digest") != d {
			t.Errorf("Docker-Content-Digest %q", resp.Header.Get("Docker-Content-Digest"))
		}
		pushCase{method: "HEAD", path: "/v2/conf/a/blobs/" + d, status: 200}.do(t, base)
	})
	t.Run("monolithic-post", func(t *testing.T) {
		pushCase{method: "POST", path: "/v2/conf/b/blobs/uploads/?digest=" + d, header: octet, body: blob, status: 201}.do(t, base)
		pushCase{method: "HEAD", path: "/v2/conf/b/blobs/" + d, status: 200}.do(t, base)
		pushCase{method: "POST", path: "/v2/conf/b/blobs/uploads/?digest=" + digest.FromString("other").String(), body: blob, status: 400, code: "DIGEST_INVALID"}.do(t, base)
		pushCase{method: "POST", path: "/v2/conf/b/blobs/uploads/?digest=sha256:nothex", body: blob, status: 400, code: "DIGEST_INVALID"}.do(t, base)
	})
	t.Run("chunked", func(t *testing.T) {
		loc := location(t, pushCase{method: "POST", path: "/v2/conf/c/blobs/uploads/", status: 202}.do(t, base))
		half := len(blob) / 2
		resp := pushCase{method: "PATCH", path: loc, body: blob[:half], status: 202, header: map[string]string{
			"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("0-%d", half-1)}}.do(t, base)
		if got, want := resp.Header.Get("Range"), fmt.Sprintf("0-%d", half-1); got != want {
			t.Errorf("Range %q, want %q", got, want)
		}
		loc = location(t, resp)
		resp = pushCase{method: "GET", path: loc, status: 204}.do(t, base)
		if got, want := resp.Header.Get("Range"), fmt.Sprintf("0-%d", half-1); got != want {
			t.Errorf("status Range %q, want %q", got, want)
		}
		// Out of order: the spec's 416, with where the upload stands.
		resp = pushCase{method: "PATCH", path: loc, body: blob[half+1:], status: 416, code: "BLOB_UPLOAD_INVALID",
			header: map[string]string{"Content-Range": fmt.Sprintf("%d-%d", half+1, len(blob)-1)}}.do(t, base)
		if got, want := resp.Header.Get("Range"), fmt.Sprintf("0-%d", half-1); got != want {
			t.Errorf("416 Range %q, want %q", got, want)
		}
		pushCase{method: "PATCH", path: loc, body: blob[half:], status: 202,
			header: map[string]string{"Content-Range": fmt.Sprintf("%d-%d", half, len(blob)-1)}}.do(t, base)
		pushCase{method: "PUT", path: loc + "?digest=" + d, status: 201}.do(t, base)
		resp = pushCase{method: "GET", path: "/v2/conf/c/blobs/" + d, status: 200}.do(t, base)
		if resp.ContentLength != int64(len(blob)) {
			t.Errorf("blob of %d bytes, pushed %d", resp.ContentLength, len(blob))
		}
	})
	t.Run("streamed-patch", func(t *testing.T) {
		loc := location(t, pushCase{method: "POST", path: "/v2/conf/s/blobs/uploads/", status: 202}.do(t, base))
		loc = location(t, pushCase{method: "PATCH", path: loc, body: blob, status: 202}.do(t, base))
		pushCase{method: "PUT", path: loc + "?digest=" + d, status: 201}.do(t, base)
	})
	t.Run("mount", func(t *testing.T) {
		resp := pushCase{method: "POST", path: "/v2/conf/m/blobs/uploads/?mount=" + d + "&from=conf/a", status: 201}.do(t, base)
		if got := resp.Header.Get("Location"); got != "/v2/conf/m/blobs/"+d {
			t.Errorf("Location %q", got)
		}
		pushCase{method: "HEAD", path: "/v2/conf/m/blobs/" + d, status: 200}.do(t, base)
		// Not mountable: an upload session instead, as the spec allows.
		unknown := digest.FromString("not there").String()
		location(t, pushCase{method: "POST", path: "/v2/conf/m/blobs/uploads/?mount=" + unknown + "&from=conf/a", status: 202}.do(t, base))
		pushCase{method: "POST", path: "/v2/conf/m/blobs/uploads/?mount=nope&from=conf/a", status: 400, code: "DIGEST_INVALID"}.do(t, base)
		pushCase{method: "POST", path: "/v2/conf/m/blobs/uploads/?mount=" + d + "&from=Bad..Name", status: 400, code: "NAME_INVALID"}.do(t, base)
	})
	t.Run("cancel", func(t *testing.T) {
		loc := location(t, pushCase{method: "POST", path: "/v2/conf/x/blobs/uploads/", status: 202}.do(t, base))
		pushCase{method: "DELETE", path: loc, status: 204}.do(t, base)
		pushCase{method: "GET", path: loc, status: 404, code: "BLOB_UPLOAD_UNKNOWN"}.do(t, base)
		pushCase{method: "PATCH", path: loc, body: "x", status: 404, code: "BLOB_UPLOAD_UNKNOWN"}.do(t, base)
	})
	t.Run("manifests", func(t *testing.T) {
		cfg := `{"architecture":"amd64","os":"linux"}`
		cd := mem.PutBlob(registryshim.Repo{Name: "conf/a"}, []byte(cfg))
		oci := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
			cd, len(cfg), d, len(blob))
		od := digest.FromString(oci).String()
		resp := pushCase{method: "PUT", path: "/v2/conf/a/manifests/v1", body: oci, status: 201,
			header: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}}.do(t, base)
		if resp.Header.Get("Location") != "/v2/conf/a/manifests/"+od || resp.Header.Get("Docker-Content-Digest") != od {
			t.Errorf("Location %q, digest %q", resp.Header.Get("Location"), resp.Header.Get("Docker-Content-Digest"))
		}
		pushCase{method: "GET", path: "/v2/conf/a/manifests/v1", status: 200}.do(t, base)
		pushCase{method: "PUT", path: "/v2/conf/a/manifests/" + od, body: oci, status: 201,
			header: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}}.do(t, base)
		docker := strings.Replace(strings.Replace(oci, "application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json", 1),
			"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json", 1)
		pushCase{method: "PUT", path: "/v2/conf/a/manifests/docker", body: docker, status: 201,
			header: map[string]string{"Content-Type": "application/vnd.docker.distribution.manifest.v2+json"}}.do(t, base)
		index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}]}`, od, len(oci))
		pushCase{method: "PUT", path: "/v2/conf/a/manifests/index", body: index, status: 201,
			header: map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}}.do(t, base)
		// No Content-Type: the body's mediaType says what it is.
		pushCase{method: "PUT", path: "/v2/conf/a/manifests/bare", body: oci, status: 201}.do(t, base)

		pushCase{method: "PUT", path: "/v2/conf/a/manifests/" + digest.FromString("x").String(), body: oci, status: 400, code: "DIGEST_INVALID",
			header: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}}.do(t, base)
		pushCase{method: "PUT", path: "/v2/conf/a/manifests/v2", body: "not json", status: 400, code: "MANIFEST_INVALID"}.do(t, base)
		pushCase{method: "PUT", path: "/v2/conf/a/manifests/v2", body: oci, status: 400, code: "MANIFEST_INVALID",
			header: map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}}.do(t, base)
		pushCase{method: "PUT", path: "/v2/conf/a/manifests/v2", body: `{"schemaVersion":2}`, status: 400, code: "MANIFEST_INVALID"}.do(t, base)
		pushCase{method: "PUT", path: "/v2/conf/a/manifests/-bad-tag", body: oci, status: 400, code: "MANIFEST_INVALID"}.do(t, base)
		pushCase{method: "PUT", path: "/v2/conf/a/manifests/big", body: "{" + strings.Repeat(" ", 4<<20) + "}", status: 413, code: "SIZE_INVALID"}.do(t, base)
		pushCase{method: "PUT", path: "/v2/Bad..Name/manifests/v1", body: oci, status: 400, code: "NAME_INVALID"}.do(t, base)
	})
	t.Run("bad-input", func(t *testing.T) {
		loc := location(t, pushCase{method: "POST", path: "/v2/conf/e/blobs/uploads/", status: 202}.do(t, base))
		for _, cr := range []string{"abc", "5-2", "-1-3", "1-", "bytes 0-x", "0-1-2", strings.Repeat("9", 40) + "-" + strings.Repeat("9", 41)} {
			pushCase{method: "PATCH", path: loc, body: "xyz", header: map[string]string{"Content-Range": cr}, status: 400, code: "BLOB_UPLOAD_INVALID"}.do(t, base)
		}
		// Content-Range and Content-Length disagree.
		pushCase{method: "PATCH", path: loc, body: "xyz", header: map[string]string{"Content-Range": "0-9"}, status: 400, code: "SIZE_INVALID"}.do(t, base)
		pushCase{method: "PUT", path: loc, status: 400, code: "DIGEST_INVALID"}.do(t, base)
		pushCase{method: "PUT", path: loc + "?digest=md5:abc", status: 400, code: "DIGEST_INVALID"}.do(t, base)
		pushCase{method: "PUT", path: loc + "?digest=" + digest.FromString("y").String(), body: "x", status: 400, code: "DIGEST_INVALID"}.do(t, base)
		pushCase{method: "PATCH", path: "/v2/conf/e/blobs/uploads/no-such-session", body: "x", status: 404, code: "BLOB_UPLOAD_UNKNOWN"}.do(t, base)
		pushCase{method: "PATCH", path: "/v2/conf/e/blobs/uploads/bad%20id", body: "x", status: 404, code: "BLOB_UPLOAD_UNKNOWN"}.do(t, base)
		pushCase{method: "POST", path: "/v2/Bad..Name/blobs/uploads/", status: 400, code: "NAME_INVALID"}.do(t, base)
		pushCase{method: "PUT", path: "/v2/conf/e/blobs/uploads/", status: 405, code: "UNSUPPORTED"}.do(t, base)
		pushCase{method: "POST", path: "/v2/conf/e/blobs/uploads/some-id", status: 405, code: "UNSUPPORTED"}.do(t, base)
		pushCase{method: "DELETE", path: "/v2/conf/a/manifests/v1", status: 405, code: "UNSUPPORTED"}.do(t, base)
	})
}

// Without a PushBackend, the push path is 405 UNSUPPORTED and /v2/ asks
// for nothing, challenge or not; with one but no challenge, /v2/ asks for
// nothing either.
func TestPushUnsupported(t *testing.T) {
	t.Parallel()
	plain := httptest.NewServer(registryshim.New(newMemPush()))
	defer plain.Close()
	pushCase{method: "GET", path: "/v2/", status: 200}.do(t, plain.URL)
	srv := httptest.NewServer(registryshim.New(shimtest.NewMemory(), registryshim.WithCredentialChallenge()))
	defer srv.Close()
	pushCase{method: "GET", path: "/v2/", status: 200}.do(t, srv.URL)
	pushCase{method: "POST", path: "/v2/a/blobs/uploads/", status: 405, code: "UNSUPPORTED"}.do(t, srv.URL)
	pushCase{method: "PATCH", path: "/v2/a/blobs/uploads/abc", status: 405, code: "UNSUPPORTED"}.do(t, srv.URL)
	pushCase{method: "PUT", path: "/v2/a/manifests/v1", body: "{}", status: 405, code: "UNSUPPORTED"}.do(t, srv.URL)
}

// Pushes take the registry-in-path form like pulls do: the backend sees
// the registry and the repository, the client the path it used.
func TestPushRegistryInPath(t *testing.T) {
	t.Parallel()
	mem := newMemPush()
	srv := httptest.NewServer(registryshim.New(mem, registryshim.WithPathRegistries(func(h string) bool { return h == "registry.example" })))
	defer srv.Close()
	blob := "in-path blob"
	d := digest.FromString(blob)
	resp := pushCase{method: "POST", path: "/v2/registry.example/team/app/blobs/uploads/", status: 202}.do(t, srv.URL)
	loc := location(t, resp)
	if !strings.HasPrefix(loc, "/v2/registry.example/team/app/blobs/uploads/") {
		t.Errorf("Location %q", loc)
	}
	resp = pushCase{method: "PUT", path: loc + "?digest=" + d.String(), body: blob, status: 201}.do(t, srv.URL)
	if got := resp.Header.Get("Location"); got != "/v2/registry.example/team/app/blobs/"+d.String() {
		t.Errorf("Location %q", got)
	}
	if _, err := mem.StatBlob(t.Context(), registryshim.Repo{Registry: "registry.example", Name: "team/app"}, d); err != nil {
		t.Errorf("the backend did not get the blob under registry.example/team/app: %v", err)
	}
}
