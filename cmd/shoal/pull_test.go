package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/prometheus/client_golang/prometheus"

	"go.uber.org/goleak"
)

// TestMain checks that no command leaves goroutines behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testImage is a two-layer image whose second layer replaces a file of
// the first and removes another.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	mk := func(files map[string]string) v1.Layer {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for n, body := range files {
			h := &tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1e9, 0)}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(tw, body); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	img, err := mutate.AppendLayers(empty.Image,
		mk(map[string]string{"etc/os-release": "ID=shoal\n", "bin/tool": "v1", "tmp/gone": "x"}),
		mk(map[string]string{"bin/tool": "v2", "tmp/.wh.gone": ""}),
	)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = []string{"/bin/tool"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// startRegistry serves go-containerregistry's in-memory registry with img
// pushed as app:v1, and returns the reference and a counter of requests.
func startRegistry(t *testing.T, img v1.Image) (string, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	reg := registry.New(registry.Logger(stdlog.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/app:v1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	hits.Store(0)
	return ref, &hits
}

// runPullCmd runs `shoal pull args...` through the root command, the way
// main does, and returns its stdout.
func runPullCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errw bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs(append([]string{"pull"}, args...))
	err := root.ExecuteContext(t.Context())
	if testing.Verbose() {
		t.Logf("stderr:\n%s", errw.String())
	}
	return out.String(), err
}

func checkRootfs(t *testing.T, dir string, img v1.Image) {
	t.Helper()
	for path, want := range map[string]string{"etc/os-release": "ID=shoal\n", "bin/tool": "v2"} {
		got, err := os.ReadFile(filepath.Join(dir, "rootfs", path))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "rootfs", "tmp", "gone")); !os.IsNotExist(err) {
		t.Errorf("whited-out tmp/gone: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, want) {
		t.Errorf("config.json differs from the image config")
	}
	var cf v1.ConfigFile
	if err := json.Unmarshal(raw, &cf); err != nil || len(cf.Config.Entrypoint) != 1 {
		t.Errorf("config.json: %v, %+v", err, cf.Config)
	}
}

func TestPullFromRegistry(t *testing.T) {
	t.Parallel()
	img := testImage(t)
	ref, hits := startRegistry(t, img)
	dir := filepath.Join(t.TempDir(), "out")
	out, err := runPullCmd(t, ref, "--unpack", dir, "--agent", "none", "--platform", "linux/amd64", "--jobs", "2")
	if err != nil {
		t.Fatal(err)
	}
	checkRootfs(t, dir, img)
	d, _ := img.Digest()
	for _, want := range []string{"from the registry", d.String(), "2, ", "MB/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if hits.Load() == 0 {
		t.Error("the registry saw no request")
	}

	// Again into the same DIR: refused without --force, replaced with it.
	if _, err := runPullCmd(t, ref, "--unpack", dir, "--agent", "none"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second pull without --force: %v", err)
	}
	if _, err := runPullCmd(t, ref, "--unpack", dir, "--agent", "none", "--force", "--std-gzip", "--jobs", "1"); err != nil {
		t.Fatalf("pull --force: %v", err)
	}
	checkRootfs(t, dir, img)
}

func TestPullThroughAgent(t *testing.T) {
	t.Parallel()
	img := testImage(t)
	ref, hits := startRegistry(t, img)
	registryURL := "http://" + strings.SplitN(ref, "/", 2)[0]

	cfg := defaultNodeConfig()
	cfg.DataDir = t.TempDir()
	cfg.Upstream.Default = registryURL
	cfg.Upstream.Timeout = 5 * time.Second
	n, err := newNode(cfg, nil, false, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	a := n.agent
	var agentHits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agentHits.Add(1)
		a.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); n.Close() })

	dir := filepath.Join(t.TempDir(), "out")
	out, err := runPullCmd(t, ref, "--unpack", dir, "--agent", strings.TrimPrefix(srv.URL, "http://"), "--platform", "linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	checkRootfs(t, dir, img)
	if !strings.Contains(out, "through agent") {
		t.Errorf("summary does not name the agent:\n%s", out)
	}
	if agentHits.Load() < 4 { // ping, manifest, config, layers
		t.Errorf("agent saw %d requests", agentHits.Load())
	}
	if hits.Load() == 0 {
		t.Error("the agent did not fetch from the registry")
	}
}

func TestPullBadInput(t *testing.T) {
	t.Parallel()
	ref, _ := startRegistry(t, testImage(t))
	// A port nobody listens on: bound, then closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no image", []string{"--unpack", dir}, "accepts 1 arg"},
		{"no dir", []string{ref}, "--unpack DIR is required"},
		{"bad reference", []string{"UPPER/Case::v1", "--unpack", dir, "--agent", "none"}, "invalid"},
		{"bad agent", []string{ref, "--unpack", dir, "--agent", "nowhere"}, "--agent"},
		{"bad platform", []string{ref, "--unpack", dir, "--platform", "linux/amd64/v1/x"}, "platform"},
		{"bad progress", []string{ref, "--unpack", dir, "--agent", "none", "--progress", "fancy"}, "--progress"},
		{"negative jobs", []string{ref, "--unpack", dir, "--jobs", "-1"}, "jobs"},
		{"unknown tag", []string{strings.Replace(ref, ":v1", ":v9", 1), "--unpack", dir, "--agent", "none"}, "MANIFEST_UNKNOWN"},
		{"unreachable registry", []string{dead + "/app:v1", "--unpack", dir, "--agent", "none"}, "connection refused"},
		{"unreachable agent", []string{ref, "--unpack", dir, "--agent", dead}, "agent " + dead + ": dial tcp"},
		{"too large", []string{ref, "--unpack", dir, "--agent", "none", "--max-size", "3"}, "exceeds limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := runPullCmd(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "rootfs")); !os.IsNotExist(err) {
		t.Errorf("a failed pull left a rootfs: %v", err)
	}
}

func TestChooseAgent(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	live := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		ref, flag, want string
	}{
		{"127.0.0.1:15000/app:v1", "none", ""},
		{"127.0.0.1:15000/app:v1", live, live},
		{live + "/app:v1", live, ""},      // the agent is the registry
		{"127.0.0.1:5050/app:v1", "", ""}, // likewise for the default agent
	} {
		got, err := chooseAgent(t.Context(), tc.ref, tc.flag, false)
		if err != nil || got != tc.want {
			t.Errorf("chooseAgent(%q, %q) = %q, %v; want %q", tc.ref, tc.flag, got, err, tc.want)
		}
	}
}

func TestProbeAgent(t *testing.T) {
	t.Parallel()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" {
			http.NotFound(w, r)
		}
	}))
	defer ok.Close()
	denied := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer denied.Close()
	if err := probeAgent(t.Context(), strings.TrimPrefix(ok.URL, "http://"), time.Second); err != nil {
		t.Errorf("a /v2/ answering 200 is not seen as an agent: %v", err)
	}
	if err := probeAgent(t.Context(), strings.TrimPrefix(denied.URL, "http://"), time.Second); err == nil {
		t.Error("a /v2/ answering 401 is seen as an agent")
	}
}
