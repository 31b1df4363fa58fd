package agenttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/build"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// stopGrace is how long a child gets between SIGTERM and SIGKILL.
	stopGrace = 5 * time.Second
	// logTail bounds how much of a child's log a failing test prints.
	logTail = 16 << 10
)

// FreePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before the caller binds it; helpers that start
// children on such a port retry when the child fails to start.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("agenttest: free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("agenttest: free port: %v", err)
	}
	return port
}

// ProcessOptions adjust how StartProcess runs a child.
type ProcessOptions struct {
	// Env is appended to the test process's environment.
	Env []string
	// Dir is the working directory; empty means the test's.
	Dir string
}

// Process is a child process started for one test. Its stdout and stderr
// go to LogPath; when the test fails, the tail of that log is printed.
type Process struct {
	Name    string
	LogPath string

	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
	hung     bool // Stop had to kill it: it did not exit on SIGTERM in time
}

// StartProcess starts path with args, stops it in t.Cleanup (SIGTERM, then
// SIGKILL after a grace period) and prints its log if the test failed.
func StartProcess(t testing.TB, opts ProcessOptions, path string, args ...string) *Process {
	t.Helper()
	name := filepath.Base(path)
	logFile, err := os.CreateTemp(t.TempDir(), name+"-*.log")
	if err != nil {
		t.Fatalf("agenttest: %s log: %v", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(), opts.Env...)
	// A process group of its own, so stopping it also stops anything it
	// spawned and a Ctrl-C on the test does not race our SIGTERM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatalf("agenttest: start %s: %v", name, err)
	}
	p := &Process{Name: name, LogPath: logFile.Name(), cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.Stop()
		if t.Failed() {
			t.Logf("agenttest: log of %s (%s):\n%s", name, p.LogPath, p.Logs())
		}
	})
	return p
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Pid returns the child's process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM to the process group, waits up to a grace period,
// then sends SIGKILL. It is safe to call more than once; it returns how the
// process exited, with a SIGTERM exit counted as clean.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			// A Go child dumps its goroutines on SIGQUIT: the log then
			// shows what held its shutdown up.
			p.hung = true
			_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGQUIT)
			select {
			case <-p.done:
			case <-time.After(time.Second):
			}
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	<-p.done
	if p.hung {
		return fmt.Errorf("agenttest: %s did not exit within %s of SIGTERM (goroutines in %s): %v", p.cmd.Path, stopGrace, p.LogPath, p.waitErr)
	}
	var exit *exec.ExitError
	if errors.As(p.waitErr, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	return p.waitErr
}

// Logs returns the tail of the process's output.
func (p *Process) Logs() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	if len(b) > logTail {
		b = append([]byte("...\n"), b[len(b)-logTail:]...)
	}
	return string(b)
}

// InCI reports whether this is a CI run (CI=true, which .ci/run sets): there
// a test that lacks a tool or a capability (root, network namespaces, tmpfs)
// must fail, not skip. Every such skip in the module goes through it.
func InCI() bool { return os.Getenv("CI") == "true" }

// skipOrFatal skips the test, or fails it under CI=true where every tool
// the harness needs must be installed.
func skipOrFatal(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("agenttest: %s (CI=true: required)", msg)
	}
	t.Skipf("agenttest: %s", msg)
}

const depsHint = "run deploy/deps.sh as root"

// lookTool finds a binary in PATH, then where `go install` puts it.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	for _, gopath := range filepath.SplitList(build.Default.GOPATH) {
		dirs = append(dirs, filepath.Join(gopath, "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or Go's bin directories", name)
}

// ToolPath returns the path of a client binary (skopeo, crane, ctr, ...),
// looking in PATH and in Go's bin directories; it skips the test (fails it
// under CI=true) when the binary is missing. Use it with RunTool.
func ToolPath(t testing.TB, name string) string {
	t.Helper()
	return requireTool(t, name)
}

// requireTool returns the path of a binary, or skips (fails under CI).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		skipOrFatal(t, "%v: %s", err, depsHint)
	}
	return p
}

// DefaultToolTimeout bounds one run of a client tool.
const DefaultToolTimeout = 2 * time.Minute

// RunTool runs a binary to completion and returns its combined output. It
// does not fail the test: use it when a test expects the tool to fail.
// The run ends when ctx ends.
func RunTool(ctx context.Context, env []string, path string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = stopGrace
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w", filepath.Base(path), strings.Join(args, " "), err)
	}
	return out.String(), err
}

// runTool runs a named tool with the default timeout and fails the test,
// printing the output, if it fails.
func runTool(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	path := requireTool(t, name)
	ctx, cancel := context.WithTimeout(t.Context(), DefaultToolTimeout)
	defer cancel()
	out, err := RunTool(ctx, env, path, args...)
	if err != nil {
		t.Fatalf("agenttest: %v\n%s", err, out)
	}
	return out
}
