package agenttest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRIContainerd is a containerd daemon with its CRI plugin, configured from
// a directory taken as the host's / (as `shoal configure containerd --root`
// sees it): its config.toml is HostRoot/etc/containerd/config.toml and the
// daemon runs in a mount namespace of its own where HostRoot/etc/containerd
// is /etc/containerd, so the config_path that shoal configure wrote
// ("/etc/containerd/certs.d") is read as on a real node, and nothing of the
// machine's own /etc/containerd is touched.
type CRIContainerd struct {
	// Address is the daemon's gRPC socket, where the CRI services are too.
	Address string
	// HostRoot is the directory taken as the host's /.
	HostRoot string
	// Root is the daemon's root directory (content store, snapshots).
	Root string
	// Snapshotter is what the CRI unpacks with: overlayfs where the kernel
	// mounts it under Root, native otherwise.
	Snapshotter string
	// Env is added to the daemon's environment by Start (e.g.
	// CONTAINERD_DISABLE_PIGZ=1).
	Env []string

	proc *Process
	conn *grpc.ClientConn
}

// PrepareCRI writes HostRoot/etc/containerd/config.toml for a private
// daemon (own root, state and socket; CRI enabled; overlayfs where it
// works, native otherwise; no config_path, which is shoal configure's to set) and returns the daemon,
// not started. Without root, the binary or unshare the test is skipped
// (failed under CI=true).
func PrepareCRI(t testing.TB, hostRoot string) *CRIContainerd {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFatal(t, "containerd needs root")
	}
	if _, err := os.Stat(ContainerdBinary); err != nil {
		skipOrFatal(t, "%s missing: install Debian's containerd package (%s)", ContainerdBinary, depsHint)
	}
	requireTool(t, "unshare")
	if st, err := os.Stat("/etc/containerd"); err != nil || !st.IsDir() {
		skipOrFatal(t, "/etc/containerd missing: the daemon's namespace mounts the test's config over it (%s)", depsHint)
	}
	short, err := os.MkdirTemp("", "cri-")
	if err != nil {
		t.Fatalf("agenttest: containerd dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(short) })
	c := &CRIContainerd{
		Address:  filepath.Join(short, "sock"),
		HostRoot: hostRoot,
		Root:     filepath.Join(t.TempDir(), "root"),
	}
	etc := filepath.Join(hostRoot, "etc", "containerd")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatalf("agenttest: %v", err)
	}
	c.Snapshotter = "native"
	if overlayWorks(filepath.Dir(c.Root)) {
		c.Snapshotter = "overlayfs"
	}
	cni := filepath.Join(short, "cni")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q

[grpc]
  address = %q

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = %q

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = %q
  conf_dir = %q
`, c.Root, filepath.Join(short, "state"), c.Address, filepath.Join(c.Root, "opt"), c.Snapshotter, cni, cni)
	if err := os.WriteFile(filepath.Join(etc, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatalf("agenttest: containerd config: %v", err)
	}
	return c
}

// Start runs the daemon and waits for its socket and its CRI image service.
// It stops in t.Cleanup, or with Stop.
func (c *CRIContainerd) Start(t testing.TB) {
	t.Helper()
	etc := filepath.Join(c.HostRoot, "etc", "containerd")
	script := `mount --bind "$1" /etc/containerd && exec "$2" --config /etc/containerd/config.toml`
	c.proc = StartProcess(t, ProcessOptions{Env: c.Env}, ToolPath(t, "unshare"),
		"--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh", etc, ContainerdBinary)
	c.proc.Name = "containerd (CRI)"
	if err := waitUnix(t.Context(), c.proc, c.Address); err != nil {
		t.Fatalf("agenttest: %v\n%s", err, c.proc.Logs())
	}
	conn, err := grpc.NewClient("unix://"+c.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("agenttest: CRI client: %v", err)
	}
	c.conn = conn
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	for {
		_, err := c.Images().ListImages(ctx, &runtimeapi.ListImagesRequest{})
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("agenttest: CRI image service not answering: %v\n%s", err, c.proc.Logs())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the daemon.
func (c *CRIContainerd) Stop() error {
	if c.conn != nil {
		_ = c.conn.Close()
	}
	return c.proc.Stop()
}

// Logs returns the tail of the daemon's log.
func (c *CRIContainerd) Logs() string { return c.proc.Logs() }

// Images is the CRI image service client, as kubelet holds it.
func (c *CRIContainerd) Images() runtimeapi.ImageServiceClient {
	return runtimeapi.NewImageServiceClient(c.conn)
}

// PullImage pulls ref through the CRI ImageService.PullImage, exactly as
// kubelet does (no auth, no sandbox config), and returns the image ref
// containerd answers and how long the pull took (fetch and unpack).
func (c *CRIContainerd) PullImage(t testing.TB, ref string) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	resp, err := c.Images().PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("agenttest: CRI PullImage %s: %v\n%s", ref, err, c.proc.Logs())
	}
	return resp.GetImageRef(), took
}

// ImageStatus returns what containerd's CRI knows of ref (nil: no image).
func (c *CRIContainerd) ImageStatus(t testing.TB, ref string) *runtimeapi.Image {
	t.Helper()
	resp, err := c.Images().ImageStatus(t.Context(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("agenttest: CRI ImageStatus %s: %v", ref, err)
	}
	return resp.GetImage()
}

// RemoveImage removes ref through the CRI.
func (c *CRIContainerd) RemoveImage(t testing.TB, ref string) {
	t.Helper()
	if _, err := c.Images().RemoveImage(t.Context(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("agenttest: CRI RemoveImage %s: %v", ref, err)
	}
}

// Content checks every blob in the daemon's content store against its
// digest and returns them.
func (c *CRIContainerd) Content(t testing.TB) Content {
	t.Helper()
	return VerifyBlobStore(t, filepath.Join(c.Root, "io.containerd.content.v1.content", "blobs", "sha256"))
}

// overlayWorks mounts and unmounts a small overlay in dir: the native
// snapshotter copies every parent layer, which would swamp a benchmark.
func overlayWorks(dir string) bool {
	probe, err := os.MkdirTemp(dir, "overlay-probe-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(probe)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(probe, d), 0o755); err != nil {
			return false
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", filepath.Join(probe, "lower"), filepath.Join(probe, "upper"), filepath.Join(probe, "work"))
	merged := filepath.Join(probe, "merged")
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		return false
	}
	return unix.Unmount(merged, 0) == nil
}
