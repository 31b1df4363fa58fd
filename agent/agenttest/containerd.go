package agenttest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/deploy/conf"
)

// ContainerdBinary is where Debian's containerd package installs the daemon.
const ContainerdBinary = "/usr/bin/containerd"

// CtrNamespace is the containerd namespace the harness pulls into.
const CtrNamespace = "shoaltest"

// Containerd is a containerd daemon private to one test.
type Containerd struct {
	// Address is the daemon's gRPC socket.
	Address string
	// Root is the daemon's root directory (content store, snapshots).
	Root string
	// Snapshotter is what pulls unpack with: overlayfs where the kernel
	// allows it, native otherwise.
	Snapshotter string

	proc *Process
}

// StartContainerd starts /usr/bin/containerd as root with a private config
// (own root, state and socket; CRI disabled) and waits for its socket. It
// stops in t.Cleanup. Without root or the binary the test is skipped
// (failed under CI=true).
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFatal(t, "containerd needs root")
	}
	if _, err := os.Stat(ContainerdBinary); err != nil {
		skipOrFatal(t, "%s missing: install Debian's containerd package (%s)", ContainerdBinary, depsHint)
	}
	requireTool(t, "ctr")
	// Unix socket paths are limited to 108 bytes and t.TempDir() names
	// carry the test name, so the socket and state live in a short path.
	short, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatalf("agenttest: containerd dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(short) })
	c := &Containerd{
		Address: filepath.Join(short, "sock"),
		Root:    filepath.Join(t.TempDir(), "root"),
	}
	cfg := filepath.Join(short, "config.toml")
	if err := os.WriteFile(cfg, []byte(conf.Containerd(c.Root, filepath.Join(short, "state"), c.Address)), 0o600); err != nil {
		t.Fatalf("agenttest: containerd config: %v", err)
	}
	c.proc = StartProcess(t, ProcessOptions{}, ContainerdBinary, "--config", cfg)
	if err := waitUnix(t.Context(), c.proc, c.Address); err != nil {
		t.Fatalf("agenttest: %v\n%s", err, c.proc.Logs())
	}
	c.Snapshotter = "native"
	if plugins := c.Ctr(t, "plugins", "ls"); hasPluginOK(plugins, "io.containerd.snapshotter.v1", "overlayfs") {
		c.Snapshotter = "overlayfs"
	}
	return c
}

// hasPluginOK finds a "TYPE ID PLATFORMS STATUS" row of `ctr plugins ls`.
func hasPluginOK(out, typ, id string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == typ && f[1] == id && f[len(f)-1] == "ok" {
			return true
		}
	}
	return false
}

func waitUnix(ctx context.Context, proc *Process, sock string) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if conn, err := net.Dial("unix", sock); err == nil {
			return conn.Close()
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("%s exited before listening on %s", proc.Name, sock)
		case <-ctx.Done():
			return fmt.Errorf("%s did not listen on %s: %w", proc.Name, sock, ctx.Err())
		case <-tick.C:
		}
	}
}

// Ctr runs ctr against this daemon in CtrNamespace, failing the test with
// ctr's output if it fails.
func (c *Containerd) Ctr(t testing.TB, args ...string) string {
	t.Helper()
	return Ctr(t, append([]string{"--address", c.Address, "--namespace", CtrNamespace}, args...)...)
}

// CtrArgs returns the leading ctr arguments that reach this daemon, for
// RunTool when a test expects ctr to fail.
func (c *Containerd) CtrArgs() []string {
	return []string{"--address", c.Address, "--namespace", CtrNamespace}
}

// PullOptions adjust Containerd.Pull.
type PullOptions struct {
	// HostsDir is a --hosts-dir with hosts.toml files (see WriteHostsToml).
	HostsDir string
	// Creds authenticate to the registry; nil is anonymous.
	Creds *BasicAuth
	// AllPlatforms fetches every image of an index; by default only the
	// host's platform is fetched.
	AllPlatforms bool
}

// Pull runs `ctr images pull --plain-http` for ref, which fetches into the
// daemon's content store (digests checked on commit) and unpacks with
// c.Snapshotter. In containerd 1.6 the ctr process itself does the
// fetching, with the daemon as the store.
func (c *Containerd) Pull(t testing.TB, ref string, opts PullOptions) string {
	t.Helper()
	args := []string{"images", "pull", "--plain-http", "--snapshotter", c.Snapshotter}
	if opts.HostsDir != "" {
		args = append(args, "--hosts-dir", opts.HostsDir)
	}
	if opts.Creds != nil {
		args = append(args, "--user", opts.Creds.User+":"+opts.Creds.Password)
	}
	if opts.AllPlatforms {
		args = append(args, "--all-platforms")
	}
	return c.Ctr(t, append(args, ref)...)
}

// ContentDir is where the daemon keeps blobs, named by sha256 hex.
func (c *Containerd) ContentDir() string {
	return filepath.Join(c.Root, "io.containerd.content.v1.content", "blobs", "sha256")
}

// Content checks every blob in the daemon's content store against its
// digest and returns them.
func (c *Containerd) Content(t testing.TB) Content {
	t.Helper()
	return VerifyBlobStore(t, c.ContentDir())
}

// WriteHostsToml writes dir/<registryHost>/hosts.toml so that containerd
// (ctr --hosts-dir dir) asks mirrorURL first for pulls and tag resolution,
// then falls back to the registry itself over plain HTTP. registryHost is
// host:port as it appears in image references; mirrorURL is like
// "http://127.0.0.1:5050". It returns dir.
func WriteHostsToml(t testing.TB, dir, registryHost, mirrorURL string) string {
	t.Helper()
	if strings.ContainsAny(registryHost, "/\"\n") || !strings.HasPrefix(mirrorURL, "http") {
		t.Fatalf("agenttest: hosts.toml: bad host %q or mirror %q", registryHost, mirrorURL)
	}
	hostDir := filepath.Join(dir, registryHost)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatalf("agenttest: hosts.toml: %v", err)
	}
	// An explicit http:// scheme is what makes containerd 1.6 speak plain
	// HTTP to a host; --plain-http only changes the default server's scheme.
	toml := fmt.Sprintf(`server = "http://%s"

[host.%q]
  capabilities = ["pull", "resolve"]
`, registryHost, mirrorURL)
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatalf("agenttest: hosts.toml: %v", err)
	}
	return dir
}
