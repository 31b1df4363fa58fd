package testbed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim/grammar"
)

// Fault is one scenario of the fault suite: a rollout (every host pulls one
// image through its agent at the same instant) with one fault injected.
type Fault string

// The suite, in the order of its table.
const (
	// FaultNone is the undisturbed rollout the others are compared with.
	FaultNone Fault = "none"
	// FaultCorruptPeer: a liar (cmd/liar) in the first host's namespace
	// joins the swarm before the pulls, announces every blob complete and
	// serves random bytes.
	FaultCorruptPeer Fault = "corrupt-peer"
	// FaultKillPeers: KillFraction of the hosts' agents are killed with
	// SIGKILL once each has received a quarter of the image.
	FaultKillPeers Fault = "kill-peers"
	// FaultKillTracker: the tracker, and the seeder it embeds, are killed
	// with SIGKILL once the agents hold a quarter of the rollout's bytes.
	FaultKillTracker Fault = "kill-tracker"
	// FaultStopOrigin: the origin is stopped once the seeder's store holds
	// every blob of the image.
	FaultStopOrigin Fault = "stop-origin"
	// FaultRestartAgent: the last host's agent is killed with SIGKILL once
	// it has received a quarter of the image, started again on the same
	// data directory, and the host's pull is run again if it failed.
	FaultRestartAgent Fault = "restart-agent"
	// FaultDiskFull: the last host's data directory is a tmpfs of
	// DiskFraction of the image.
	FaultDiskFull Fault = "disk-full"
	// FaultSlowPeer: the last host's caps, both ways, are divided by
	// SlowFactor once it has received a quarter of the image.
	FaultSlowPeer Fault = "slow-peer"
)

// AllFaults is the whole suite, the undisturbed run first.
var AllFaults = []Fault{FaultNone, FaultCorruptPeer, FaultKillPeers, FaultKillTracker, FaultStopOrigin, FaultRestartAgent, FaultDiskFull, FaultSlowPeer}

// ParseFaults reads a comma-separated list of fault names; "all" is
// AllFaults.
func ParseFaults(s string) ([]Fault, error) {
	if s == "all" {
		return AllFaults, nil
	}
	var out []Fault
	for _, name := range strings.Split(s, ",") {
		f := Fault(strings.TrimSpace(name))
		if !slices.Contains(AllFaults, f) {
			return nil, fmt.Errorf("%w: unknown fault %q (want all or some of %v)", ErrConfig, f, AllFaults)
		}
		out = append(out, f)
	}
	return out, nil
}

// FaultScenario is what every rollout of the suite shares.
type FaultScenario struct {
	// ImageSize is the image's layer bytes in total, split over Layers.
	ImageSize int64
	Layers    int
	Seed      uint64
	Repo      string
	// SampleInterval is how often agents' counters are scraped and the
	// fault's trigger checked.
	SampleInterval time.Duration
	// PullTimeout bounds each pull of a host.
	PullTimeout time.Duration
	// KillFraction of the hosts (rounded, at least one, never all) are
	// killed by FaultKillPeers.
	KillFraction float64
	// SlowFactor divides the slow peer's caps.
	SlowFactor int64
	// DiskFraction sizes the full host's tmpfs against the image; below 1.
	DiskFraction float64
	// LiarBin is the corrupt peer (deploy/testbed/cmd/liar).
	LiarBin string
	// TrackerArgs and AgentArgs are appended to the shoal command lines.
	TrackerArgs, AgentArgs []string
}

// DefaultFaultScenario is `make bench-faults`: a 50 MiB image in 5 layers.
func DefaultFaultScenario() FaultScenario {
	return FaultScenario{
		ImageSize:      50 << 20,
		Layers:         5,
		Seed:           7,
		Repo:           "faults",
		SampleInterval: 200 * time.Millisecond,
		PullTimeout:    5 * time.Minute,
		KillFraction:   0.3,
		SlowFactor:     10,
		DiskFraction:   0.5,
	}
}

// Validate reports the first problem with s.
func (s FaultScenario) Validate() error {
	switch {
	case s.Layers < 1 || s.Layers > 100:
		return fmt.Errorf("%w: layers %d: want 1..100", ErrConfig, s.Layers)
	case s.ImageSize < int64(s.Layers)<<20 || s.ImageSize > 16<<30:
		return fmt.Errorf("%w: image size %d: want at least 1 MiB per layer and at most 16 GiB", ErrConfig, s.ImageSize)
	case !grammar.Repository(s.Repo):
		return fmt.Errorf("%w: repository %q", ErrConfig, s.Repo)
	case s.SampleInterval < 10*time.Millisecond:
		return fmt.Errorf("%w: sample interval %s: want at least 10ms", ErrConfig, s.SampleInterval)
	case s.PullTimeout <= 0:
		return fmt.Errorf("%w: pull timeout %s", ErrConfig, s.PullTimeout)
	case s.KillFraction <= 0 || s.KillFraction >= 1:
		return fmt.Errorf("%w: kill fraction %g: want in (0, 1)", ErrConfig, s.KillFraction)
	case s.SlowFactor < 2:
		return fmt.Errorf("%w: slow factor %d: want at least 2", ErrConfig, s.SlowFactor)
	case s.DiskFraction <= 0 || s.DiskFraction >= 1:
		return fmt.Errorf("%w: disk fraction %g: want in (0, 1)", ErrConfig, s.DiskFraction)
	}
	return nil
}

// errPullTimeout starts the error of a pull the client gave up on.
var errPullTimeout = errors.New("pull timed out")

// faultRun is one fault's rollout on its bed.
type faultRun struct {
	b     *Bed
	sc    FaultScenario
	img   Image
	ref   string
	log   *slog.Logger
	res   *FaultResult
	inj   injector
	fault Fault

	anchor *process // keeps the origin's namespace readable after the origin stops
	tx0    int64
	start  time.Time

	mu    sync.Mutex // guards done and hosts while pulls run
	done  []bool
	hosts []HostResult

	// Owned by the sampling loop: each agent's latest counters, what
	// earlier processes of the same host had received, and the process
	// they were read from.
	last, base []Received
	seen       []*process
	// metrics is each live agent's /metrics text at the end.
	metrics []string
}

// RunFault plays one fault on a bed of its own, made from cfg (use a fresh
// WorkDir per fault: its logs stay in WorkDir/logs), pushing img, and
// returns what it measured and checked. It fails only when the bed does;
// what the fault broke is in the result's Problems.
func RunFault(ctx context.Context, cfg Config, sc FaultScenario, img Image, f Fault, log *slog.Logger) (res *FaultResult, err error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("fault", string(f))
	began := time.Now()
	r := &faultRun{sc: sc, img: img, log: log, fault: f, res: &FaultResult{Fault: f, InjectedSeconds: -1}}
	if r.inj, err = newInjector(f, cfg, sc); err != nil {
		return nil, err
	}
	if c := r.inj.cleanup; c != nil {
		defer func() { err = errors.Join(err, c()) }()
	}
	b, err := Start(ctx, cfg, WithLogger(log))
	if err != nil {
		return nil, err
	}
	r.b = b
	defer func() { err = errors.Join(err, b.Close()) }()
	if err := r.play(ctx); err != nil {
		return nil, err
	}
	r.res.WallSeconds = round2(time.Since(began).Seconds())
	return r.res, nil
}

func (r *faultRun) play(ctx context.Context) error {
	b, res := r.b, r.res
	for _, i := range r.inj.touched {
		res.Touched = append(res.Touched, b.Hosts[i].Name)
	}
	for _, i := range r.inj.mayFail {
		res.MayFail = append(res.MayFail, b.Hosts[i].Name)
	}
	if err := b.StartOrigin(ctx); err != nil {
		return err
	}
	// The origin's egress is read from /proc/PID/net/dev of a process in
	// its namespace; this one outlives the registry when a fault stops it.
	anchor, err := b.start(b.Origin, "origin-anchor", "sleep", "infinity")
	if err != nil {
		return err
	}
	r.anchor = anchor
	tag := r.sc.Repo + ":" + string(r.fault)
	if _, err := b.Push(ctx, r.img, tag); err != nil {
		return err
	}
	r.ref = AgentRef(tag)
	if err := b.StartTracker(ctx, r.sc.TrackerArgs...); err != nil {
		return err
	}
	if h := r.inj.before; h != nil {
		if err := h(ctx, r); err != nil {
			return err
		}
	}
	if err := b.StartAgents(ctx, r.sc.AgentArgs...); err != nil {
		return err
	}
	if h := r.inj.ready; h != nil {
		if err := h(ctx, r); err != nil {
			return err
		}
	}
	if err := r.rollout(ctx); err != nil {
		return err
	}
	r.verify(ctx)
	if h := r.inj.check; h != nil {
		h(ctx, r)
	}
	if r.fault != FaultNone && res.InjectedSeconds < 0 {
		res.problemf("the fault was never injected: its trigger did not come before the pulls ended")
	}
	return nil
}

func (r *faultRun) originTx() (int64, error) { return readTxBytes(r.anchor.pid(), ifname) }

func (r *faultRun) pullDir(i int) string {
	return filepath.Join(r.b.cfg.WorkDir, "pulls", r.b.Hosts[i].Name)
}

// rollout starts every host's pull at once and samples the swarm until
// every pull has ended, injecting the fault when its trigger comes.
func (r *faultRun) rollout(ctx context.Context) error {
	b, n := r.b, len(r.b.Hosts)
	tx0, err := r.originTx()
	if err != nil {
		return err
	}
	r.tx0 = tx0
	r.done, r.hosts = make([]bool, n), make([]HostResult, n)
	r.last, r.base, r.seen = make([]Received, n), make([]Received, n), make([]*process, n)
	copy(r.seen, b.agents)
	// Pulls end with the rollout's context, or at once if injecting fails.
	pullCtx, cancelPulls := context.WithCancel(ctx)
	defer cancelPulls()
	var wg sync.WaitGroup
	allDone := make(chan struct{})
	r.start = time.Now()
	for i := range b.Hosts {
		wg.Go(func() { r.pullHost(pullCtx, i) })
	}
	go func() { wg.Wait(); close(allDone) }()

	tick := time.NewTicker(r.sc.SampleInterval)
	defer tick.Stop()
	injected, lastLog := r.fault == FaultNone || r.res.InjectedSeconds >= 0, time.Now()
	for {
		select {
		case <-allDone:
			smp := r.sample(ctx)
			r.metrics = r.scrapeMetrics(ctx)
			for _, x := range smp.Received {
				r.res.Received = r.res.Received.add(x)
			}
			tx1, err := r.originTx()
			if err != nil {
				return err
			}
			r.res.OriginEgressBytes = tx1 - r.tx0
			r.res.OriginEgressCopies = round2(float64(r.res.OriginEgressBytes) / float64(r.img.Size()))
			return nil
		case <-ctx.Done():
			<-allDone
			return ctx.Err()
		case <-tick.C:
		}
		smp := r.sample(ctx)
		if !injected && r.inj.trigger != nil && r.inj.trigger(r, smp) {
			what, err := r.inj.inject(ctx, r, smp)
			if err != nil {
				cancelPulls()
				<-allDone
				return fmt.Errorf("testbed: injecting %s: %w", r.fault, err)
			}
			if what != "" {
				injected = true
				r.res.Injected, r.res.InjectedSeconds = what, round2(smp.Elapsed.Seconds())
				r.log.Info("fault injected", "what", what, "elapsed_s", r.res.InjectedSeconds, "pending", len(smp.Done)-count(smp.Done))
			}
		}
		if time.Since(lastLog) >= 5*time.Second {
			lastLog = time.Now()
			var total Received
			for _, x := range smp.Received {
				total = total.add(x)
			}
			r.log.Info("rollout progress", "elapsed_s", round2(smp.Elapsed.Seconds()), "done", count(smp.Done), "of", n,
				"origin_tx_mib", smp.OriginTx>>20, "from_peers_mib", total.Peer>>20, "from_seeder_mib", total.Seeder>>20, "from_origin_mib", total.Origin>>20)
		}
	}
}

// pullHost pulls the image on host i, and again as long as the fault asks.
// The host's time runs from the common start to the end of its last pull.
func (r *faultRun) pullHost(ctx context.Context, i int) {
	h := r.b.Hosts[i]
	var (
		cpu time.Duration
		err error
	)
	for {
		dir := r.pullDir(i)
		if err = os.RemoveAll(dir); err != nil {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, r.sc.PullTimeout)
		var c time.Duration
		c, err = r.b.Pull(pctx, h, r.ref, dir)
		if err != nil && errors.Is(pctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w after %s: %w", errPullTimeout, r.sc.PullTimeout, err)
		}
		cancel()
		cpu += c
		if r.inj.again == nil || !r.inj.again(ctx, r, i, err) {
			break
		}
	}
	elapsed := time.Since(r.start).Seconds()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done[i] = true
	r.hosts[i] = HostResult{Host: h.Name, Seconds: round2(elapsed), ClientCPUSeconds: round2(cpu.Seconds())}
	if err != nil {
		r.hosts[i].Err = err.Error()
	}
}

// sample reads every live agent's counters, the origin's egress and which
// pulls have ended. An agent started again counts on from what its earlier
// process had received.
func (r *faultRun) sample(ctx context.Context) Sample {
	smp := Sample{Elapsed: time.Since(r.start)}
	if tx, err := r.originTx(); err == nil {
		smp.OriginTx = tx - r.tx0
	}
	for i, p := range r.b.agents {
		if p != r.seen[i] {
			r.base[i], r.last[i], r.seen[i] = r.base[i].add(r.last[i]), Received{}, p
		}
	}
	for i, x := range scrapeAll(ctx, r.b, r.sc.SampleInterval) {
		if x != nil {
			r.last[i] = *x
		}
	}
	for i := range r.last {
		smp.Received = append(smp.Received, r.base[i].add(r.last[i]))
	}
	r.mu.Lock()
	smp.Done = append([]bool(nil), r.done...)
	r.mu.Unlock()
	return smp
}

// scrapeMetrics returns each live agent's /metrics text ("" if it does not
// answer).
func (r *faultRun) scrapeMetrics(ctx context.Context) []string {
	out := make([]string, len(r.b.Hosts))
	for i, h := range r.b.Hosts {
		if r.b.agents[i].exited() {
			continue
		}
		if body, err := r.b.get(ctx, h, "http://"+agentAddr+"/metrics"); err == nil {
			out[i] = string(body)
		}
	}
	return out
}

// counterSum adds up every agent's samples of the counter name whose
// labels hold label="value" (any labels if label is empty).
func (r *faultRun) counterSum(name, label, value string) float64 {
	var sum float64
	for _, text := range r.metrics {
		for _, line := range strings.Split(text, "\n") {
			rest, ok := strings.CutPrefix(line, name)
			if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
				continue
			}
			labels := ""
			if rest[0] == '{' {
				end := strings.LastIndexByte(rest, '}')
				if end < 0 {
					continue
				}
				labels, rest = rest[1:end], rest[end+1:]
			}
			if label != "" && labelValue(labels, label) != value {
				continue
			}
			f := strings.Fields(rest)
			if len(f) == 0 {
				continue
			}
			if v, err := strconv.ParseFloat(f[0], 64); err == nil && !math.IsNaN(v) {
				sum += v
			}
		}
	}
	return sum
}

// verify checks what every fault must keep: each host that must finish did,
// with the right bytes; any pull that ended well has the right bytes; every
// blob any agent or the seeder stored matches its digest; and each host
// that finished untouched holds the whole image in its store.
func (r *faultRun) verify(ctx context.Context) {
	b, res := r.b, r.res
	res.Hosts = r.hosts
	mayFail := make(map[int]bool)
	for _, i := range r.inj.mayFail {
		mayFail[i] = true
	}
	touched := make(map[int]bool)
	for _, i := range r.inj.touched {
		touched[i] = true
	}
	var secs, untouched []float64
	for i, h := range res.Hosts {
		if h.Err == "" {
			if err := VerifyLayout(r.pullDir(i), r.img); err != nil {
				res.Hosts[i].Err = err.Error()
				h.Err = err.Error()
				res.problemf("%s: the pull ended well but the image is wrong: %v", h.Host, err)
			}
		}
		if !mayFail[i] {
			res.Required++
			if h.Err != "" {
				res.problemf("%s: pull failed after %.2f s: %s", h.Host, h.Seconds, lastLine(h.Err))
				continue
			}
			res.Completed++
			secs = append(secs, h.Seconds)
		}
		if h.Err == "" && !touched[i] {
			untouched = append(untouched, h.Seconds)
			if missing := r.missingBlobs(b.AgentDataDir(i)); len(missing) > 0 {
				res.problemf("%s: finished but its store lacks %v", h.Host, missing)
			}
		}
	}
	slices.Sort(secs)
	if len(secs) > 0 {
		res.P50, res.Max = percentile(secs, 50), secs[len(secs)-1]
	}
	if len(untouched) > 0 {
		res.MaxUntouched = slices.Max(untouched)
	}
	dirs := []string{filepath.Join(b.cfg.WorkDir, "data", "tracker")}
	for i := range b.Hosts {
		dirs = append(dirs, b.AgentDataDir(i))
	}
	for _, dir := range dirs {
		n, bad, err := checkStore(ctx, filepath.Join(dir, "store", "blobs", "sha256"))
		res.StoreBlobs += n
		for _, name := range bad {
			res.problemf("corrupt blob stored: %s/store/blobs/sha256/%s does not hash to its name", dir, name)
		}
		if err != nil {
			res.problemf("walking %s: %v", dir, err)
		}
	}
}

// missingBlobs lists the image's blobs (config and layers) that are not in
// the store under dataDir.
func (r *faultRun) missingBlobs(dataDir string) []string {
	var missing []string
	for _, d := range r.img.Blobs {
		if _, err := os.Stat(filepath.Join(dataDir, "store", "blobs", "sha256", d.Digest.Encoded())); err != nil {
			missing = append(missing, shortDigest(d.Digest))
		}
	}
	return missing
}

// checkStore hashes every file of a store's blobs/sha256 directory and
// returns how many matched their names and which did not. A missing
// directory is an empty store.
func checkStore(ctx context.Context, dir string) (int, []string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	var (
		ok   int
		bad  []string
		errs []error
	)
	for _, e := range entries {
		if ctx.Err() != nil {
			return ok, bad, ctx.Err()
		}
		if !e.Type().IsRegular() {
			continue
		}
		want, err := hex.DecodeString(e.Name())
		if err != nil || len(want) != sha256.Size {
			bad = append(bad, e.Name())
			continue
		}
		got, err := fileSHA256(filepath.Join(dir, e.Name()))
		switch {
		case errors.Is(err, os.ErrNotExist): // evicted meanwhile
		case err != nil:
			errs = append(errs, err)
		case string(got) != string(want):
			bad = append(bad, e.Name())
		default:
			ok++
		}
	}
	return ok, bad, errors.Join(errs...)
}

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func shortDigest(d digest.Digest) string {
	e := d.Encoded()
	return e[:min(12, len(e))]
}
