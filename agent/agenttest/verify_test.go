package agenttest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

func writeLayout(t *testing.T, idx v1.ImageIndex) string {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestVerifyOCILayout(t *testing.T) {
	t.Parallel()
	idx := Index(t, ImageOptions{LayerSize: 100})
	other := Image(t, ImageOptions{LayerSize: 100, Seed: 99})

	t.Run("complete", func(t *testing.T) {
		t.Parallel()
		c, err := verifyOCILayout(writeLayout(t, idx))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := idx.Digest()
		if len(c.Roots) != 1 || c.Roots[0] != want {
			t.Fatalf("roots %v, want [%s]", c.Roots, want)
		}
		if err := requireContent(c, idx, true); err != nil {
			t.Fatal(err)
		}
		if err := requireContent(c, other, false); !errors.Is(err, errMissing) {
			t.Fatalf("another image's layers: err = %v, want errMissing", err)
		}
	})

	t.Run("corrupt blob", func(t *testing.T) {
		t.Parallel()
		dir := writeLayout(t, idx)
		layers, err := PlatformImage(t, idx, "linux/arm64").Layers()
		if err != nil {
			t.Fatal(err)
		}
		d, _ := layers[0].Digest()
		path := filepath.Join(dir, "blobs", "sha256", d.Hex)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := verifyOCILayout(dir); err == nil {
			t.Fatal("corrupt layer passed")
		}
	})

	t.Run("missing blob", func(t *testing.T) {
		t.Parallel()
		dir := writeLayout(t, idx)
		cfg, err := PlatformImage(t, idx, "linux/amd64").ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, "blobs", "sha256", cfg.Hex)); err != nil {
			t.Fatal(err)
		}
		if _, err := verifyOCILayout(dir); !errors.Is(err, errMissing) {
			t.Fatalf("err = %v, want errMissing", err)
		}
	})

	t.Run("not a layout", func(t *testing.T) {
		t.Parallel()
		if _, err := verifyOCILayout(t.TempDir()); err == nil {
			t.Fatal("empty directory passed")
		}
	})
}

// writeSkopeoDir lays an image out the way skopeo's dir: transport does.
func writeSkopeoDir(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	write("manifest.json", raw)
	write("version", []byte("Directory Transport Version: 1.1\n"))
	cfgName, _ := img.ConfigName()
	cfg, _ := img.RawConfigFile()
	write(cfgName.Hex, cfg)
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		ml, ok := l.(*memLayer)
		if !ok {
			t.Fatalf("layer %T", l)
		}
		write(d.Hex, ml.gz)
	}
	return dir
}

func TestVerifyDir(t *testing.T) {
	t.Parallel()
	img := Image(t, ImageOptions{MediaType: Docker, LayerSize: 100})
	dir := writeSkopeoDir(t, img)
	c, err := verifyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := requireContent(c, img, true); err != nil {
		t.Fatal(err)
	}

	// A manifest that names a layer of the wrong size must fail.
	var m map[string]any
	raw, _ := img.RawManifest()
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["layers"].([]any)[0].(map[string]any)["size"] = 1
	bad, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyDir(dir); err == nil {
		t.Fatal("wrong layer size passed")
	}
}

func TestHasPluginOK(t *testing.T) {
	t.Parallel()
	out := `TYPE                            ID           PLATFORMS      STATUS
io.containerd.snapshotter.v1    aufs         linux/amd64    skip
io.containerd.snapshotter.v1    overlayfs    linux/amd64    ok
io.containerd.snapshotter.v1    zfs          linux/amd64    skip
`
	tests := []struct {
		id   string
		want bool
	}{{"overlayfs", true}, {"aufs", false}, {"native", false}}
	for _, tt := range tests {
		if got := hasPluginOK(out, "io.containerd.snapshotter.v1", tt.id); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestWriteHostsToml(t *testing.T) {
	t.Parallel()
	dir := WriteHostsToml(t, t.TempDir(), "127.0.0.1:5000", "http://127.0.0.1:5050")
	b, err := os.ReadFile(filepath.Join(dir, "127.0.0.1:5000", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := `server = "http://127.0.0.1:5000"

[host."http://127.0.0.1:5050"]
  capabilities = ["pull", "resolve"]
`
	if string(b) != want {
		t.Fatalf("hosts.toml:\n%s\nwant:\n%s", b, want)
	}
}
