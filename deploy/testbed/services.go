package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/deploy/conf"
)

// OriginHost is host:port of the origin registry, as agents and the
// baseline's clients reach it.
func (b *Bed) OriginHost() string {
	return b.Origin.IP.String() + ":" + strconv.Itoa(registryPort)
}

// StartOrigin starts docker-registry on the origin host, listening on every
// address of its namespace, and waits until /v2/ answers.
func (b *Bed) StartOrigin(ctx context.Context) error {
	dir := filepath.Join(b.cfg.WorkDir, "origin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(conf.Distribution(filepath.Join(dir, "storage"), fmt.Sprintf("0.0.0.0:%d", registryPort), "")), 0o600); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	p, err := b.start(b.Origin, "origin", b.cfg.RegistryBin, "serve", cfg)
	if err != nil {
		return err
	}
	if err := b.waitReady(ctx, b.Origin, p, fmt.Sprintf("http://127.0.0.1:%d/v2/", registryPort)); err != nil {
		return err
	}
	b.registry = p
	return nil
}

// Push uploads img to the origin as repoTag (like "bench:v1") with crane,
// from inside the origin's namespace over its loopback, so the push is
// neither capped nor counted as origin egress. It returns the reference
// clients pull from the origin.
func (b *Bed) Push(ctx context.Context, img Image, repoTag string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ref := fmt.Sprintf("127.0.0.1:%d/%s", registryPort, repoTag)
	if _, err := b.crane(ctx, b.Origin, "push", img.Dir, ref); err != nil {
		return "", err
	}
	return b.OriginHost() + "/" + repoTag, nil
}

// crane runs crane in h's namespace, anonymously: an empty DOCKER_CONFIG
// keeps the machine's credentials out. It returns crane's CPU time.
func (b *Bed) crane(ctx context.Context, h Host, args ...string) (time.Duration, error) {
	cfg, err := b.emptyDockerConfig()
	if err != nil {
		return 0, err
	}
	// ip and env exec in place: the process waited for is crane itself.
	full := append([]string{"netns", "exec", h.NS, "env", "DOCKER_CONFIG=" + cfg, b.cfg.CraneBin, "--insecure"}, args...)
	return runCPU(ctx, "ip", full...)
}

func (b *Bed) emptyDockerConfig() (string, error) {
	dir := filepath.Join(b.cfg.WorkDir, "docker-config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{}}`), 0o644); err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	return dir, nil
}

// Pull runs `crane pull --format oci ref dst` in h's namespace. The time it
// takes is the host's completion time; it returns the CPU time crane used.
func (b *Bed) Pull(ctx context.Context, h Host, ref, dst string) (time.Duration, error) {
	return b.crane(ctx, h, "pull", "--format", "oci", ref, dst)
}

// AgentRef is how a host's client names repoTag through its own agent.
func AgentRef(repoTag string) string { return agentAddr + "/" + repoTag }

// StartTracker starts the tracker and its seeder on the tracker host, with
// extra flags appended, and waits for /healthz.
func (b *Bed) StartTracker(ctx context.Context, extra ...string) error {
	if b.registry == nil {
		return fmt.Errorf("testbed: start the origin before the tracker")
	}
	dir := filepath.Join(b.cfg.WorkDir, "data", "tracker")
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	listen := fmt.Sprintf("%s:%d", b.Tracker.IP, trackerPort)
	args := append([]string{"tracker",
		"--listen", listen,
		"--token", b.token,
		"--upstream", "http://" + b.OriginHost(),
		"--insecure-registry", b.OriginHost(),
		"--data-dir", dir,
		"--p2p-listen", fmt.Sprintf("/ip4/%s/tcp/%d", b.Tracker.IP, p2pPort),
	}, extra...)
	seedTok, err := b.seedTokenFile()
	if err != nil {
		return err
	}
	args = append(args, "--seed-token-file", seedTok)
	p, err := b.start(b.Tracker, "tracker", b.cfg.ShoalBin, args...)
	if err != nil {
		return err
	}
	if err := b.waitReady(ctx, b.Tracker, p, "http://"+listen+"/healthz"); err != nil {
		return err
	}
	b.tracker = p
	return nil
}

// StartAgents starts one agent per host with fresh data, extra flags
// appended, and waits until every one answers /readyz.
func (b *Bed) StartAgents(ctx context.Context, extra ...string) error {
	if b.tracker == nil {
		return fmt.Errorf("testbed: start the tracker before the agents")
	}
	b.agentArgs = extra
	b.agents = make([]*process, len(b.Hosts))
	for i := range b.Hosts {
		// Emptied, not removed: it may be a mount point (a small tmpfs).
		if err := emptyDir(b.AgentDataDir(i)); err != nil {
			return fmt.Errorf("testbed: %w", err)
		}
		p, err := b.startAgent(i)
		if err != nil {
			return err
		}
		b.agents[i] = p
	}
	errs := make([]error, len(b.Hosts))
	var wg sync.WaitGroup
	for i, h := range b.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.waitReady(ctx, h, b.agents[i], "http://"+agentAddr+"/readyz")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// RestartAgent starts host i's agent again, after it exited, on the data
// it left and with the flags StartAgents was given, and waits for /readyz.
func (b *Bed) RestartAgent(ctx context.Context, i int) error {
	if !b.agents[i].exited() {
		return fmt.Errorf("testbed: agent of %s is still running", b.Hosts[i].Name)
	}
	p, err := b.startAgent(i)
	if err != nil {
		return err
	}
	b.agents[i] = p
	return b.waitReady(ctx, b.Hosts[i], p, "http://"+agentAddr+"/readyz")
}

// AgentDataDir is host i's agent's --data-dir.
func (b *Bed) AgentDataDir(i int) string {
	return filepath.Join(b.cfg.WorkDir, "data", b.Hosts[i].Name)
}

func (b *Bed) startAgent(i int) (*process, error) {
	h := b.Hosts[i]
	args := append([]string{"agent",
		"--listen", agentAddr,
		"--upstream", "http://" + b.OriginHost(),
		"--insecure-registry", b.OriginHost(),
		"--data-dir", b.AgentDataDir(i),
		"--tracker", fmt.Sprintf("http://%s:%d", b.Tracker.IP, trackerPort),
		"--tracker-token", b.token,
		"--p2p-listen", fmt.Sprintf("/ip4/%s/tcp/%d", h.IP, p2pPort),
	}, b.agentArgs...)
	return b.start(h, "agent-"+h.Name, b.cfg.ShoalBin, args...)
}

// emptyDir removes everything inside dir, creating it if missing.
func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// KillAgent ends host i's agent with SIGKILL, as a crash would.
func (b *Bed) KillAgent(i int) { b.agents[i].kill() }

// AgentReceived scrapes host i's agent for what it has received so far.
func (b *Bed) AgentReceived(ctx context.Context, i int) (Received, error) {
	body, err := b.get(ctx, b.Hosts[i], "http://"+agentAddr+"/metrics")
	if err != nil {
		return Received{}, err
	}
	return parseReceived(string(body))
}

// AgentStats reads host i's agent's peak RSS and CPU time from /proc; it
// fails once the agent has exited.
func (b *Bed) AgentStats(i int) (ProcStats, error) { return readProcStats(b.agents[i].pid()) }

// TrackerStats reads the tracker's peak RSS and CPU time from /proc.
func (b *Bed) TrackerStats() (ProcStats, error) { return readProcStats(b.tracker.pid()) }

// OriginTxBytes is how many bytes the origin host has sent on its link so
// far, headers and retransmissions included.
func (b *Bed) OriginTxBytes() (int64, error) {
	if b.registry == nil {
		return 0, fmt.Errorf("testbed: origin not started")
	}
	return readTxBytes(b.registry.pid(), ifname)
}

// SeederTxBytes is what the tracker's host (its seeder's link) has sent
// so far.
func (b *Bed) SeederTxBytes() (int64, error) {
	if b.tracker == nil || b.tracker.exited() {
		return 0, fmt.Errorf("testbed: tracker not running")
	}
	return readTxBytes(b.tracker.pid(), ifname)
}

// HostLinkBytes is what host i's link has carried so far, read in its
// agent's namespace; it fails once the agent has exited.
func (b *Bed) HostLinkBytes(i int) (LinkBytes, error) {
	if b.agents[i] == nil || b.agents[i].exited() {
		return LinkBytes{}, fmt.Errorf("testbed: agent of %s not running", b.Hosts[i].Name)
	}
	return readLinkBytes(b.agents[i].pid(), ifname)
}

// StopSwarm stops the agents and the tracker (not the origin).
func (b *Bed) StopSwarm() error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	procs := append([]*process{b.tracker}, b.agents...)
	for _, p := range procs {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.stop(stopGrace); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	b.tracker, b.agents = nil, nil
	if len(errs) > 0 {
		return fmt.Errorf("testbed: stopping the swarm: %v", errs)
	}
	return nil
}
