package agenttest

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestImage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		opts     ImageOptions
		manifest types.MediaType
		layer    types.MediaType
		layers   int
		minLayer int64
		wantArch string
	}{
		{name: "defaults", opts: ImageOptions{}, manifest: types.OCIManifestSchema1, layer: types.OCILayer, layers: DefaultLayers, minLayer: DefaultLayerSize, wantArch: "amd64"},
		{name: "docker", opts: ImageOptions{MediaType: Docker, Layers: 3, LayerSize: 1000}, manifest: types.DockerManifestSchema2, layer: types.DockerLayer, layers: 3, minLayer: 1000, wantArch: "amd64"},
		{name: "arm64", opts: ImageOptions{Layers: 1, LayerSize: 1, Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}, manifest: types.OCIManifestSchema1, layer: types.OCILayer, layers: 1, minLayer: 1, wantArch: "arm64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			img := Image(t, tt.opts)
			if mt, _ := img.MediaType(); mt != tt.manifest {
				t.Fatalf("media type %s, want %s", mt, tt.manifest)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Architecture != tt.wantArch || cf.OS != "linux" {
				t.Fatalf("platform %s/%s", cf.OS, cf.Architecture)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if len(layers) != tt.layers {
				t.Fatalf("%d layers, want %d", len(layers), tt.layers)
			}
			for i, l := range layers {
				if mt, _ := l.MediaType(); mt != tt.layer {
					t.Fatalf("layer %d media type %s", i, mt)
				}
				// Random content does not compress: the blob is at least the
				// file it carries.
				if size, _ := l.Size(); size < tt.minLayer {
					t.Fatalf("layer %d is %d bytes, want >= %d", i, size, tt.minLayer)
				}
				rc, err := l.Uncompressed()
				if err != nil {
					t.Fatal(err)
				}
				h := sha256.New()
				if _, err := io.Copy(h, rc); err != nil {
					t.Fatal(err)
				}
				_ = rc.Close()
				diffID, _ := l.DiffID()
				if diffID.Hex != hex.EncodeToString(h.Sum(nil)) {
					t.Fatalf("layer %d diff ID %s does not match its tar", i, diffID)
				}
			}
		})
	}
}

func TestImageDeterministic(t *testing.T) {
	t.Parallel()
	digest := func(o ImageOptions) v1.Hash {
		d, err := Image(t, o).Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := ImageOptions{Layers: 2, LayerSize: 4096, Seed: 7}
	if digest(a) != digest(a) {
		t.Fatal("same options gave different images")
	}
	b := a
	b.Seed = 8
	if digest(a) == digest(b) {
		t.Fatal("different seeds gave the same image")
	}
	// Layers within an image differ too, or registries would dedupe them.
	layers, err := Image(t, a).Layers()
	if err != nil {
		t.Fatal(err)
	}
	d0, _ := layers[0].Digest()
	d1, _ := layers[1].Digest()
	if d0 == d1 {
		t.Fatal("two layers of one image are identical")
	}
}

func TestImageBadOptions(t *testing.T) {
	t.Parallel()
	for _, o := range []ImageOptions{{Layers: -1}, {LayerSize: -1}, {MediaType: MediaType(9)}} {
		if _, err := generateImage(o, 0); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestIndex(t *testing.T) {
	t.Parallel()
	for _, mt := range []MediaType{OCI, Docker} {
		t.Run(mt.String(), func(t *testing.T) {
			t.Parallel()
			idx := Index(t, ImageOptions{MediaType: mt, LayerSize: 100})
			if got, _ := idx.MediaType(); got != mt.index() {
				t.Fatalf("media type %s, want %s", got, mt.index())
			}
			amd, arm := PlatformImage(t, idx, "linux/amd64"), PlatformImage(t, idx, "linux/arm64")
			da, _ := amd.Digest()
			dr, _ := arm.Digest()
			if da == dr {
				t.Fatal("both platforms share one image")
			}
			if cf, _ := arm.ConfigFile(); cf.Architecture != "arm64" {
				t.Fatalf("arm64 child has architecture %q", cf.Architecture)
			}
		})
	}
}

func BenchmarkImage(b *testing.B) {
	for b.Loop() {
		if _, err := generateImage(ImageOptions{Layers: 4, LayerSize: 8 << 20}, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(4 * 8 << 20)
}

func TestIndexHasNoArtifactType(t *testing.T) {
	t.Parallel()
	im, err := Index(t, ImageOptions{LayerSize: 10}).IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.ArtifactType != "" || d.Platform == nil {
			t.Fatalf("descriptor %+v: want a platform and no artifactType", d)
		}
	}
}
