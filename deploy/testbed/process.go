package testbed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a process gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// process is a long-running program started in a host's namespace. `ip
// netns exec` execs the program in place, so the PID is the program's own
// and /proc/PID describes it.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	once    sync.Once
}

func startProcess(ns, name, logDir string, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testbed: %s log: %w", name, err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// A process group of its own: a Ctrl-C on the terminal reaches only the
	// testbed, which then stops its children in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("testbed: start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace, and waits. A process that
// ends by our signal has stopped cleanly.
func (p *process) stop(grace time.Duration) error {
	p.once.Do(func() {
		if p.exited() {
			return
		}
		_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
			<-p.done
		}
	})
	<-p.done
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return nil
		}
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w (log: %s)", p.name, p.err, p.logPath)
	}
	return nil
}

// kill ends the process at once, as a crashed peer would.
func (p *process) kill() {
	p.once.Do(func() {
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	})
	<-p.done
}
