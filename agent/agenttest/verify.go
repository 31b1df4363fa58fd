package agenttest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Content is what a client stored, every blob checked against its digest.
type Content struct {
	// Roots are the digests of the top-level manifests or indexes.
	Roots []v1.Hash
	// Blobs maps every blob (manifests included) to its size.
	Blobs map[v1.Hash]int64
}

// Has reports whether the blob h was stored.
func (c Content) Has(h v1.Hash) bool {
	_, ok := c.Blobs[h]
	return ok
}

// VerifyOCILayout checks an OCI image layout: every blob under blobs/
// hashes to its file name, and everything index.json reaches (indexes,
// manifests, configs, layers) is present with the size its descriptor
// gives. It fails the test on any mismatch.
func VerifyOCILayout(t testing.TB, dir string) Content {
	t.Helper()
	c, err := verifyOCILayout(dir)
	if err != nil {
		t.Fatalf("agenttest: OCI layout %s: %v", dir, err)
	}
	return c
}

// VerifyDir checks what skopeo's dir: transport wrote: manifest.json, the
// per-instance <hex>.manifest.json files of a copied index, and blobs named
// by hex digest, each hashed and matched against the manifests.
func VerifyDir(t testing.TB, dir string) Content {
	t.Helper()
	c, err := verifyDir(dir)
	if err != nil {
		t.Fatalf("agenttest: skopeo dir %s: %v", dir, err)
	}
	return c
}

// VerifyBlobStore checks a flat directory of blobs named by sha256 hex, such
// as containerd's content store: each file must hash to its name.
func VerifyBlobStore(t testing.TB, dir string) Content {
	t.Helper()
	blobs, err := hashBlobDir(dir, asIs)
	if err != nil {
		t.Fatalf("agenttest: blob store %s: %v", dir, err)
	}
	return Content{Blobs: blobs}
}

// Digester is an image or index: anything with a digest and a manifest.
type Digester interface {
	Digest() (v1.Hash, error)
	RawManifest() ([]byte, error)
}

// RequireContent fails the test unless got holds want (a v1.Image or a
// v1.ImageIndex) exactly: its manifest and, for an index, every child,
// every config and every layer, byte for byte.
func RequireContent(t testing.TB, got Content, want Digester) {
	t.Helper()
	if err := requireContent(got, want, true); err != nil {
		t.Fatalf("agenttest: %v", err)
	}
}

// RequireLayers is RequireContent for the layers only, for clients that
// rewrite manifests and configs (skopeo into an OCI layout converts Docker
// ones): the layers must still be there byte for byte.
func RequireLayers(t testing.TB, got Content, want Digester) {
	t.Helper()
	if err := requireContent(got, want, false); err != nil {
		t.Fatalf("agenttest: %v", err)
	}
}

var errMissing = errors.New("missing blob")

func requireContent(got Content, want Digester, manifests bool) error {
	switch w := want.(type) {
	case v1.ImageIndex:
		if err := requireBlob(got, w, manifests); err != nil {
			return err
		}
		im, err := w.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range im.Manifests {
			var child Digester
			if d.MediaType.IsIndex() {
				child, err = w.ImageIndex(d.Digest)
			} else {
				child, err = w.Image(d.Digest)
			}
			if err != nil {
				return err
			}
			if err := requireContent(got, child, manifests); err != nil {
				return err
			}
		}
		return nil
	case v1.Image:
		if err := requireBlob(got, w, manifests); err != nil {
			return err
		}
		m, err := w.Manifest()
		if err != nil {
			return err
		}
		refs := m.Layers
		if manifests {
			refs = append([]v1.Descriptor{m.Config}, refs...)
		}
		for _, d := range refs {
			size, ok := got.Blobs[d.Digest]
			if !ok {
				return fmt.Errorf("%w %s (%s)", errMissing, d.Digest, d.MediaType)
			}
			if size != d.Size {
				return fmt.Errorf("blob %s: size %d, want %d", d.Digest, size, d.Size)
			}
		}
		return nil
	default:
		return fmt.Errorf("RequireContent: %T is neither an image nor an index", want)
	}
}

func requireBlob(got Content, want Digester, manifests bool) error {
	if !manifests {
		return nil
	}
	h, err := want.Digest()
	if err != nil {
		return err
	}
	if !got.Has(h) {
		return fmt.Errorf("%w: manifest %s", errMissing, h)
	}
	return nil
}

// manifestish holds the fields of an image manifest and an index that tell
// what a manifest references.
type manifestish struct {
	MediaType string          `json:"mediaType"`
	Config    *v1.Descriptor  `json:"config"`
	Layers    []v1.Descriptor `json:"layers"`
	Manifests []v1.Descriptor `json:"manifests"`
}

func (m manifestish) isIndex() bool { return m.Config == nil && m.Manifests != nil }

func verifyOCILayout(dir string) (Content, error) {
	layout, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil {
		return Content{}, err
	}
	var lv struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(layout, &lv); err != nil || lv.Version == "" {
		return Content{}, fmt.Errorf("bad oci-layout %q", layout)
	}
	blobs, err := hashBlobDir(filepath.Join(dir, "blobs", "sha256"), asIs)
	if err != nil {
		return Content{}, err
	}
	c := Content{Blobs: blobs}
	indexJSON, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return Content{}, err
	}
	var top manifestish
	if err := json.Unmarshal(indexJSON, &top); err != nil {
		return Content{}, fmt.Errorf("index.json: %w", err)
	}
	if len(top.Manifests) == 0 {
		return Content{}, errors.New("index.json lists no manifest")
	}
	read := func(d v1.Descriptor) ([]byte, error) {
		return os.ReadFile(filepath.Join(dir, "blobs", d.Digest.Algorithm, d.Digest.Hex))
	}
	for _, d := range top.Manifests {
		c.Roots = append(c.Roots, d.Digest)
		if err := walk(c, d, read); err != nil {
			return Content{}, err
		}
	}
	return c, nil
}

func verifyDir(dir string) (Content, error) {
	// Blobs are named <hex>; instances of a copied index <hex>.manifest.json.
	blobs, err := hashBlobDir(dir, func(name string) (string, bool) {
		if hexName, ok := strings.CutSuffix(name, ".manifest.json"); ok {
			return hexName, true
		}
		return name, isHexDigest(name)
	})
	if err != nil {
		return Content{}, err
	}
	c := Content{Blobs: blobs}
	top, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return Content{}, err
	}
	sum := sha256.Sum256(top)
	root := v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}, Size: int64(len(top))}
	c.Blobs[root.Digest] = root.Size
	c.Roots = []v1.Hash{root.Digest}
	read := func(d v1.Descriptor) ([]byte, error) {
		if d.Digest == root.Digest {
			return top, nil
		}
		return os.ReadFile(filepath.Join(dir, d.Digest.Hex+".manifest.json"))
	}
	return c, walk(c, root, read)
}

// walk checks that d and everything it references are in c with the
// sizes the descriptors give; read returns a manifest's bytes.
func walk(c Content, d v1.Descriptor, read func(v1.Descriptor) ([]byte, error)) error {
	size, ok := c.Blobs[d.Digest]
	if !ok {
		return fmt.Errorf("%w %s", errMissing, d.Digest)
	}
	if size != d.Size {
		return fmt.Errorf("blob %s: size %d, descriptor says %d", d.Digest, size, d.Size)
	}
	b, err := read(d)
	if err != nil {
		return err
	}
	var m manifestish
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	if m.isIndex() {
		for _, child := range m.Manifests {
			if err := walk(c, child, read); err != nil {
				return err
			}
		}
		return nil
	}
	if m.Config == nil {
		return fmt.Errorf("manifest %s has no config", d.Digest)
	}
	for _, ref := range append([]v1.Descriptor{*m.Config}, m.Layers...) {
		size, ok := c.Blobs[ref.Digest]
		if !ok {
			return fmt.Errorf("%w %s referenced by %s", errMissing, ref.Digest, d.Digest)
		}
		if size != ref.Size {
			return fmt.Errorf("blob %s: size %d, manifest %s says %d", ref.Digest, size, d.Digest, ref.Size)
		}
	}
	return nil
}

// hashBlobDir hashes every regular file of dir that name accepts and
// compares with the hex digest name maps the file name to.
func hashBlobDir(dir string, name func(string) (string, bool)) (map[v1.Hash]int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	blobs := map[v1.Hash]int64{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		want, ok := name(e.Name())
		if !ok {
			continue
		}
		if !isHexDigest(want) {
			return nil, fmt.Errorf("%s: not named by a sha256 digest", e.Name())
		}
		got, size, err := hashFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if got != want {
			return nil, fmt.Errorf("%s: content hashes to sha256:%s", e.Name(), got)
		}
		blobs[v1.Hash{Algorithm: "sha256", Hex: got}] = size
	}
	return blobs, nil
}

// asIs names blobs by their bare hex digest.
func asIs(name string) (string, bool) { return name, true }

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func isHexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}
