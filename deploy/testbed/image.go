package testbed

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrImage is wrapped when an image cannot be made or a pulled copy does
// not match it.
var ErrImage = errors.New("testbed: image")

// Image is an image written as an OCI layout, ready for `crane push DIR`.
type Image struct {
	// Dir is the OCI layout.
	Dir string `json:"-"`
	// Manifest is the image manifest's descriptor.
	Manifest ocispec.Descriptor `json:"manifest"`
	// Blobs are the config and the layers.
	Blobs []ocispec.Descriptor `json:"blobs"`
}

// Size is what a client downloads: the manifest and every blob.
func (img Image) Size() int64 {
	n := img.Manifest.Size
	for _, b := range img.Blobs {
		n += b.Size
	}
	return n
}

// GenerateImage writes an image of about size bytes in layers gzip layers
// into the OCI layout dir. Each layer is a tar holding one file of
// pseudo-random bytes from seed: it does not compress, so the blobs are as
// big as asked, and the same seed gives the same image.
func GenerateImage(dir string, size int64, layers int, seed uint64) (Image, error) {
	if layers < 1 || size < int64(layers) {
		return Image{}, fmt.Errorf("%w: %d bytes in %d layers", ErrImage, size, layers)
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return Image{}, fmt.Errorf("%w: %v", ErrImage, err)
	}
	img := Image{Dir: dir}
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	var layerDescs []ocispec.Descriptor
	for i := range layers {
		n := size / int64(layers)
		if i == layers-1 {
			n = size - n*int64(layers-1)
		}
		desc, diffID, err := writeLayer(blobs, n, seed, uint64(i))
		if err != nil {
			return Image{}, err
		}
		layerDescs = append(layerDescs, desc)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
	}
	cfgDesc, err := writeJSONBlob(blobs, ocispec.MediaTypeImageConfig, cfg)
	if err != nil {
		return Image{}, err
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    layerDescs,
	}
	if img.Manifest, err = writeJSONBlob(blobs, ocispec.MediaTypeImageManifest, manifest); err != nil {
		return Image{}, err
	}
	img.Blobs = append([]ocispec.Descriptor{cfgDesc}, layerDescs...)
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{img.Manifest},
	}
	for name, v := range map[string]any{"index.json": index, ocispec.ImageLayoutFile: ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}} {
		b, err := json.Marshal(v)
		if err != nil {
			return Image{}, fmt.Errorf("%w: %v", ErrImage, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return Image{}, fmt.Errorf("%w: %v", ErrImage, err)
		}
	}
	return img, nil
}

// writeLayer writes a gzip tar with one file of n random bytes and returns
// its descriptor and diff ID (the digest of the tar).
func writeLayer(blobs string, n int64, seed, index uint64) (ocispec.Descriptor, digest.Digest, error) {
	tmp, err := os.CreateTemp(blobs, "layer-*")
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("%w: %v", ErrImage, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()

	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], index)
	src := rand.NewChaCha8(key)

	gzDigest := sha256.New()
	tarDigest := sha256.New()
	buf := bufio.NewWriterSize(io.MultiWriter(tmp, gzDigest), 1<<20)
	counted := &countWriter{w: buf}
	// Level 1 is `gzip -1`: on random bytes it mostly stores blocks, fast.
	gz, err := gzip.NewWriterLevel(counted, gzip.BestSpeed)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("%w: %v", ErrImage, err)
	}
	tw := tar.NewWriter(io.MultiWriter(gz, tarDigest))
	hdr := &tar.Header{Name: fmt.Sprintf("data/layer-%03d.bin", index), Mode: 0o644, Size: n, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("%w: %v", ErrImage, err)
	}
	if _, err := io.CopyN(tw, src, n); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("%w: %v", ErrImage, err)
	}
	for _, c := range []io.Closer{tw, gz} {
		if err := c.Close(); err != nil {
			return ocispec.Descriptor{}, "", fmt.Errorf("%w: %v", ErrImage, err)
		}
	}
	if err := buf.Flush(); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("%w: %v", ErrImage, err)
	}
	if err := tmp.Close(); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("%w: %v", ErrImage, err)
	}
	d := digestOf(gzDigest)
	if err := os.Rename(tmp.Name(), filepath.Join(blobs, d.Encoded())); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("%w: %v", ErrImage, err)
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: counted.n}
	return desc, digestOf(tarDigest), nil
}

func writeJSONBlob(blobs, mediaType string, v any) (ocispec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: %v", ErrImage, err)
	}
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), b, 0o644); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: %v", ErrImage, err)
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, nil
}

func digestOf(h hash.Hash) digest.Digest {
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// VerifyLayout checks that the OCI layout dir (as `crane pull --format oci`
// writes it) holds img: its index names img's manifest, and the manifest
// and every blob are present with the right size and sha256.
func VerifyLayout(dir string, img Image) error {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrImage, err)
	}
	var index ocispec.Index
	if err := json.Unmarshal(b, &index); err != nil {
		return fmt.Errorf("%w: index.json: %v", ErrImage, err)
	}
	found := false
	for _, m := range index.Manifests {
		found = found || m.Digest == img.Manifest.Digest
	}
	if !found {
		return fmt.Errorf("%w: index.json does not name manifest %s", ErrImage, img.Manifest.Digest)
	}
	for _, want := range append([]ocispec.Descriptor{img.Manifest}, img.Blobs...) {
		if err := verifyBlob(filepath.Join(dir, "blobs", "sha256", want.Digest.Encoded()), want); err != nil {
			return err
		}
	}
	return nil
}

func verifyBlob(path string, want ocispec.Descriptor) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: blob %s: %v", ErrImage, want.Digest, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("%w: blob %s: %v", ErrImage, want.Digest, err)
	}
	if got := digestOf(h); n != want.Size || got != want.Digest {
		return fmt.Errorf("%w: blob %s: got %d bytes with digest %s, want %d bytes", ErrImage, want.Digest, n, got, want.Size)
	}
	return nil
}
