package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/x509"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// The image TestMain builds once for every test, with the image command
// itself (imageCmd, built without -race: gzip under the race detector
// takes ten times as long). Cross-compiling shoal for two platforms is the
// slow part: minutes with a cold build cache on 2 cores, seconds with a
// warm one. Nothing changes these after TestMain.
var (
	imageCmd string
	built    v1.ImageIndex
	builtDir string
	// noImage says why there is none (-short, no CA bundle, a failed build).
	noImage string
)

// created is the tests' image timestamp: 2026-01-01T00:00:00Z.
var created = time.Unix(1767225600, 0).UTC()

const (
	testCA       = "/etc/ssl/certs/ca-certificates.crt" // Debian's ca-certificates
	testRevision = "0123456789abcdef0123456789abcdef01234567"
)

// buildArgs are the arguments of `image build` of the module at src into
// out, as make image passes them.
func buildArgs(src, out string) []string {
	return []string{"build", "-src", src, "-out", out, "-platforms", "linux/amd64,linux/arm64",
		"-created", strconv.FormatInt(created.Unix(), 10), "-revision", testRevision, "-ca-certs", testCA}
}

// srcA is the copy of the module TestMain built the image from. The
// tests build from copies so that both builds of TestReproducible see
// the same source even while someone edits the checkout.
var srcA string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "shoal-image-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	switch _, caErr := os.Stat(testCA); {
	case testing.Short():
		noImage = "-short: the image build cross-compiles shoal for two platforms"
	case caErr != nil:
		noImage = fmt.Sprintf("no CA bundle: %v (install Debian's ca-certificates; deploy/deps.sh does)", caErr)
	default:
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		start := time.Now()
		builtDir, srcA = filepath.Join(dir, "image"), filepath.Join(dir, "src-a")
		if err := buildImageCmd(ctx, dir); err != nil {
			noImage = fmt.Sprintf("build: %v", err)
		} else if err := copyModule(moduleRoot(ctx), srcA); err != nil {
			noImage = fmt.Sprintf("build: copy the module: %v", err)
		} else if out, err := runImage(ctx, buildArgs(srcA, builtDir)...); err != nil {
			noImage = fmt.Sprintf("build: %v\n%s", err, out)
		} else if built, err = layoutIndex(builtDir); err != nil {
			noImage = fmt.Sprintf("build: %v", err)
		} else {
			fmt.Fprintf(os.Stderr, "%simage: TestMain built the image in %s\n", out, time.Since(start).Round(100*time.Millisecond))
		}
		cancel()
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = os.RemoveAll(dir) }))
}

// buildImageCmd compiles this command into dir, setting imageCmd.
func buildImageCmd(ctx context.Context, dir string) error {
	bin := filepath.Join(dir, "image-cmd")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("go build deploy/image: %w\n%s", err, out)
	}
	imageCmd = bin
	return nil
}

// moduleRoot is the directory of this module's go.mod ("" if not found,
// which copyModule refuses).
func moduleRoot(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return ""
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// copyModule copies the module at from to the new directory to: every
// regular file but those of .git, bin and out at the top.
func copyModule(from, to string) error {
	if _, err := os.Stat(filepath.Join(from, "go.mod")); err != nil {
		return err
	}
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir() && (rel == ".git" || rel == "bin" || rel == "out"):
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		case !d.Type().IsRegular():
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
}

// runImage runs the image command and returns its combined output.
func runImage(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, imageCmd, args...).CombinedOutput()
	return string(out), err
}

// needImage returns the image TestMain built, or skips the test (fails
// it when the build failed, or under CI=true when the CA bundle is
// missing).
func needImage(t *testing.T) v1.ImageIndex {
	t.Helper()
	switch {
	case built != nil:
		return built
	case testing.Short():
		t.Skip(noImage)
	case strings.HasPrefix(noImage, "build:") || agenttest.InCI():
		t.Fatal(noImage)
	default:
		t.Skip(noImage)
	}
	return nil
}

// TestReproducible builds the image a second time from the same source,
// copied to another directory, into another directory and with a build
// environment that would change the binaries if it reached them
// (GOAMD64=v3, GOFLAGS=-race), and wants the same digests. The second build links both binaries again and
// compresses the layers again; the compiled packages come from Go's build
// cache. SHOAL_IMAGE_FRESH_GOCACHE=1 gives it an empty cache, so that
// nothing is shared with the first build (minutes longer).
func TestReproducible(t *testing.T) {
	t.Parallel()
	first := needImage(t)
	out, srcB := filepath.Join(t.TempDir(), "image"), filepath.Join(t.TempDir(), "src-b")
	if err := copyModule(srcA, srcB); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), imageCmd, buildArgs(srcB, out)...)
	cmd.Env = append(os.Environ(), "GOAMD64=v3", "GOFLAGS=-race")
	fresh := os.Getenv("SHOAL_IMAGE_FRESH_GOCACHE") == "1"
	if fresh {
		cmd.Env = append(cmd.Env, "GOCACHE="+t.TempDir())
	}
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second build: %v\n%s", err, b)
	}
	t.Logf("second build (fresh GOCACHE: %v) took %s", fresh, time.Since(start).Round(100*time.Millisecond))
	second, err := layoutIndex(out)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := digest(t, first), digest(t, second); a != b {
		t.Errorf("index digests differ: %s, then %s", a, b)
		for _, p := range defaultPlatforms {
			ma, mb := manifestOf(t, first, p), manifestOf(t, second, p)
			if ma.Config.Digest != mb.Config.Digest {
				t.Errorf("%s: configs differ: %s, then %s", p.String(), ma.Config.Digest, mb.Config.Digest)
			}
			if ma.Layers[0].Digest != mb.Layers[0].Digest {
				t.Errorf("%s: layers differ: %s, then %s", p.String(), ma.Layers[0].Digest, mb.Layers[0].Digest)
			}
		}
	}
	// What was written is what was built: the layouts are equal too.
	for _, name := range []string{"index.json", "oci-layout"} {
		a, errA := os.ReadFile(filepath.Join(builtDir, name))
		b, errB := os.ReadFile(filepath.Join(out, name))
		if err := errors.Join(errA, errB); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the two layouts:\n%s\n%s", name, a, b)
		}
	}
}

// TestIndex checks the index: OCI media types and one image per platform,
// in order.
func TestIndex(t *testing.T) {
	t.Parallel()
	idx := needImage(t)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", im.MediaType, types.OCIImageIndex)
	}
	var got []string
	for _, d := range im.Manifests {
		if d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("manifest %s: media type %s, want %s", d.Digest, d.MediaType, types.OCIManifestSchema1)
		}
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		got = append(got, d.Platform.String())
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(got, want) {
		t.Errorf("platforms %q, want %q", got, want)
	}
	// The layout's index.json points at this index and nothing else.
	top, err := layoutIndex(builtDir)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := digest(t, top), digest(t, idx); a != b {
		t.Errorf("the layout holds index %s, the build returned %s", a, b)
	}
}

// TestConfig checks each platform's config: its platform, a non-root user,
// the entrypoint and command, and the one timestamp.
func TestConfig(t *testing.T) {
	t.Parallel()
	idx := needImage(t)
	for _, p := range defaultPlatforms {
		t.Run(p.Architecture, func(t *testing.T) {
			t.Parallel()
			img := imageOf(t, idx, p)
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.Config.MediaType != types.OCIConfigJSON {
				t.Errorf("config media type %s, want %s", m.Config.MediaType, types.OCIConfigJSON)
			}
			if len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
				t.Fatalf("layers %+v, want one %s", m.Layers, types.OCILayer)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != p.OS || cf.Architecture != p.Architecture {
				t.Errorf("config platform %s/%s, want %s", cf.OS, cf.Architecture, p.String())
			}
			if cf.Config.User != "65532:65532" {
				t.Errorf("user %q, want 65532:65532 (non-root)", cf.Config.User)
			}
			if want := []string{"/usr/local/bin/shoal"}; !slices.Equal(cf.Config.Entrypoint, want) {
				t.Errorf("entrypoint %q, want %q", cf.Config.Entrypoint, want)
			}
			if want := []string{"agent"}; !slices.Equal(cf.Config.Cmd, want) {
				t.Errorf("cmd %q, want %q", cf.Config.Cmd, want)
			}
			if got := cf.Config.Labels[revisionLabel]; got != testRevision {
				t.Errorf("label %s = %q, want %q", revisionLabel, got, testRevision)
			}
			if !cf.Created.Time.Equal(created) {
				t.Errorf("created %s, want %s", cf.Created.Time, created)
			}
			if len(cf.History) != 1 || !cf.History[0].Created.Time.Equal(created) {
				t.Errorf("history %+v, want one entry created %s", cf.History, created)
			}
			layer, err := img.LayerByDigest(m.Layers[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			if h, err := layer.DiffID(); err != nil || len(cf.RootFS.DiffIDs) != 1 || cf.RootFS.DiffIDs[0] != h {
				t.Errorf("rootfs diff IDs %v, want the layer's %v (%v)", cf.RootFS.DiffIDs, h, err)
			}
		})
	}
}

// TestLayer reads each platform's layer: exactly the expected files, one
// timestamp, the binary static and for the right machine, the build
// machine's CA bundle, the user, the data directory owned by it, and no
// shell.
func TestLayer(t *testing.T) {
	t.Parallel()
	idx := needImage(t)
	ca, err := os.ReadFile(testCA)
	if err != nil {
		t.Fatal(err)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, p := range defaultPlatforms {
		t.Run(p.Architecture, func(t *testing.T) {
			t.Parallel()
			entries := layerEntries(t, imageOf(t, idx, p))
			var names []string
			for _, e := range entries {
				names = append(names, e.hdr.Name)
				if !e.hdr.ModTime.Equal(created) {
					t.Errorf("%s: mtime %s, want %s", e.hdr.Name, e.hdr.ModTime, created)
				}
				if base := filepath.Base(e.hdr.Name); base == "sh" || base == "bash" || base == "busybox" {
					t.Errorf("%s: the image must have no shell", e.hdr.Name)
				}
			}
			want := []string{
				"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt",
				"tmp/", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/shoal",
				"var/", "var/lib/", "var/lib/shoal/",
			}
			if !slices.Equal(names, want) {
				t.Fatalf("layer entries\n%q\nwant\n%q", names, want)
			}
			byName := map[string]entry{}
			for _, e := range entries {
				byName[e.hdr.Name] = e
			}

			bin := byName["usr/local/bin/shoal"]
			if bin.hdr.Mode != 0o755 || bin.hdr.Uid != 0 {
				t.Errorf("shoal: mode %o uid %d, want 755 and root", bin.hdr.Mode, bin.hdr.Uid)
			}
			f, err := elf.NewFile(bytes.NewReader(bin.body))
			if err != nil {
				t.Fatalf("shoal is not an ELF binary: %v", err)
			}
			if f.Machine != machines[p.Architecture] {
				t.Errorf("shoal is for %s, want %s", f.Machine, machines[p.Architecture])
			}
			for _, prog := range f.Progs {
				if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
					t.Errorf("shoal is dynamically linked (%s)", prog.Type)
				}
			}
			if f.Section(".symtab") != nil {
				t.Error("shoal has a symbol table: not linked with -s")
			}
			info, err := buildinfo.Read(bytes.NewReader(bin.body))
			if err != nil {
				t.Fatalf("shoal build info: %v", err)
			}
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			for k, want := range map[string]string{"-trimpath": "true", "CGO_ENABLED": "0", "vcs.revision": ""} {
				if settings[k] != want {
					t.Errorf("shoal build setting %s=%q, want %q", k, settings[k], want)
				}
			}

			if got := byName["etc/ssl/certs/ca-certificates.crt"].body; !bytes.Equal(got, ca) {
				t.Errorf("CA bundle: %d bytes, not the build machine's %s (%d bytes)", len(got), testCA, len(ca))
			}
			if !x509.NewCertPool().AppendCertsFromPEM(byName["etc/ssl/certs/ca-certificates.crt"].body) {
				t.Error("CA bundle holds no certificate")
			}
			if passwd := string(byName["etc/passwd"].body); !strings.Contains(passwd, "\nshoal:x:65532:65532:shoal:/var/lib/shoal:/sbin/nologin\n") {
				t.Errorf("etc/passwd lacks the user shoal:\n%s", passwd)
			}
			if group := string(byName["etc/group"].body); !strings.Contains(group, "\nshoal:x:65532:\n") {
				t.Errorf("etc/group lacks the group shoal:\n%s", group)
			}
			data := byName["var/lib/shoal/"]
			if data.hdr.Typeflag != tar.TypeDir || data.hdr.Uid != 65532 || data.hdr.Gid != 65532 || data.hdr.Mode != 0o700 {
				t.Errorf("var/lib/shoal: type %c uid %d gid %d mode %o, want a directory of 65532:65532, 700",
					data.hdr.Typeflag, data.hdr.Uid, data.hdr.Gid, data.hdr.Mode)
			}
			if tmp := byName["tmp/"]; tmp.hdr.Mode != 0o1777 {
				t.Errorf("tmp: mode %o, want 1777", tmp.hdr.Mode)
			}
		})
	}
}

// TestPushPull pushes the image with `image push -insecure` to a local
// docker-registry, then pulls it back with crane through a shoal agent
// that runs the image's own binary (this machine's platform): the index,
// both manifests, configs and layers arrive byte for byte.
func TestPushPull(t *testing.T) {
	t.Parallel()
	idx := needImage(t)
	host := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if runtime.GOOS != "linux" || !slices.ContainsFunc(defaultPlatforms, host.Equals) {
		t.Skipf("the image has no binary for %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})

	ref := origin.Addr + "/shoal:test"
	out, err := runImage(t.Context(), "push", "-layout", builtDir, "-insecure", ref)
	if err != nil {
		t.Fatalf("image push: %v\n%s", err, out)
	}
	want := origin.Addr + "/shoal@" + digest(t, idx).String()
	if got := strings.TrimSpace(out); got != want {
		t.Errorf("image push printed %q, want %q", got, want)
	}

	bin := filepath.Join(t.TempDir(), "shoal")
	if err := os.WriteFile(bin, fileOf(t, imageOf(t, idx, host), "usr/local/bin/shoal"), 0o755); err != nil {
		t.Fatal(err)
	}
	agent := agenttest.StartShoal(t, bin, "agent", "--upstream", origin.URL)
	got := agenttest.VerifyOCILayout(t, agenttest.CranePull(t, agent.Addr+"/shoal:test", nil))
	agenttest.RequireContent(t, got, idx)
	if d := digest(t, idx); !slices.Equal(got.Roots, []v1.Hash{d}) {
		t.Errorf("crane pulled roots %v, want the index %s", got.Roots, d)
	}
}

// TestLayerTar checks the tar writer alone: the order of the files given
// does not matter, parents are added, and owners and times are fixed.
func TestLayerTar(t *testing.T) {
	t.Parallel()
	files := rootFS([]byte("binary"), []byte("-----BEGIN CERTIFICATE-----\n"))
	a, err := layerTar(files, created)
	if err != nil {
		t.Fatal(err)
	}
	reversed := slices.Clone(files)
	slices.Reverse(reversed)
	b, err := layerTar(reversed, created)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("the same files in another order give another tar")
	}
	c, err := layerTar(files, created.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c) {
		t.Error("the timestamp does not reach the tar")
	}
	tr := tar.NewReader(bytes.NewReader(a))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uname != ownerName(hdr.Uid) || hdr.Gid != hdr.Uid || !hdr.AccessTime.IsZero() || !hdr.ChangeTime.IsZero() {
			t.Errorf("%s: owner %d/%s gid %d, atime %s, ctime %s", hdr.Name, hdr.Uid, hdr.Uname, hdr.Gid, hdr.AccessTime, hdr.ChangeTime)
		}
	}
}

// TestReplaceable: an absent, empty or OCI layout directory may be
// replaced; anything else may not.
func TestReplaceable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mk := func(name string, files ...string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(p, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	for _, tc := range []struct {
		dir string
		ok  bool
	}{
		{filepath.Join(dir, "absent"), true},
		{mk("empty"), true},
		{mk("layout", "oci-layout", "index.json"), true},
		{mk("checkout", "go.mod"), false},
	} {
		if err := replaceable(tc.dir); (err == nil) != tc.ok {
			t.Errorf("replaceable(%s) = %v, want ok=%v", filepath.Base(tc.dir), err, tc.ok)
		}
	}
}

// TestFlags checks the command line's parsing of times and platforms.
func TestFlags(t *testing.T) {
	t.Parallel()
	if got, err := parseCreated(""); err != nil || !got.Equal(time.Unix(0, 0)) {
		t.Errorf(`parseCreated("") = %s, %v; want the epoch`, got, err)
	}
	if got, err := parseCreated("1767225600"); err != nil || !got.Equal(created) {
		t.Errorf("parseCreated = %s, %v; want %s", got, err, created)
	}
	for _, bad := range []string{"-1", "yesterday", "1.5"} {
		if _, err := parseCreated(bad); err == nil {
			t.Errorf("parseCreated(%q) accepted", bad)
		}
	}
	ps, err := parsePlatforms("linux/amd64, linux/arm64")
	if err != nil || !slices.EqualFunc(ps, defaultPlatforms, v1.Platform.Equals) {
		t.Errorf("parsePlatforms = %v, %v", ps, err)
	}
	c := buildConfig{Out: "x", Platforms: []v1.Platform{{OS: "windows", Architecture: "amd64"}}, CACerts: testCA}
	if err := c.validate(); err == nil {
		t.Error("a windows platform was accepted")
	}
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"push"}, io.Discard, &stderr); err == nil {
		t.Error("push without a reference was accepted")
	}
}

type entry struct {
	hdr  *tar.Header
	body []byte
}

func layerEntries(t *testing.T, img v1.Image) []entry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var entries []entry
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, entry{hdr: hdr, body: body})
	}
}

func fileOf(t *testing.T, img v1.Image, name string) []byte {
	t.Helper()
	for _, e := range layerEntries(t, img) {
		if e.hdr.Name == name {
			return e.body
		}
	}
	t.Fatalf("no %s in the layer", name)
	return nil
}

func imageOf(t *testing.T, idx v1.ImageIndex, p v1.Platform) v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Equals(p) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no image for %s", p.String())
	return nil
}

func manifestOf(t *testing.T, idx v1.ImageIndex, p v1.Platform) *v1.Manifest {
	t.Helper()
	m, err := imageOf(t, idx, p).Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
