package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// knownLayers exercise every entry type and the whiteout rules across a
// gzip, a zstd and an uncompressed layer.
func knownLayers(t testing.TB) []v1.Layer {
	tmp := directory("tmp")
	tmp.mode = 0o1777
	secret := file("secret", "s")
	secret.mode = 0o600
	suid := file("bin/suid", "u")
	suid.mode = 0o4755
	sh := file("bin/sh", "#!sh")
	sh.mode = 0o755
	ro := directory("ro")
	ro.mode = 0o555
	l0 := mkTar(t,
		directory("./"), directory("etc"), file("etc/passwd", "root"), directory("bin"), sh, hardlink("bin/ls", "bin/sh"),
		directory("usr"), directory("usr/lib"), file("usr/lib/a", "a"), file("usr/lib/b", "b"),
		directory("old"), file("old/x", "x"), symlink("lib", "usr/lib"), directory("data"), file("data/keep", "keep"),
		tmp, symlink("abs", "/etc/passwd"), ro, file("ro/f", "f"),
	)
	l1 := mkTar(t,
		file("etc/.wh.passwd", ""), directory("usr/lib"), file("usr/lib/.wh..wh..opq", ""), file("usr/lib/c", "c"),
		file(".wh.old", ""), hardlink("bin/ls2", "bin/sh"), secret, suid, file("bin/.wh..wh.plnk", ""),
	)
	l2 := mkTar(t,
		file("etc/passwd", "new"), symlink("data/keep", "keep2"), directory("old"), file("old/y", "y"),
		file("new/deep/file", "implicit parents"),
	)
	return []v1.Layer{newLayer(t, gz, l0), newLayer(t, zst, l1), newLayer(t, none, l2)}
}

var knownTree = map[string]string{
	".":             "dir drwxr-xr-x",
	"abs":           "symlink -> /etc/passwd",
	"bin":           "dir drwxr-xr-x",
	"bin/sh":        `file -rwxr-xr-x "#!sh"`,
	"bin/ls":        `file -rwxr-xr-x "#!sh"`,
	"bin/ls2":       `file -rwxr-xr-x "#!sh"`,
	"bin/suid":      `file urwxr-xr-x "u"`,
	"data":          "dir drwxr-xr-x",
	"data/keep":     "symlink -> keep2",
	"etc":           "dir drwxr-xr-x",
	"etc/passwd":    `file -rw-r--r-- "new"`,
	"lib":           "symlink -> usr/lib",
	"new":           "dir drwxr-xr-x",
	"new/deep":      "dir drwxr-xr-x",
	"new/deep/file": `file -rw-r--r-- "implicit parents"`,
	"old":           "dir drwxr-xr-x",
	"old/y":         `file -rw-r--r-- "y"`,
	"ro":            "dir dr-xr-xr-x",
	"ro/f":          `file -rw-r--r-- "f"`,
	"secret":        `file -rw------- "s"`,
	"tmp":           "dir dtrwxrwxrwx",
	"usr":           "dir drwxr-xr-x",
	"usr/lib":       "dir drwxr-xr-x",
	"usr/lib/c":     `file -rw-r--r-- "c"`,
}

func TestPullKnownContent(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t, nil)
	ref := push(t, reg, "app:v1", mkImage(t, "linux/amd64", knownLayers(t)...))
	for _, jobs := range []int{1, 3} {
		dir, _ := target(t)
		var events eventLog
		res, err := Pull(t.Context(), Options{Ref: ref, Dir: dir, Platform: "linux/amd64", Jobs: jobs, Progress: &events})
		if err != nil {
			t.Fatalf("jobs=%d: %v", jobs, err)
		}
		rootfs := filepath.Join(dir, "rootfs")
		if diff := diffTrees(knownTree, snapshot(t, rootfs)); diff != "" {
			t.Errorf("jobs=%d: rootfs differs:\n%s", jobs, diff)
		}
		checkKnownDetails(t, rootfs)
		if len(res.Layers) != 3 || res.Layers[0].Compression != "gzip" || res.Layers[1].Compression != "zstd" || res.Layers[2].Compression != "none" {
			t.Errorf("layer stats: %+v", res.Layers)
		}
		if res.Platform != "linux/amd64" || res.UnpackedBytes == 0 || res.CompressedBytes == 0 {
			t.Errorf("result: %+v", res)
		}
		var cf v1.ConfigFile
		b, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil || json.Unmarshal(b, &cf) != nil || len(cf.RootFS.DiffIDs) != 3 {
			t.Errorf("config.json: %v %s", err, b)
		}
		if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
			t.Error(err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 3 {
			t.Errorf("target holds %d entries, want rootfs, config.json, manifest.json", len(entries))
		}
		if got := events.count(LayerApplied); got != 3 {
			t.Errorf("%d applied events, want 3", got)
		}
	}
}

func checkKnownDetails(t *testing.T, rootfs string) {
	t.Helper()
	sh, _ := os.Stat(filepath.Join(rootfs, "bin/sh"))
	for _, l := range []string{"bin/ls", "bin/ls2"} {
		fi, err := os.Stat(filepath.Join(rootfs, l))
		if err != nil || !os.SameFile(sh, fi) {
			t.Errorf("%s is not a hard link of bin/sh", l)
		}
	}
	for _, p := range []string{".", "bin", "bin/sh", "usr/lib", "tmp", "ro", "data/keep", "etc/passwd"} {
		fi, err := os.Lstat(filepath.Join(rootfs, p))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(epoch) {
			t.Errorf("%s: mtime %v, want %v", p, fi.ModTime(), epoch)
		}
	}
}

type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) Update(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) count(k EventKind) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func TestPullMalicious(t *testing.T) {
	t.Parallel()
	bomb := ent{name: "zeros", typ: tar.TypeReg, mode: 0o644, body: strings.Repeat("\x00", 4<<20)}
	cases := []struct {
		name    string
		layers  func(t *testing.T, outside string) []v1.Layer
		wrap    func(http.Handler) http.Handler
		maxSize int64
		want    error // nil: any error
	}{
		{
			name:   "dotdot",
			layers: tars(gz, []ent{file("../x", "evil")}),
			want:   ErrUnsafeEntry,
		},
		{
			name:   "dotdot inside",
			layers: tars(gz, []ent{file("a/../../x", "evil")}),
			want:   ErrUnsafeEntry,
		},
		{
			name: "absolute",
			layers: func(t *testing.T, outside string) []v1.Layer {
				return tars(gz, []ent{file(filepath.Join(outside, "x"), "evil")})(t, outside)
			},
			want: ErrUnsafeEntry,
		},
		{
			name: "symlink escape across layers",
			layers: func(t *testing.T, outside string) []v1.Layer {
				return tars(gz, []ent{symlink("evil", outside)}, []ent{file("evil/file", "evil")})(t, outside)
			},
			want: ErrUnsafeEntry,
		},
		{
			name:   "relative symlink escape across layers",
			layers: tars(zst, []ent{symlink("evil", "../../outside")}, []ent{file("evil/file", "evil")}),
			want:   ErrUnsafeEntry,
		},
		{
			name: "symlink escape in one layer",
			layers: func(t *testing.T, outside string) []v1.Layer {
				return tars(none, []ent{symlink("evil", outside), file("evil/file", "evil")})(t, outside)
			},
			want: ErrUnsafeEntry,
		},
		{
			name:   "hardlink escape",
			layers: tars(gz, []ent{hardlink("x", "../outside/sentinel")}),
			want:   ErrUnsafeEntry,
		},
		{
			name: "hardlink absolute",
			layers: func(t *testing.T, outside string) []v1.Layer {
				return tars(gz, []ent{hardlink("x", filepath.Join(outside, "sentinel"))})(t, outside)
			},
			want: ErrUnsafeEntry,
		},
		{
			name: "hardlink through symlink",
			layers: func(t *testing.T, outside string) []v1.Layer {
				return tars(gz, []ent{symlink("s", outside)}, []ent{hardlink("x", "s/sentinel")})(t, outside)
			},
			want: ErrUnsafeEntry,
		},
		{
			name: "wrong diff_id",
			layers: func(t *testing.T, _ string) []v1.Layer {
				b, mt := compress(t, gz, mkTar(t, file("a", "a")))
				return []v1.Layer{mustLayer(t, &rawLayer{b: b, mt: mt, diffID: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}})}
			},
			want: ErrDiffIDMismatch,
		},
		{
			name:   "wrong compressed digest",
			layers: tars(gz, []ent{file("a", "a")}, []ent{file("b", "b")}),
			wrap:   corruptBlobs,
			want:   ErrDigestMismatch,
		},
		{
			name: "truncated layer",
			layers: func(t *testing.T, _ string) []v1.Layer {
				raw := mkTar(t, file("a", strings.Repeat("abc", 10000)))
				b, mt := compress(t, gz, raw)
				diffID, _, _ := v1.SHA256(bytes.NewReader(raw))
				return []v1.Layer{mustLayer(t, &rawLayer{b: b[:len(b)/2], mt: mt, diffID: diffID})}
			},
		},
		{
			name:    "bomb",
			layers:  tars(gz, []ent{file("a", "a")}, []ent{bomb}),
			maxSize: 1 << 20,
			want:    ErrTooLarge,
		},
		{
			name:    "bomb across layers",
			layers:  tars(zst, []ent{{name: "z1", mode: 0o644, body: strings.Repeat("\x00", 600<<10)}}, []ent{{name: "z2", mode: 0o644, body: strings.Repeat("\x00", 600<<10)}}),
			maxSize: 1 << 20,
			want:    ErrTooLarge,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir, outside := target(t)
			reg := newRegistry(t, tc.wrap)
			ref := push(t, reg, "evil:v1", mkImage(t, "linux/amd64", tc.layers(t, outside)...))
			_, err := Pull(t.Context(), Options{Ref: ref, Dir: dir, Platform: "linux/amd64", Jobs: 2, MaxSize: tc.maxSize})
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "layer ") {
				t.Errorf("error does not name the layer: %v", err)
			}
			t.Log(err)
			checkOutside(t, outside)
			checkClean(t, dir)
		})
	}
}

// tars builds one layer per entry list, all with codec c.
func tars(c codec, layers ...[]ent) func(*testing.T, string) []v1.Layer {
	return func(t *testing.T, _ string) []v1.Layer {
		var out []v1.Layer
		for _, ents := range layers {
			out = append(out, newLayer(t, c, mkTar(t, ents...)))
		}
		return out
	}
}

// corruptBlobs flips a byte in every layer blob served (the config, small
// JSON, is left alone so the manifest still resolves).
func corruptBlobs(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/sha256:") {
			h.ServeHTTP(w, r)
			return
		}
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		body := rec.body.Bytes()
		if len(body) > 0 && body[0] != '{' {
			body[len(body)/2] ^= 0xff
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.code)
		w.Write(body)
	})
}

type recorder struct {
	header http.Header
	body   bytes.Buffer
	code   int
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(c int) { r.code = c }

func TestPullMultiArch(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t, nil)
	amd := mkImage(t, "linux/amd64", newLayer(t, gz, mkTar(t, file("arch", "amd64"))))
	arm := mkImage(t, "linux/arm64/v8", newLayer(t, gz, mkTar(t, file("arch", "arm64"))))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	ref := strings.TrimPrefix(reg.URL, "http://") + "/multi:v1"
	r, _ := name.ParseReference(ref)
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ platform, want string }{
		{"linux/amd64", "amd64"},
		{"linux/arm64/v8", "arm64"},
		{"linux/arm64", "arm64"},
	} {
		dir, _ := target(t)
		if _, err := Pull(t.Context(), Options{Ref: ref, Dir: dir, Platform: tc.platform}); err != nil {
			t.Fatalf("%s: %v", tc.platform, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "rootfs", "arch"))
		if err != nil || string(b) != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.platform, b, err, tc.want)
		}
	}
	dir, _ := target(t)
	if _, err := Pull(t.Context(), Options{Ref: ref, Dir: dir, Platform: "linux/s390x"}); err == nil {
		t.Error("pull of a missing platform succeeded")
	}
	checkClean(t, dir)
}

// TestPullThroughAgent pulls through a stand-in agent that serves only the
// read path and insists on the ns parameter, as a Shoal agent does.
func TestPullThroughAgent(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t, nil)
	ref := push(t, reg, "app:v1", mkImage(t, "linux/amd64", knownLayers(t)...))
	upstream, _ := url.Parse(reg.URL)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	var mu sync.Mutex
	seen := 0
	agent := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead || !strings.HasPrefix(r.URL.Path, "/v2/") {
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		if ns := r.URL.Query().Get("ns"); ns != upstream.Host {
			http.Error(w, "missing or wrong ns: "+ns, http.StatusBadRequest)
			return
		}
		mu.Lock()
		seen++
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	dir, _ := target(t)
	_, err := Pull(t.Context(), Options{Ref: ref, Dir: dir, Agent: strings.TrimPrefix(agent.URL, "http://"), Platform: "linux/amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := diffTrees(knownTree, snapshot(t, filepath.Join(dir, "rootfs"))); diff != "" {
		t.Errorf("rootfs differs:\n%s", diff)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen < 5 { // ping, manifest, config, 3 layers
		t.Errorf("agent saw %d requests", seen)
	}
}

func TestAgentTransport(t *testing.T) {
	t.Parallel()
	cases := []struct{ ref, in, want string }{
		{"docker.io/library/alpine:3", "https://index.docker.io/v2/library/alpine/manifests/3", "http://127.0.0.1:5000/v2/library/alpine/manifests/3?ns=docker.io"},
		{"ghcr.io/a/b:1", "https://ghcr.io/v2/a/b/blobs/sha256:00?x=1", "http://127.0.0.1:5000/v2/a/b/blobs/sha256:00?ns=ghcr.io&x=1"},
		{"127.0.0.1:15000/app:v1", "http://127.0.0.1:15000/v2/", "http://127.0.0.1:5000/v2/?ns=127.0.0.1%3A15000"},
		{"ghcr.io/a/b:1", "https://auth.example/token?scope=x", "https://auth.example/token?scope=x"},
	}
	for _, tc := range cases {
		ref, err := name.ParseReference(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			got = r.URL.String()
			if r.Host != r.URL.Host {
				t.Errorf("Host header %q, URL host %q", r.Host, r.URL.Host)
			}
			return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
		})
		req, _ := http.NewRequest(http.MethodGet, tc.in, nil)
		if _, err := AgentTransport(base, "127.0.0.1:5000", ref.Context().Registry).RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.in, got, tc.want)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestPullExistingRootfs(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t, nil)
	ref := push(t, reg, "app:v1", mkImage(t, "linux/amd64", newLayer(t, gz, mkTar(t, file("v", "1")))))
	dir, _ := target(t)
	if err := os.MkdirAll(filepath.Join(dir, "rootfs", "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Pull(t.Context(), Options{Ref: ref, Dir: dir, Platform: "linux/amd64"})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("got %v, want ErrExists", err)
	}
	if _, err := Pull(t.Context(), Options{Ref: ref, Dir: dir, Platform: "linux/amd64", Force: true}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{".": "dir drwxr-xr-x", "v": `file -rw-r--r-- "1"`}
	if diff := diffTrees(want, snapshot(t, filepath.Join(dir, "rootfs"))); diff != "" {
		t.Errorf("rootfs after Force:\n%s", diff)
	}
}

func TestPullCanceled(t *testing.T) {
	t.Parallel()
	reg := newRegistry(t, nil)
	ref := push(t, reg, "app:v1", mkImage(t, "linux/amd64", knownLayers(t)...))
	dir, _ := target(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Pull(ctx, Options{Ref: ref, Dir: dir}); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
	checkClean(t, dir)
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{
		{},
		{Ref: "x"},
		{Ref: "x", Dir: "d", Jobs: -1},
		{Ref: "x", Dir: "d", MaxSize: -1},
		{Ref: "x", Dir: "d", Platform: "a/b/c/d/e"},
	} {
		if err := o.Validate(); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: got %v", o, err)
		}
	}
	if _, err := Pull(t.Context(), Options{Ref: "UPPER/case:!", Dir: t.TempDir()}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("bad reference: got %v", err)
	}
}

func TestProgress(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := NewTermProgress(&buf)
	p.Update(Event{Kind: LayerStarted, Layer: 0, Layers: 2, Digest: "sha256:" + strings.Repeat("ab", 32), Size: 3 << 20})
	p.Update(Event{Kind: LayerStaged, Layer: 1, Layers: 2, Digest: "sha256:" + strings.Repeat("cd", 32), Fetched: 10, Unpacked: 20})
	p.Update(Event{Kind: LayerFailed, Layer: 0, Layers: 2, Err: errors.New("boom")})
	p.Close()
	out := buf.String()
	for _, want := range []string{"\x1b[3A", "abababababab FAILED", "3.0 MiB", "unpacked", "boom", "total        0/2"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, out)
		}
	}

	var logs bytes.Buffer
	lp := NewLogProgress(slog.New(slog.NewTextHandler(&logs, nil)))
	lp.Update(Event{Kind: LayerApplied, Layer: 2, Layers: 3, Digest: "sha256:00"})
	if !strings.Contains(logs.String(), "layer=3/3") {
		t.Errorf("log output: %s", logs.String())
	}
	if IsTerminal(os.NewFile(^uintptr(0), "bad")) {
		t.Error("invalid descriptor reported as a terminal")
	}
}
