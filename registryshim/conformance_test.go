package registryshim_test

import (
	"io"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim"
	"github.com/shoal-dev/shoal/registryshim/shimtest"
)

// A real client pulls an image and a multi-platform index through the
// handler and verifies every digest.
func TestGoContainerRegistryPull(t *testing.T) {
	t.Parallel()
	repo := registryshim.Repo{Name: "library/random"}
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := random.Index(1024, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	mem := shimtest.NewMemory()
	if err := mem.PutImage(repo, "img", img); err != nil {
		t.Fatal(err)
	}
	if err := mem.PutIndex(repo, "idx", idx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registryshim.New(mem))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	opt := remote.WithTransport(srv.Client().Transport)
	ref := func(s string) name.Reference {
		t.Helper()
		r, err := name.ParseReference(host + "/library/random" + s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("image", func(t *testing.T) {
		want, _ := img.Digest()
		got, err := remote.Image(ref(":img"), opt)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := got.Digest(); d != want {
			t.Errorf("digest = %s, want %s", d, want)
		}
		verifyImage(t, got)
	})
	t.Run("image by digest", func(t *testing.T) {
		want, _ := img.Digest()
		got, err := remote.Image(ref("@"+want.String()), opt)
		if err != nil {
			t.Fatal(err)
		}
		verifyImage(t, got)
	})
	t.Run("head", func(t *testing.T) {
		want, _ := img.Digest()
		raw, _ := img.RawManifest()
		mt, _ := img.MediaType()
		desc, err := remote.Head(ref(":img"), opt)
		if err != nil {
			t.Fatal(err)
		}
		if desc.Digest != want || desc.Size != int64(len(raw)) || desc.MediaType != mt {
			t.Errorf("head = %+v, want %s, %d bytes, %s", desc, want, len(raw), mt)
		}
	})
	t.Run("index", func(t *testing.T) {
		want, _ := idx.Digest()
		got, err := remote.Index(ref(":idx"), opt)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := got.Digest(); d != want {
			t.Errorf("digest = %s, want %s", d, want)
		}
		im, err := got.IndexManifest()
		if err != nil || len(im.Manifests) != 3 {
			t.Fatalf("index manifest: %v, %v", im, err)
		}
		for _, desc := range im.Manifests {
			child, err := got.Image(desc.Digest)
			if err != nil {
				t.Fatal(err)
			}
			verifyImage(t, child)
		}
	})
	t.Run("tags", func(t *testing.T) {
		tags, err := remote.List(ref(":img").Context(), opt)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(tags, []string{"idx", "img"}) {
			t.Errorf("tags = %v", tags)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := remote.Image(ref(":nope"), opt); err == nil || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
			t.Errorf("error = %v, want MANIFEST_UNKNOWN", err)
		}
	})
}

// verifyImage checks what a runtime checks: the manifest hashes to its
// digest, the config and every layer to the digests the manifest names.
// (pkg/v1/validate would do it too, but needs a module the project lacks.)
func verifyImage(t *testing.T, img v1.Image) {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := img.Digest(); digest.FromBytes(raw).String() != want.String() {
		t.Errorf("manifest does not hash to %s", want)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(cfg).String() != m.Config.Digest.String() {
		t.Errorf("config does not hash to %s", m.Config.Digest)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != len(m.Layers) || len(layers) == 0 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	for _, l := range layers {
		checkCompressed(t, l)
	}
}

func checkCompressed(t *testing.T, l v1.Layer) {
	t.Helper()
	want, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(data).String(); got != want.String() {
		t.Errorf("layer %s: got bytes of %s", want, got)
	}
}
