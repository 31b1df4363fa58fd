package agenttest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// MediaType picks the manifest flavour of generated images and indexes.
type MediaType int

const (
	// OCI makes OCI image manifests, configs, layers and indexes.
	OCI MediaType = iota
	// Docker makes Docker schema 2 manifests and manifest lists.
	Docker
)

func (m MediaType) String() string {
	switch m {
	case OCI:
		return "oci"
	case Docker:
		return "docker"
	default:
		return fmt.Sprintf("MediaType(%d)", int(m))
	}
}

func (m MediaType) manifest() types.MediaType {
	if m == Docker {
		return types.DockerManifestSchema2
	}
	return types.OCIManifestSchema1
}

func (m MediaType) config() types.MediaType {
	if m == Docker {
		return types.DockerConfigJSON
	}
	return types.OCIConfigJSON
}

func (m MediaType) layer() types.MediaType {
	if m == Docker {
		return types.DockerLayer
	}
	return types.OCILayer
}

func (m MediaType) index() types.MediaType {
	if m == Docker {
		return types.DockerManifestList
	}
	return types.OCIImageIndex
}

// Defaults for a zero ImageOptions: small enough that a test pays nothing.
const (
	DefaultLayers    = 2
	DefaultLayerSize = 64 << 10
)

// ImageOptions describe a generated image. The same options always give
// the same image, byte for byte.
type ImageOptions struct {
	// Layers is the number of layers; 0 means DefaultLayers.
	Layers int
	// LayerSize is the size of the one file in each layer's tar; 0 means
	// DefaultLayerSize. The content is pseudo-random, so the gzip'd layer
	// is slightly larger than this.
	LayerSize int64
	// MediaType picks OCI (the default) or Docker media types.
	MediaType MediaType
	// Seed varies the content: images with different seeds share no layer.
	Seed uint64
	// Platform is the image's OS and architecture; nil means linux/amd64.
	Platform *v1.Platform
}

// Image generates an image of real gzip'd tar layers. Each layer holds one
// file of deterministic pseudo-random bytes, so layers do not compress and
// their diff IDs are real: containerd can unpack the image.
func Image(t testing.TB, opts ImageOptions) v1.Image {
	t.Helper()
	img, err := generateImage(opts, 0)
	if err != nil {
		t.Fatalf("agenttest: image: %v", err)
	}
	return img
}

// defaultPlatforms are the platforms of a generated index.
var defaultPlatforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64"},
}

// Index generates a multi-platform index (an OCI index or a Docker manifest
// list, after opts.MediaType) with one image per platform, by default
// linux/amd64 and linux/arm64. The images share no layer; opts.Platform is
// ignored.
func Index(t testing.TB, opts ImageOptions, platforms ...v1.Platform) v1.ImageIndex {
	t.Helper()
	if len(platforms) == 0 {
		platforms = defaultPlatforms
	}
	var idx v1.ImageIndex = empty.Index
	for i, p := range platforms {
		o := opts
		o.Platform = &p
		img, err := generateImage(o, uint64(i)+1)
		if err != nil {
			t.Fatalf("agenttest: index image %d: %v", i, err)
		}
		desc, err := plainDescriptor(img, p)
		if err != nil {
			t.Fatalf("agenttest: index image %d: %v", i, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: describedImage{img, desc}})
	}
	idx = mutate.IndexMediaType(idx, opts.MediaType.index())
	// Compute now so that a bad index fails here, not in a client.
	if _, err := idx.Digest(); err != nil {
		t.Fatalf("agenttest: index: %v", err)
	}
	return idx
}

// describedImage lists an image in an index with a descriptor of our own.
// go-containerregistry would add an artifactType (the config's media type)
// that build tools do not write and that skopeo 1.9 drops, changing the
// index digest on copy.
type describedImage struct {
	v1.Image
	desc *v1.Descriptor
}

func (d describedImage) Descriptor() (*v1.Descriptor, error) { return d.desc, nil }

func plainDescriptor(img v1.Image, p v1.Platform) (*v1.Descriptor, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	size, err := img.Size()
	if err != nil {
		return nil, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	return &v1.Descriptor{MediaType: mt, Size: size, Digest: digest, Platform: &p}, nil
}

// PlatformImage returns the child of idx for platform ("os/arch[/variant]").
func PlatformImage(t testing.TB, idx v1.ImageIndex, platform string) v1.Image {
	t.Helper()
	want, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatalf("agenttest: platform %q: %v", platform, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("agenttest: index manifest: %v", err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Satisfies(*want) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatalf("agenttest: index child %s: %v", d.Digest, err)
			}
			return img
		}
	}
	t.Fatalf("agenttest: index has no image for %s", platform)
	return nil
}

func generateImage(opts ImageOptions, variant uint64) (v1.Image, error) {
	if opts.Layers < 0 || opts.LayerSize < 0 {
		return nil, fmt.Errorf("negative layers (%d) or layer size (%d)", opts.Layers, opts.LayerSize)
	}
	if opts.MediaType != OCI && opts.MediaType != Docker {
		return nil, fmt.Errorf("unknown %v", opts.MediaType)
	}
	if opts.Layers == 0 {
		opts.Layers = DefaultLayers
	}
	if opts.LayerSize == 0 {
		opts.LayerSize = DefaultLayerSize
	}
	platform := v1.Platform{OS: "linux", Architecture: "amd64"}
	if opts.Platform != nil {
		platform = *opts.Platform
	}

	layers := make([]v1.Layer, opts.Layers)
	errs := make([]error, opts.Layers)
	// Layers are independent; build them on all cores.
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range layers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			layers[i], errs[i] = newRandomLayer(opts.Seed, variant, uint64(i), opts.LayerSize, opts.MediaType.layer())
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}

	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: platform.Architecture,
		OS:           platform.OS,
		Variant:      platform.Variant,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{
			Layer:     l,
			MediaType: opts.MediaType.layer(),
			History:   v1.History{CreatedBy: fmt.Sprintf("agenttest layer %d", i)},
		}
	}
	if img, err = mutate.Append(img, adds...); err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, opts.MediaType.manifest()), opts.MediaType.config())
	if _, err := img.Digest(); err != nil {
		return nil, err
	}
	return img, nil
}

// memLayer is a gzip'd layer held in memory with its digests computed once.
type memLayer struct {
	gz     []byte
	digest v1.Hash
	diffID v1.Hash
	mt     types.MediaType
}

var _ v1.Layer = (*memLayer)(nil)

// newRandomLayer writes a tar with one file of size pseudo-random bytes
// drawn from ChaCha8 keyed by (seed, variant, index).
func newRandomLayer(seed, variant, index uint64, size int64, mt types.MediaType) (*memLayer, error) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], variant)
	binary.LittleEndian.PutUint64(key[16:], index)
	copy(key[24:], "agentest")
	src := rand.NewChaCha8(key)

	var gzBuf bytes.Buffer
	gzBuf.Grow(int(size + size/64 + 4096))
	gzHash := sha256.New()
	// BestSpeed notices incompressible input and stores it nearly as is:
	// the layer stays a real gzip stream without costing a deflate pass.
	gz, err := gzip.NewWriterLevel(io.MultiWriter(&gzBuf, gzHash), gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	tarHash := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(gz, tarHash))
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     fmt.Sprintf("layer-%d.bin", index),
		Size:     size,
		Mode:     0o644,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	}); err != nil {
		return nil, err
	}
	if _, err := io.CopyN(tw, src, size); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return &memLayer{gz: gzBuf.Bytes(), digest: hashOf(gzHash), diffID: hashOf(tarHash), mt: mt}, nil
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

func (l *memLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *memLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *memLayer) Size() (int64, error)                { return int64(len(l.gz)), nil }
func (l *memLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

func (l *memLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.gz)), nil
}

func (l *memLayer) Uncompressed() (io.ReadCloser, error) {
	return gzip.NewReader(bytes.NewReader(l.gz))
}

// Push uploads an image or index (anything remote.Push takes) to ref, a
// full reference such as "127.0.0.1:5000/app:v1". Registries are reached
// over plain HTTP. auth may be nil for anonymous.
func Push(t testing.TB, obj remote.Taggable, ref string, auth authn.Authenticator) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatalf("agenttest: push %q: %v", ref, err)
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	ctx, cancel := context.WithTimeout(t.Context(), DefaultToolTimeout)
	defer cancel()
	// A transport of its own, closed after the push, so that no idle
	// connection outlives the call and trips goleak in the caller's tests.
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	if err := remote.Push(r, obj, remote.WithAuth(auth), remote.WithContext(ctx), remote.WithTransport(tr)); err != nil {
		t.Fatalf("agenttest: push %s: %v", ref, err)
	}
}

// Push uploads an image or index to repo (with :tag) on this origin, with
// the origin's credentials, and returns the full reference.
func (o *Origin) Push(t testing.TB, obj remote.Taggable, repo string) string {
	t.Helper()
	ref := o.Ref(repo)
	Push(t, obj, ref, o.Auth())
	return ref
}
