package testbed

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-dev/shoal/tracker"
)

// quarter is the share of the image a host (or the swarm) must have
// received before the fault is injected: well into its download, far from
// its end.
const quarter = 4

// liarPort is where the corrupt peer listens, beside the agent of its host.
const liarPort = p2pPort + 1

// injector is how one fault acts. Every hook is optional. before runs
// before the agents start, ready after they are ready and before the pulls;
// trigger is asked at every sample until it says yes, then inject acts and
// returns what it did; again, asked after each pull of a host, says
// whether to pull again; check adds notes and problems once every pull has
// ended; cleanup runs after the bed is gone. Only the sampling loop calls
// trigger and inject.
type injector struct {
	touched, mayFail []int
	before           func(ctx context.Context, r *faultRun) error
	ready            func(ctx context.Context, r *faultRun) error
	trigger          func(r *faultRun, s Sample) bool
	inject           func(ctx context.Context, r *faultRun, s Sample) (string, error)
	again            func(ctx context.Context, r *faultRun, i int, err error) bool
	check            func(ctx context.Context, r *faultRun)
	cleanup          func() error
}

// newInjector builds fault f's hooks for a bed of cfg.Hosts hosts.
func newInjector(f Fault, cfg Config, sc FaultScenario) (injector, error) {
	n := cfg.Hosts
	last := n - 1
	imageQuarter := sc.ImageSize / quarter
	switch f {
	case FaultNone:
		return injector{}, nil
	case FaultCorruptPeer:
		if sc.LiarBin == "" {
			return injector{}, fmt.Errorf("%w: the corrupt-peer fault needs the liar binary", ErrConfig)
		}
		return corruptPeer(), nil
	case FaultKillPeers:
		if n < 2 {
			return injector{}, fmt.Errorf("%w: killing peers needs at least 2 hosts", ErrConfig)
		}
		k := min(max(int(math.Round(sc.KillFraction*float64(n))), 1), n-1)
		return killPeers(n, k, imageQuarter), nil
	case FaultKillTracker:
		return injector{
			trigger: func(_ *faultRun, s Sample) bool {
				var total int64
				for _, x := range s.Received {
					total += x.Total()
				}
				return total >= int64(n)*imageQuarter
			},
			inject: func(_ context.Context, r *faultRun, s Sample) (string, error) {
				r.b.tracker.kill()
				r.res.notef("%d of %d hosts had finished when the tracker was killed", count(s.Done), n)
				if count(s.Done) == n {
					r.res.problemf("the tracker was killed after the rollout")
				}
				return "tracker+seeder SIGKILLed", nil
			},
			check: func(_ context.Context, r *faultRun) {
				r.res.notef("origin fallbacks: %.0f downloads; announce errors: %.0f",
					r.counterSum("shoal_swarm_origin_fallbacks_total", "", ""), r.counterSum("shoal_swarm_announce_errors_total", "", ""))
			},
		}, nil
	case FaultStopOrigin:
		return stopOrigin(n), nil
	case FaultRestartAgent:
		return restartAgent(last, imageQuarter), nil
	case FaultDiskFull:
		return diskFull(last, int64(sc.DiskFraction*float64(sc.ImageSize))), nil
	case FaultSlowPeer:
		return injector{
			touched: []int{last},
			trigger: func(_ *faultRun, s Sample) bool { return !s.Done[last] && s.Received[last].Total() >= imageQuarter },
			// The class only: its queue keeps the length it had at the full
			// rate, ten times as long in time now.
			inject: func(ctx context.Context, r *faultRun, _ Sample) (string, error) {
				b, h := r.b, r.b.Hosts[last]
				up, down := b.cfg.HostUpload/sc.SlowFactor, b.cfg.HostDownload/sc.SlowFactor
				if err := setRate(ctx, h.NS, ifname, up); err != nil {
					return "", err
				}
				if err := setRate(ctx, b.bridgeNS, h.port, down); err != nil {
					return "", err
				}
				return fmt.Sprintf("%s capped to %s down / %s up", h.Name, mbps(down), mbps(up)), nil
			},
		}, nil
	}
	return injector{}, fmt.Errorf("%w: unknown fault %q", ErrConfig, f)
}

// setRate changes the rate of the class htb made on dev in ns; its queue
// stays as it was.
func setRate(ctx context.Context, ns, dev string, rate int64) error {
	bits := strconv.FormatInt(rate*8, 10) + "bit"
	burst := strconv.FormatInt(max(rate/50, 128<<10), 10)
	return run(ctx, "tc", "-n", ns, "class", "change", "dev", dev, "parent", "1:", "classid", "1:10",
		"htb", "rate", bits, "ceil", bits, "burst", burst, "cburst", burst)
}

// corruptPeer starts the liar in the first host's namespace, beside its
// agent, once the agents are up, and waits until the tracker hands it out
// for every blob; the pulls start only then.
func corruptPeer() injector {
	var liar *process
	return injector{
		ready: func(ctx context.Context, r *faultRun) error {
			b := r.b
			h := b.Hosts[0]
			tokFile := filepath.Join(b.cfg.WorkDir, "liar-token")
			idFile := filepath.Join(b.cfg.WorkDir, "liar-id")
			if err := os.WriteFile(tokFile, []byte(b.token), 0o600); err != nil {
				return fmt.Errorf("testbed: %w", err)
			}
			args := []string{
				"-tracker", b.trackerURL(), "-token-file", tokFile, "-id-file", idFile,
				"-listen", fmt.Sprintf("/ip4/%s/tcp/%d", h.IP, liarPort),
			}
			for _, d := range r.img.Blobs {
				args = append(args, fmt.Sprintf("%s:%d", d.Digest, d.Size))
			}
			p, err := b.start(h, "liar", r.sc.LiarBin, args...)
			if err != nil {
				return err
			}
			liar = p
			id, err := waitFile(ctx, p, idFile)
			if err != nil {
				return err
			}
			if err := r.waitHandedOut(ctx, id); err != nil {
				return err
			}
			r.res.Injected, r.res.InjectedSeconds = fmt.Sprintf("liar on %s announces every blob, serves garbage", h.Name), 0
			return nil
		},
		check: func(_ context.Context, r *faultRun) {
			rejected := r.counterSum("shoal_swarm_pieces_total", "result", "rejected")
			dropped := r.counterSum("shoal_swarm_peers_dropped_total", "", "")
			sent, _ := strconv.ParseInt(lastLogValue(liar.logPath, "bytes="), 10, 64)
			r.res.notef("agents rejected %.0f pieces and dropped the liar %.0f times; the liar was asked for %s pieces and sent %s of garbage",
				rejected, dropped, lastLogValue(liar.logPath, "pieces="), mib(sent))
			if liar.exited() {
				r.res.problemf("the liar exited during the rollout (log: %s)", liar.logPath)
			}
			if rejected == 0 || dropped == 0 {
				r.res.problemf("no agent caught the liar (rejected %.0f pieces, dropped %.0f peers): the scenario did not test what it should", rejected, dropped)
			}
		},
	}
}

// trackerURL is the tracker's API as agents reach it.
func (b *Bed) trackerURL() string { return fmt.Sprintf("http://%s:%d", b.Tracker.IP, trackerPort) }

// waitFile waits until p has written path and returns its first line.
func waitFile(ctx context.Context, p *process, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for {
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
			return line, nil
		}
		select {
		case <-p.done:
			return "", fmt.Errorf("testbed: %s exited before writing %s (log: %s)", p.name, path, p.logPath)
		case <-ctx.Done():
			return "", fmt.Errorf("testbed: %s did not write %s: %w (log: %s)", p.name, path, ctx.Err(), p.logPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitHandedOut waits until the tracker hands out peer id for every blob of
// the image.
func (r *faultRun) waitHandedOut(ctx context.Context, id string) error {
	tc, err := tracker.NewClient(r.b.trackerURL(), r.b.token, tracker.WithHTTPClient(r.b.client(r.b.Hosts[0])))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for _, d := range r.img.Blobs {
		for {
			peers, err := tc.Peers(ctx, d.Digest, "")
			if err == nil && slices.ContainsFunc(peers, func(p tracker.Peer) bool { return p.ID == id }) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("testbed: the tracker does not hand out %s for %s: %w (last: %v)", id, d.Digest, ctx.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// lastLogValue is the value after the last key (like "pieces=") in a log
// file, or "?".
func lastLogValue(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	i := strings.LastIndex(string(b), key)
	if i < 0 {
		return "0"
	}
	v := string(b[i+len(key):])
	if j := strings.IndexAny(v, " \n"); j >= 0 {
		v = v[:j]
	}
	return v
}

// killPeers kills the last k hosts' agents once each has received a
// quarter of the image; their pulls may fail, the others' must not.
func killPeers(n, k int, imageQuarter int64) injector {
	var victims []int
	for i := n - k; i < n; i++ {
		victims = append(victims, i)
	}
	return injector{
		touched: victims,
		mayFail: victims,
		trigger: func(_ *faultRun, s Sample) bool {
			for _, v := range victims {
				if s.Done[v] || s.Received[v].Total() < imageQuarter {
					return false
				}
			}
			return true
		},
		inject: func(_ context.Context, r *faultRun, s Sample) (string, error) {
			var names []string
			for _, v := range victims {
				r.b.KillAgent(v)
				names = append(names, r.b.Hosts[v].Name)
			}
			pending := 0
			for i, d := range s.Done {
				if !d && !slices.Contains(victims, i) {
					pending++
				}
			}
			r.res.notef("%d of %d survivors were still pulling at the kill", pending, n-k)
			if pending == 0 {
				r.res.problemf("every survivor had finished before the kill: not mid-rollout")
			}
			return fmt.Sprintf("%d agents SIGKILLed (%s)", k, strings.Join(names, " ")), nil
		},
		check: func(_ context.Context, r *faultRun) {
			failed := 0
			for _, v := range victims {
				if r.res.Hosts[v].Err != "" {
					failed++
				}
			}
			r.res.notef("%d of the %d killed hosts' pulls failed, as expected", failed, k)
		},
	}
}

// stopOrigin stops the origin once the seeder's store holds every blob of
// the image: from then on only the swarm has it.
func stopOrigin(n int) injector {
	return injector{
		trigger: func(r *faultRun, _ Sample) bool {
			return len(r.missingBlobs(filepath.Join(r.b.cfg.WorkDir, "data", "tracker"))) == 0
		},
		inject: func(_ context.Context, r *faultRun, s Sample) (string, error) {
			if err := r.b.registry.stop(stopGrace); err != nil {
				r.log.Warn("origin stopped uncleanly", "err", err)
			}
			r.res.notef("%d of %d hosts had finished when the origin stopped; it had sent %.2f copies", count(s.Done), n, float64(s.OriginTx)/float64(r.img.Size()))
			if count(s.Done) == n {
				r.res.problemf("the origin was stopped after the rollout")
			}
			return "origin stopped once seeded", nil
		},
	}
}

// restartAgent kills host v's agent with SIGKILL once it has received a
// quarter of the image and its store has journaled part of it (bytes the
// store does not journal yet, up to its JournalSyncBytes per blob, a crash
// loses by design), starts it again on the same data and, if the host's
// pull failed, pulls again. The new agent must fetch only what was not
// journaled.
func restartAgent(v int, imageQuarter int64) injector {
	var (
		mu         sync.Mutex
		pullEnded  bool // the host's first pull has returned
		killing    bool // the sampler decided to kill
		restarted  = make(chan struct{})
		restartErr error // set before restarted is closed
		heldAtKill int64 // received by the killed agent
		durable    int64 // journaled or committed by it
		pulls      int
	)
	return injector{
		touched: []int{v},
		trigger: func(r *faultRun, s Sample) bool {
			if s.Done[v] || s.Received[v].Total() < imageQuarter {
				return false
			}
			n, err := durableBytes(r.b.AgentDataDir(v), r.img)
			return err == nil && n > 0
		},
		inject: func(ctx context.Context, r *faultRun, s Sample) (string, error) {
			mu.Lock()
			if pullEnded {
				mu.Unlock()
				return "", nil // too late: the pull ended on its own
			}
			killing = true
			mu.Unlock()
			b := r.b
			heldAtKill = s.Received[v].Total()
			var err error
			if durable, err = durableBytes(b.AgentDataDir(v), r.img); err != nil {
				return "", err
			}
			b.KillAgent(v)
			t0 := time.Now()
			restartErr = b.RestartAgent(ctx, v)
			close(restarted)
			if restartErr != nil {
				r.res.problemf("the agent of %s did not start again: %v", b.Hosts[v].Name, restartErr)
			}
			return fmt.Sprintf("%s's agent SIGKILLed holding %s (%s journaled), up again in %.1f s",
				b.Hosts[v].Name, mib(heldAtKill), mib(durable), time.Since(t0).Seconds()), nil
		},
		again: func(ctx context.Context, r *faultRun, i int, err error) bool {
			if i != v {
				return false
			}
			mu.Lock()
			pulls++
			first := !pullEnded
			pullEnded = true
			k := killing
			mu.Unlock()
			if !first || !k {
				return false
			}
			select {
			case <-restarted:
			case <-ctx.Done():
				return false
			}
			if err == nil {
				r.res.notef("the client's pull survived the restart (its retries reached the new agent)")
				return false
			}
			r.res.notef("the first pull failed at the kill (%s); pulled again", lastLine(err.Error()))
			return restartErr == nil
		},
		check: func(_ context.Context, r *faultRun) {
			mu.Lock()
			defer mu.Unlock()
			if !killing {
				return
			}
			b := r.b
			// What the new process received: the sampler counts it on top of
			// what the killed one had.
			after := r.last[v]
			var blobs int64
			for _, d := range r.img.Blobs {
				blobs += d.Size
			}
			r.res.notef("%s had received %s, %s of it journaled, at the kill; its new agent received %s more (%s from the origin) in %d pulls",
				b.Hosts[v].Name, mib(heldAtKill), mib(durable), mib(after.Total()), mib(after.Origin), pulls)
			if b.agents[v].exited() {
				r.res.problemf("the restarted agent of %s exited (log: %s)", b.Hosts[v].Name, b.agents[v].logPath)
			}
			if after.Total() > blobs-durable {
				r.res.problemf("%s did not resume: %d bytes were journaled at the kill, yet the new agent received %d of the image's %d blob bytes",
					b.Hosts[v].Name, durable, after.Total(), blobs)
			}
		},
	}
}

// durableBytes is how much of img's layers the store under dataDir holds
// durably: committed layers, and the ranges of partial ones its journals
// record. The journal (store/ingest/<hex>.journal) is a 16-byte header and
// 20-byte records, each a big-endian offset and length and a checksum
// (agent/store/journal.go); a short record ends it.
func durableBytes(dataDir string, img Image) (int64, error) {
	var n int64
	for _, d := range img.Blobs[1:] { // the config first, then the layers
		hex := d.Digest.Encoded()
		if _, err := os.Stat(filepath.Join(dataDir, "store", "blobs", "sha256", hex)); err == nil {
			n += d.Size
			continue
		}
		j, err := os.ReadFile(filepath.Join(dataDir, "store", "ingest", hex+".journal"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		const header, record = 16, 20
		for off := header; off+record <= len(j); off += record {
			n += int64(binary.BigEndian.Uint64(j[off+8 : off+16]))
		}
	}
	return n, nil
}

// readRxBytes is how many bytes dev has received, as seen from the network
// namespace of process pid (the receive bytes are the first field after
// the name in /proc/PID/net/dev).
func readRxBytes(pid int, dev string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != dev {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("%w: no %s in /proc net/dev", ErrParse, dev)
}

// countLines counts the lines of a log file that hold s.
func countLines(path, s string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// lastLine is the last line of s, without the command line a failed
// client's error starts with.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.Index(s, ": exit status "); i >= 0 {
		s = s[i+2:]
	} else if i := strings.Index(s, ": signal: "); i >= 0 {
		s = s[i+2:]
	}
	return firstLine(s)
}

// diskFull puts host v's data directory on a tmpfs of size bytes, smaller
// than the image. Its pull may fail, but cleanly: the agent must keep
// running and store nothing corrupt, and every other host must finish.
func diskFull(v int, size int64) injector {
	var mounted string
	return injector{
		touched: []int{v},
		mayFail: []int{v},
		before: func(_ context.Context, r *faultRun) error {
			dir := r.b.AgentDataDir(v)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("testbed: %w", err)
			}
			if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
				return fmt.Errorf("testbed: mount a %d-byte tmpfs on %s: %w", size, dir, err)
			}
			mounted = dir
			r.res.Injected, r.res.InjectedSeconds = fmt.Sprintf("%s's data dir on a %s tmpfs", r.b.Hosts[v].Name, mib(size)), 0
			return nil
		},
		check: func(ctx context.Context, r *faultRun) {
			b, h := r.b, r.b.Hosts[v]
			if b.agents[v].exited() {
				r.res.problemf("the agent of %s on the full disk exited (log: %s)", h.Name, b.agents[v].logPath)
			} else if _, err := b.get(ctx, h, "http://"+agentAddr+"/healthz"); err != nil {
				r.res.problemf("the agent of %s on the full disk does not answer /healthz: %v", h.Name, err)
			}
			var st syscall.Statfs_t
			if err := syscall.Statfs(mounted, &st); err == nil {
				used := int64(st.Blocks-st.Bfree) * st.Bsize
				r.res.notef("%s's tmpfs: %s of %s used", h.Name, mib(used), mib(size))
			}
			if n := countLines(b.agents[v].logPath, "no space left on device"); n > 0 {
				r.res.notef("%s's agent logged %d writes that found no space", h.Name, n)
			}
			// What crossed its link, against what it could store: an agent
			// that keeps fetching pieces it cannot write drains its peers.
			if rx, err := readRxBytes(b.agents[v].pid(), ifname); err == nil {
				r.res.notef("%s's link received %s (the image is %s)", h.Name, mib(rx), mib(r.img.Size()))
				if rx > 2*r.img.Size() {
					r.res.problemf("%s's agent kept fetching what it could not store: its link received %.1f times the image", h.Name, float64(rx)/float64(r.img.Size()))
				}
			}
			if hr := r.res.Hosts[v]; strings.HasPrefix(hr.Err, errPullTimeout.Error()) {
				r.res.problemf("%s's pull on the full disk neither failed nor finished: the client gave up after %.2f s", h.Name, hr.Seconds)
			} else if hr.Err != "" {
				r.res.notef("%s's pull failed after %.2f s: %s", h.Name, hr.Seconds, lastLine(hr.Err))
			} else {
				r.res.notef("%s's pull completed with the right bytes in %.2f s", h.Name, hr.Seconds)
			}
		},
		cleanup: func() error {
			if mounted == "" {
				return nil
			}
			if err := syscall.Unmount(mounted, 0); err != nil {
				// Something still holds it; let it go when that ends.
				if err2 := syscall.Unmount(mounted, syscall.MNT_DETACH); err2 != nil {
					return fmt.Errorf("testbed: unmount %s: %w", mounted, err)
				}
			}
			return nil
		},
	}
}
