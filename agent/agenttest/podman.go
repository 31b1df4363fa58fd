package agenttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Podman runs Debian's podman as root with storage private to one test
// and the registries.conf drop-ins of a directory taken as the host's /
// (HostRoot/etc/containers/registries.conf.d, where `shoal configure podman
// --root HostRoot` writes): each command runs in a mount namespace of its
// own where that directory is /etc/containers/registries.conf.d, so podman
// reads the drop-in where it reads it on a real host and nothing of the
// machine's own is touched. The main registries.conf is an empty one of the
// test's.
type Podman struct {
	HostRoot string
	dir      string
	env      []string
}

// NewPodman returns a podman reading HostRoot's drop-ins. Without root or
// podman the test is skipped (failed under CI=true).
func NewPodman(t testing.TB, hostRoot string) *Podman {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFatal(t, "podman's private storage needs root")
	}
	requireTool(t, "podman")
	requireTool(t, "unshare")
	if st, err := os.Stat("/etc/containers/registries.conf.d"); err != nil || !st.IsDir() {
		skipOrFatal(t, "/etc/containers/registries.conf.d missing: podman's package makes it (%s)", depsHint)
	}
	// Not t.TempDir(): podman refuses a runroot longer than 50 characters,
	// which a directory named after a subtest soon is.
	dir, err := os.MkdirTemp("", "podman-")
	if err != nil {
		t.Fatalf("agenttest: podman dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatalf("agenttest: podman home: %v", err)
	}
	// The host's /etc/containers, which podman's package makes.
	if err := os.MkdirAll(filepath.Join(hostRoot, "etc", "containers"), 0o755); err != nil {
		t.Fatalf("agenttest: %v", err)
	}
	conf := filepath.Join(dir, "registries.conf")
	if err := os.WriteFile(conf, []byte("unqualified-search-registries = []\n"), 0o644); err != nil {
		t.Fatalf("agenttest: registries.conf: %v", err)
	}
	return &Podman{HostRoot: hostRoot, dir: dir,
		env: []string{"HOME=" + home, "CONTAINERS_REGISTRIES_CONF=" + conf}}
}

// Run runs podman with the private storage and HostRoot's drop-ins (the
// directory must exist), failing the test on an error.
func (p *Podman) Run(t testing.TB, args ...string) string {
	t.Helper()
	script := `mount --bind "$1" /etc/containers/registries.conf.d && shift && exec "$@"`
	base := []string{"--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh",
		filepath.Join(p.HostRoot, "etc", "containers", "registries.conf.d"), ToolPath(t, "podman"),
		"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "runroot"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"}
	return runTool(t, p.env, "unshare", append(base, args...)...)
}

// Pull pulls ref (the registry's own name: the drop-in sends it to the mirror).
func (p *Podman) Pull(t testing.TB, ref string) string {
	t.Helper()
	return p.Run(t, "pull", "--quiet", ref)
}

// ImageID returns the ID of ref in podman's storage.
func (p *Podman) ImageID(t testing.TB, ref string) string {
	t.Helper()
	return strings.TrimSpace(p.Run(t, "image", "inspect", "--format", "{{.Id}}", ref))
}
