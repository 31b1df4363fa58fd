package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/deploy/conf"
)

// startRegistry runs docker-registry on a free loopback port and returns
// its host:port.
func startRegistry(ctx context.Context, dir string) (string, func(), error) {
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		return "", nil, fmt.Errorf("%s missing: apt-get install docker-registry", bin)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return "", nil, err
	}
	cfg := conf.Distribution(filepath.Join(dir, "storage"), addr, "")
	path := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "serve", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
	}
	if err := waitFor(ctx, func() bool {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}); err != nil {
		stop()
		b, _ := os.ReadFile(logf.Name())
		return "", nil, fmt.Errorf("docker-registry did not start: %w\n%s", err, b)
	}
	return addr, stop, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitFor(ctx context.Context, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

type containerd struct {
	sock        string
	snapshotter string
	stop        func() (daemonStats, error)
}

// startContainerd starts a containerd private to one run (own root, state
// and socket; CRI disabled), so no content or snapshot survives from an
// earlier run.
func startContainerd(ctx context.Context, dir string) (*containerd, error) {
	// Unix socket paths are limited to 108 bytes.
	short, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		return nil, err
	}
	d := &containerd{sock: filepath.Join(short, "sock")}
	cfg := conf.Containerd(filepath.Join(dir, "root"), filepath.Join(short, "state"), d.sock)
	path := filepath.Join(short, "config.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/usr/bin/containerd", "--config", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d.stop = func() (daemonStats, error) {
		st := daemonStats{rssMiB: vmHWM(cmd.Process.Pid), cpu: cpuSeconds(cmd.Process.Pid)}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
		return st, os.RemoveAll(short)
	}
	if err := waitFor(ctx, func() bool {
		c, err := net.Dial("unix", d.sock)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}); err != nil {
		_, _ = d.stop()
		return nil, fmt.Errorf("containerd did not start: %w", err)
	}
	d.snapshotter = "native"
	out, err := exec.Command("ctr", "--address", d.sock, "plugins", "ls").Output()
	if err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "io.containerd.snapshotter.v1" && f[1] == "overlayfs" && f[len(f)-1] == "ok" {
				d.snapshotter = "overlayfs"
			}
		}
	}
	return d, nil
}
