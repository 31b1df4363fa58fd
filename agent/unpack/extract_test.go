package unpack

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// applyTars extracts each tar into its own staging directory and applies
// them in order to base/rootfs.
func applyTars(t testing.TB, base string, b *Budget, tars ...[]byte) (string, error) {
	t.Helper()
	rootfs := filepath.Join(base, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	var layers []*Layer
	for i, tb := range tars {
		stage := filepath.Join(base, "stage", string(rune('a'+i)))
		if err := os.MkdirAll(stage, 0o755); err != nil {
			t.Fatal(err)
		}
		l, err := Extract(t.Context(), bytes.NewReader(tb), stage, b)
		if err != nil {
			return rootfs, err
		}
		layers = append(layers, l)
	}
	return rootfs, Apply(t.Context(), rootfs, layers)
}

func TestApply(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		layers [][]ent
		want   map[string]string
		err    error
	}{
		{
			name:   "explicit directory replaces a lower symlink",
			layers: [][]ent{{symlink("d", "/etc")}, {directory("d"), file("d/f", "f")}},
			want:   map[string]string{".": "dir drwxr-xr-x", "d": "dir drwxr-xr-x", "d/f": `file -rw-r--r-- "f"`},
		},
		{
			name:   "file replaces a lower directory",
			layers: [][]ent{{directory("d"), file("d/f", "f")}, {file("d", "now a file")}},
			want:   map[string]string{".": "dir drwxr-xr-x", "d": `file -rw-r--r-- "now a file"`},
		},
		{
			name:   "later entry in a layer wins",
			layers: [][]ent{{file("f", "1"), directory("f"), file("f/x", "x"), symlink("f", "t"), file("g", "1"), hardlink("g", "h"), file("h", "h")}},
			want:   map[string]string{".": "dir drwxr-xr-x", "f": "symlink -> t", "g": `file -rw-r--r-- "h"`, "h": `file -rw-r--r-- "h"`},
		},
		{
			name:   "whiteout then recreate in the same layer",
			layers: [][]ent{{directory("d"), file("d/old", "o")}, {file(".wh.d", ""), directory("d"), file("d/new", "n")}},
			want:   map[string]string{".": "dir drwxr-xr-x", "d": "dir drwxr-xr-x", "d/new": `file -rw-r--r-- "n"`},
		},
		{
			name:   "opaque root",
			layers: [][]ent{{file("a", "a")}, {file(".wh..wh..opq", ""), file("b", "b")}},
			want:   map[string]string{".": "dir drwxr-xr-x", "b": `file -rw-r--r-- "b"`},
		},
		{
			name:   "whiteout below a symlink is a no-op",
			layers: [][]ent{{symlink("s", "/etc")}, {file("s/.wh.passwd", "")}},
			want:   map[string]string{".": "dir drwxr-xr-x", "s": "symlink -> /etc"},
		},
		{
			name:   "hard link to a missing file",
			layers: [][]ent{{hardlink("x", "nope")}},
			err:    ErrUnsafeEntry,
		},
		{
			name:   "hard link to a directory",
			layers: [][]ent{{directory("d"), hardlink("x", "d")}},
			err:    ErrUnsafeEntry,
		},
		{
			name:   "invalid whiteout",
			layers: [][]ent{{file("a/.wh...", "")}},
			err:    ErrUnsafeEntry,
		},
		{
			name:   "parent is a file",
			layers: [][]ent{{file("f", ""), file("f/x", "")}},
			err:    ErrUnsafeEntry,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var tars [][]byte
			for _, l := range tc.layers {
				tars = append(tars, mkTar(t, l...))
			}
			rootfs, err := applyTars(t, t.TempDir(), nil, tars...)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := diffTrees(tc.want, snapshot(t, rootfs)); diff != "" {
				t.Errorf("rootfs differs:\n%s", diff)
			}
		})
	}
}

func TestExtractDevices(t *testing.T) {
	t.Parallel()
	fifo := ent{name: "fifo", typ: tar.TypeFifo, mode: 0o600}
	char := ent{name: "null", typ: tar.TypeChar, mode: 0o666}
	_, err := applyTars(t, t.TempDir(), nil, mkTar(t, fifo, char))
	if os.Geteuid() != 0 {
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("device node as non-root: got %v, want ErrUnsupported", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestCleanName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"a": "a", "./a/": "a", "a//b/./c": "a/b/c", "a/../b": "b", ".": ".", "./": ".",
		"": "!", "/a": "!", "..": "!", "../a": "!", "a/../../b": "!", "a\x00b": "!",
	} {
		got, err := cleanName(in)
		if err != nil {
			got = "!"
		}
		if got != want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// fuzzSeeds are tars that once were, or could be, trouble.
func fuzzSeeds(t testing.TB) [][]byte {
	return [][]byte{
		mkTar(t, file("a", "a"), directory("d"), hardlink("d/l", "a"), symlink("s", "d")),
		mkTar(t, symlink("evil", "../outside"), file("evil/x", "x")),
		mkTar(t, symlink("evil", "."), file("evil/evil/x", "x")),
		mkTar(t, hardlink("l", "../outside/sentinel")),
		mkTar(t, file("../outside/x", "x")),
		mkTar(t, file(".wh..wh..opq", ""), file("d/.wh.x", "")),
		mkTar(t, directory("d"), symlink("d", "../outside"), file("d/x", "")),
		mkTar(t, ent{name: "big", mode: 0o644, body: strings.Repeat("z", 3<<20)}),
		[]byte("not a tar at all"),
		{},
	}
}

// checkContained asserts nothing but base/rootfs, base/stage and an
// untouched base/outside exist.
func checkContained(t testing.TB, base, outside string) {
	t.Helper()
	entries, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case "rootfs", "stage", "outside":
		default:
			t.Errorf("written outside the target: %s", e.Name())
		}
	}
	checkOutside(t, outside)
}

func fuzzBase(t testing.TB) (base, outside string) {
	dir, outside := target(t)
	return filepath.Dir(dir), outside
}

func FuzzExtract(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base, outside := fuzzBase(t)
		_, _ = applyTars(t, base, NewBudget(1<<20), data)
		checkContained(t, base, outside)
	})
}

func FuzzApply(f *testing.F) {
	seeds := fuzzSeeds(f)
	for i := range seeds {
		f.Add(seeds[i], seeds[(i+1)%len(seeds)])
	}
	f.Add(mkTar(f, symlink("evil", "../outside")), mkTar(f, file("evil/x", "x")))
	f.Add(mkTar(f, file("a", "a")), mkTar(f, hardlink("evil/l", "a"), symlink("evil", "..")))
	f.Fuzz(func(t *testing.T, lower, upper []byte) {
		base, outside := fuzzBase(t)
		_, _ = applyTars(t, base, NewBudget(1<<20), lower, upper)
		checkContained(t, base, outside)
	})
}
