package unpack

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

var epoch = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// ent describes one tar entry; zero fields get sensible defaults.
type ent struct {
	name  string
	typ   byte // tar.TypeReg if 0
	body  string
	link  string
	mode  int64
	mtime time.Time
}

func directory(n string) ent  { return ent{name: n, typ: tar.TypeDir, mode: 0o755} }
func file(n, body string) ent { return ent{name: n, body: body, mode: 0o644} }
func symlink(n, target string) ent {
	return ent{name: n, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(n, target string) ent {
	return ent{name: n, typ: tar.TypeLink, link: target, mode: 0o644}
}

func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, ModTime: e.mtime, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.ModTime.IsZero() {
			h.ModTime = epoch
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type codec string

const (
	gz   codec = "gzip"
	zst  codec = "zstd"
	none codec = "none"
)

func compress(t testing.TB, c codec, raw []byte) ([]byte, types.MediaType) {
	t.Helper()
	var buf bytes.Buffer
	switch c {
	case gz:
		zw := gzip.NewWriter(&buf)
		zw.Write(raw)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), types.OCILayer
	case zst:
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(raw)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), types.OCILayerZStd
	}
	return raw, types.OCIUncompressedLayer
}

// rawLayer is a layer of exactly the given bytes with the given diff_id, so
// tests can build broken images that ggcr would not produce.
type rawLayer struct {
	b      []byte
	diffID v1.Hash
	mt     types.MediaType
}

func (l *rawLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.b))
	return h, err
}
func (l *rawLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.b)), nil
}
func (l *rawLayer) Size() (int64, error) { return int64(len(l.b)), nil }
func (l *rawLayer) MediaType() (types.MediaType, error) {
	return l.mt, nil
}

func newLayer(t testing.TB, c codec, raw []byte) v1.Layer {
	t.Helper()
	b, mt := compress(t, c, raw)
	diffID, _, _ := v1.SHA256(bytes.NewReader(raw))
	return mustLayer(t, &rawLayer{b: b, diffID: diffID, mt: mt})
}

func mustLayer(t testing.TB, rl *rawLayer) v1.Layer {
	t.Helper()
	l, err := partial.CompressedToLayer(rl)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func mkImage(t testing.TB, plat string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := v1.ParsePlatform(plat)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// newRegistry serves an in-memory registry; wrap, if set, sits in front.
func newRegistry(t testing.TB, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func push(t testing.TB, s *httptest.Server, repo string, img v1.Image) string {
	t.Helper()
	ref := strings.TrimPrefix(s.URL, "http://") + "/" + repo
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// target returns base/target for Dir and base/outside, a sentinel directory
// that must never change.
func target(t testing.TB) (dir, outside string) {
	t.Helper()
	base := t.TempDir()
	// Images may hold read-only directories, which a non-root TempDir
	// cleanup could not empty.
	t.Cleanup(func() {
		filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	outside = filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(base, "target"), outside
}

func checkOutside(t testing.TB, outside string) {
	t.Helper()
	got := snapshot(t, outside)
	want := map[string]string{".": "dir drwxr-xr-x", "sentinel": `file -rw-r--r-- "untouched"`}
	if diff := diffTrees(want, got); diff != "" {
		t.Errorf("outside directory changed:\n%s", diff)
	}
}

// checkClean asserts a failed pull left nothing in dir.
func checkClean(t testing.TB, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind in target: %s", e.Name())
	}
}

// snapshot describes every entry below root: type, mode, content or link
// target.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "symlink -> " + target
		case fi.IsDir():
			out[rel] = "dir " + fi.Mode().String()
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %v %q", fi.Mode(), b)
		default:
			out[rel] = "other " + fi.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffTrees(want, got map[string]string) string {
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		w, wok := want[k]
		g, gok := got[k]
		switch {
		case !wok:
			fmt.Fprintf(&b, "  unexpected %s: %s\n", k, g)
		case !gok:
			fmt.Fprintf(&b, "  missing %s: want %s\n", k, w)
		case w != g:
			fmt.Fprintf(&b, "  %s: got %s, want %s\n", k, g, w)
		}
	}
	return b.String()
}

func newServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}
