package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// configure runs `shoal configure` and returns its stdout and stderr.
func configure(t testing.TB, args ...string) (string, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), shoalBin, append([]string{"configure"}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("shoal configure %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// tree reads every file and directory under root, for comparing a host's
// configuration before a configure run and after its --undo.
func tree(t testing.TB, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if info.IsDir() {
			got[rel+"/"] = info.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		got[rel] = info.Mode().String() + "\n" + string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func requireSameTree(t testing.TB, before, after map[string]string) {
	t.Helper()
	for k, v := range before {
		if w, ok := after[k]; !ok {
			t.Errorf("undo: %s is gone", k)
		} else if w != v {
			t.Errorf("undo: %s differs:\n%s\nwant\n%s", k, w, v)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("undo: %s is left over", k)
		}
	}
}

// blobBytes is what a pull of img fetches as blobs: config and layers.
func blobBytes(t testing.TB, img v1.Image) (int64, int) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, len(m.Layers) + 1
}

// TestRuntimeContainerdCRI configures a containerd host with `shoal
// configure containerd --edit-config` and pulls through containerd's CRI
// ImageService.PullImage, as kubelet does: the agent serves every blob and
// the image is in containerd. With the agent stopped, a pull still succeeds
// from the registry (the hosts.toml fallback, with a short dial_timeout).
// --undo then leaves the host's files as they were.
func TestRuntimeContainerdCRI(t *testing.T) {
	t.Parallel()
	hostRoot := t.TempDir()
	ctrd := agenttest.PrepareCRI(t, hostRoot)
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Seed: 15_001})
	ref := origin.Push(t, img, "cri/app:v1")
	later := agenttest.Image(t, agenttest.ImageOptions{Seed: 15_002})
	laterRef := origin.Push(t, later, "cri/later:v1")
	origin.ResetCounters()
	agent := agenttest.StartShoal(t, shoalBin, "agent",
		"--registry", origin.Addr+"="+origin.URL, "--insecure-registry", origin.Addr)

	before := tree(t, hostRoot)
	args := []string{"containerd", "--root", hostRoot, "--agent", agent.URL, "--registry", origin.Addr + "=" + origin.URL}
	if out, _ := configure(t, append(args, "--dry-run")...); !strings.Contains(out, "+[host.\""+agent.URL+"\"]") {
		t.Fatalf("dry run printed no hosts.toml diff:\n%s", out)
	}
	requireSameTree(t, before, tree(t, hostRoot)) // the dry run wrote nothing
	_, warn := configure(t, args...)
	if !strings.Contains(warn, "config_path is not set") {
		t.Fatalf("no config_path warning without --edit-config:\n%s", warn)
	}
	configure(t, append(args, "--edit-config")...)
	if out, _ := configure(t, append(args, "--edit-config")...); !strings.Contains(out, "nothing to change") {
		t.Fatalf("second run changed something:\n%s", out)
	}
	cfg, err := os.ReadFile(filepath.Join(hostRoot, "etc/containerd/config.toml"))
	if err != nil || !strings.Contains(string(cfg), `config_path = "/etc/containerd/certs.d"`) {
		t.Fatalf("config.toml: %v\n%s", err, cfg)
	}

	ctrd.Start(t)
	got, took := ctrd.PullImage(t, ref)
	t.Logf("CRI pull through the agent: %v", took)
	id, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if got != id.String() {
		t.Errorf("PullImage answered %s, want the image ID %s", got, id)
	}
	if st := ctrd.ImageStatus(t, ref); st == nil || st.GetId() == "" {
		t.Fatalf("containerd's CRI does not know %s after the pull", ref)
	}
	agenttest.RequireContent(t, ctrd.Content(t), img)
	want, blobs := blobBytes(t, img)
	if served := agent.Metric(t, "shoal_registry_response_bytes_total", "route=blob"); int64(served) != want {
		t.Errorf("the agent served %v blob bytes, want all %d", served, want)
	}
	if n := agent.Metric(t, "shoal_registry_requests_total", "route=blob", "method=GET", "code=200"); int(n) != blobs {
		t.Errorf("the agent answered %v blob GETs, want %d", n, blobs)
	}
	if n := origin.BlobGets(); n != blobs {
		t.Errorf("the origin served %d blob GETs, want %d (each once, to the agent)", n, blobs)
	}

	// The agent down: containerd falls back to the registry itself.
	if err := agent.Stop(); err != nil {
		t.Fatal(err)
	}
	origin.ResetCounters()
	_, took = ctrd.PullImage(t, laterRef)
	t.Logf("CRI pull with the agent stopped (fallback to the registry): %v", took)
	agenttest.RequireContent(t, ctrd.Content(t), later)
	if _, n := blobBytes(t, later); origin.BlobGets() != n {
		t.Errorf("fallback: the origin served %d blob GETs, want %d", origin.BlobGets(), n)
	}
	if err := ctrd.Stop(); err != nil {
		t.Logf("containerd stop: %v", err)
	}

	configure(t, "containerd", "--root", hostRoot, "--undo")
	requireSameTree(t, before, tree(t, hostRoot))
}

// TestRuntimePodman pulls with podman through the drop-in that `shoal
// configure podman` wrote, for two registries behind one agent: podman asks
// the agent in the registry-in-path form (it sends no ?ns=), and the agent
// serves every blob of both images. --undo restores the host's files.
func TestRuntimePodman(t *testing.T) {
	t.Parallel()
	hostRoot := t.TempDir()
	pm := agenttest.NewPodman(t, hostRoot)
	a := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	b := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	imgA := agenttest.Image(t, agenttest.ImageOptions{Seed: 15_101})
	imgB := agenttest.Image(t, agenttest.ImageOptions{Seed: 15_102, MediaType: agenttest.Docker})
	a.Push(t, imgA, "team/a:v1")
	b.Push(t, imgB, "team/b:v1")
	a.ResetCounters()
	b.ResetCounters()
	// Registry names without a port: containers/image cannot put a port
	// in a mirror's path. The agent reaches them at their real addresses.
	const regA, regB = "reg-a.shoal.test", "reg-b.shoal.test"
	agent := agenttest.StartShoal(t, shoalBin, "agent",
		"--registry", regA+"="+a.URL, "--insecure-registry", regA,
		"--registry", regB+"="+b.URL, "--insecure-registry", regB)

	before := tree(t, hostRoot)
	args := []string{"podman", "--root", hostRoot, "--agent", agent.URL, "--registry", regA + "=" + a.URL, "--registry", regB + "=" + b.URL}
	configure(t, args...)
	if out, _ := configure(t, args...); !strings.Contains(out, "nothing to change") {
		t.Fatalf("second run changed something:\n%s", out)
	}

	for _, p := range []struct {
		ref string
		img v1.Image
	}{{regA + "/team/a:v1", imgA}, {regB + "/team/b:v1", imgB}} {
		pm.Pull(t, p.ref)
		cfg, err := p.img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		if id := pm.ImageID(t, p.ref); id != cfg.Hex {
			t.Errorf("podman has %s as %s, want %s", p.ref, id, cfg.Hex)
		}
	}
	wantA, nA := blobBytes(t, imgA)
	wantB, nB := blobBytes(t, imgB)
	if served := agent.Metric(t, "shoal_registry_response_bytes_total", "route=blob"); int64(served) != wantA+wantB {
		t.Errorf("the agent served %v blob bytes, want all %d of both images", served, wantA+wantB)
	}
	if a.BlobGets() != nA || b.BlobGets() != nB {
		t.Errorf("the origins served %d and %d blob GETs, want %d and %d (each once, to the agent)", a.BlobGets(), b.BlobGets(), nA, nB)
	}

	configure(t, "podman", "--root", hostRoot, "--undo")
	requireSameTree(t, before, tree(t, hostRoot))
}

// TestRuntimeContainerdStreamProcessor registers `shoal decompress` as
// containerd's stream processor (`--stream-processor --edit-config`) and
// pulls through the CRI: containerd's unpack runs it for every gzip layer
// (a wrapper records each run and its media type) and the image is
// complete. --undo restores config.toml byte for byte.
func TestRuntimeContainerdStreamProcessor(t *testing.T) {
	t.Parallel()
	hostRoot := t.TempDir()
	ctrd := agenttest.PrepareCRI(t, hostRoot)
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 3, Seed: 15_201})
	ref := origin.Push(t, img, "cri/processed:v1")
	agent := agenttest.StartShoal(t, shoalBin, "agent",
		"--registry", origin.Addr+"="+origin.URL, "--insecure-registry", origin.Addr)

	runs := filepath.Join(t.TempDir(), "runs")
	wrapper := filepath.Join(t.TempDir(), "shoal-decompress")
	script := "#!/bin/sh\necho \"$STREAM_PROCESSOR_MEDIATYPE $*\" >> " + runs + "\nexec " + shoalBin + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	before := tree(t, hostRoot)
	configure(t, "containerd", "--root", hostRoot, "--agent", agent.URL, "--registry", origin.Addr+"="+origin.URL,
		"--edit-config", "--stream-processor", "--shoal-path", wrapper)
	cfg, err := os.ReadFile(filepath.Join(hostRoot, "etc/containerd/config.toml"))
	if err != nil || !strings.Contains(string(cfg), `[stream_processors."io.containerd.processor.shoal.gzip"]`) {
		t.Fatalf("config.toml: %v\n%s", err, cfg)
	}

	ctrd.Start(t)
	ctrd.PullImage(t, ref)
	agenttest.RequireContent(t, ctrd.Content(t), img)
	if st := ctrd.ImageStatus(t, ref); st == nil {
		t.Fatalf("containerd's CRI does not know %s", ref)
	}
	got, err := os.ReadFile(runs)
	if err != nil {
		t.Fatalf("containerd never ran the stream processor: %v\n%s", err, ctrd.Logs())
	}
	if lines := strings.Split(strings.TrimSpace(string(got)), "\n"); len(lines) != 3 ||
		!strings.HasPrefix(lines[0], "application/vnd.oci.image.layer.v1.tar+gzip decompress") {
		t.Fatalf("stream processor runs %q, want one `decompress` per gzip layer (3)", lines)
	}
	if err := ctrd.Stop(); err != nil {
		t.Logf("containerd stop: %v", err)
	}
	configure(t, "containerd", "--root", hostRoot, "--undo")
	requireSameTree(t, before, tree(t, hostRoot))
}
