package testbed

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestGenerateImage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	img, err := GenerateImage(dir, 3<<20, 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Blobs) != 4 {
		t.Fatalf("%d blobs, want a config and 3 layers", len(img.Blobs))
	}
	// Random bytes do not compress: the layers carry at least the size asked.
	if img.Size() < 3<<20 {
		t.Fatalf("image is %d bytes, want at least %d", img.Size(), 3<<20)
	}
	if err := VerifyLayout(dir, img); err != nil {
		t.Fatalf("fresh layout: %v", err)
	}
	again, err := GenerateImage(t.TempDir(), 3<<20, 3, 7)
	if err != nil {
		t.Fatal(err)
	}
	if again.Manifest.Digest != img.Manifest.Digest {
		t.Fatal("same seed gave a different image")
	}
	other, err := GenerateImage(t.TempDir(), 3<<20, 3, 8)
	if err != nil {
		t.Fatal(err)
	}
	if other.Manifest.Digest == img.Manifest.Digest || other.Blobs[1].Digest == img.Blobs[1].Digest {
		t.Fatal("different seeds gave the same bytes")
	}

	// A flipped byte in a layer must be caught.
	layer := filepath.Join(dir, "blobs", "sha256", img.Blobs[2].Digest.Encoded())
	b, err := os.ReadFile(layer)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(layer, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := VerifyLayout(dir, img); !errors.Is(err, ErrImage) {
		t.Fatalf("corrupt layer: err %v, want ErrImage", err)
	}
	if err := VerifyLayout(t.TempDir(), img); !errors.Is(err, ErrImage) {
		t.Fatalf("empty dir: err %v, want ErrImage", err)
	}
}

func TestGenerateImageBadArgs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		size   int64
		layers int
	}{{100, 0}, {2, 3}} {
		if _, err := GenerateImage(t.TempDir(), tt.size, tt.layers, 1); !errors.Is(err, ErrImage) {
			t.Errorf("%d bytes in %d layers: err %v, want ErrImage", tt.size, tt.layers, err)
		}
	}
}

func BenchmarkGenerateImage(b *testing.B) {
	const size = 32 << 20
	for b.Loop() {
		if _, err := GenerateImage(b.TempDir(), size, 4, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(size)
}
