package upstream

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
)

// newOrigin returns go-containerregistry's in-memory registry, quiet.
func newOrigin() http.Handler {
	return registry.New(registry.Logger(log.New(io.Discard, "", 0)))
}

// serve starts h on loopback for the test's lifetime.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func hostOf(srv *httptest.Server) string {
	u, _ := url.Parse(srv.URL)
	return u.Host
}

// put sends a request straight to an origin handler, bypassing any auth
// wrapper the test serves it behind.
func put(t testing.TB, h http.Handler, method, target, contentType string, body []byte, want int) {
	t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, target, rec.Code, want, rec.Body)
	}
}

func pushBlob(t testing.TB, h http.Handler, repo string, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	put(t, h, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), "", data, http.StatusCreated)
	return d
}

func pushManifest(t *testing.T, h http.Handler, repo, ref, mediaType string, body []byte) {
	t.Helper()
	put(t, h, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, mediaType, body, http.StatusCreated)
}

type desc struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int           `json:"size"`
}

// image is a pushed test image: one layer, described by a manifest of each
// kind, tagged by kind.
type image struct {
	layer      []byte
	layerDesc  desc
	manifests  map[string][]byte // tag → bytes; the tag is the media type's short name
	mediaTypes map[string]string
}

// pushImage pushes an image to repo under the tags docker, oci, index and
// list. The layer is random but fixed by seed, so two origins seeded
// differently serve different bytes.
func pushImage(t *testing.T, h http.Handler, repo string, seed uint64) image {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	layer := make([]byte, 300<<10+17)
	for i := range layer {
		layer[i] = byte(rng.Uint32())
	}
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	img := image{
		layer:      layer,
		manifests:  map[string][]byte{},
		mediaTypes: map[string]string{},
	}
	img.layerDesc = desc{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: pushBlob(t, h, repo, layer), Size: len(layer)}
	cfgDesc := desc{MediaType: "application/vnd.oci.image.config.v1+json", Digest: pushBlob(t, h, repo, config), Size: len(config)}

	add := func(tag, mediaType string, v any) desc {
		// Indented on purpose: byte-exactness must not depend on a canonical form.
		b, err := json.MarshalIndent(v, "", "   ")
		if err != nil {
			t.Fatal(err)
		}
		pushManifest(t, h, repo, tag, mediaType, b)
		img.manifests[tag] = b
		img.mediaTypes[tag] = mediaType
		return desc{MediaType: mediaType, Digest: digest.FromBytes(b), Size: len(b)}
	}
	oci := add("oci", mediaTypeOCIManifest, map[string]any{
		"schemaVersion": 2, "mediaType": mediaTypeOCIManifest, "config": cfgDesc, "layers": []desc{img.layerDesc},
	})
	dockerCfg, dockerLayer := cfgDesc, img.layerDesc
	dockerCfg.MediaType = "application/vnd.docker.container.image.v1+json"
	dockerLayer.MediaType = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	docker := add("docker", mediaTypeDockerManifest, map[string]any{
		"schemaVersion": 2, "mediaType": mediaTypeDockerManifest, "config": dockerCfg, "layers": []desc{dockerLayer},
	})
	add("index", mediaTypeOCIIndex, map[string]any{
		"schemaVersion": 2, "mediaType": mediaTypeOCIIndex, "manifests": []desc{oci},
	})
	add("list", mediaTypeDockerList, map[string]any{
		"schemaVersion": 2, "mediaType": mediaTypeDockerList, "manifests": []desc{docker},
	})
	return img
}

// testConfig is a Config with a short timeout and the given default.
func testConfig(def string) Config {
	cfg := DefaultConfig()
	cfg.Default = def
	cfg.Timeout = 5 * time.Second
	return cfg
}

func newClient(t testing.TB, cfg Config, opts ...Option) *Client {
	t.Helper()
	c, err := New(cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func readAll(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}
