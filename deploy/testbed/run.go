package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/registryshim/grammar"
)

// Scenario is the rollout Run plays on a bed.
type Scenario struct {
	// ImageSize is the image's layer bytes in total, split over Layers.
	ImageSize int64
	Layers    int
	// Seed picks the image's bytes; the baseline uses Seed+1 so that it
	// moves fresh data.
	Seed uint64
	// Repo is the repository the images are pushed to.
	Repo string
	// SampleInterval is how often agents' counters are scraped.
	SampleInterval time.Duration
	// PullTimeout bounds one host's pull.
	PullTimeout time.Duration
	// Baseline also runs the rollout with every host pulling straight from
	// the origin, after the swarm has been stopped.
	Baseline bool
	// Preseed also runs the rollout after `shoal seed IMAGE --wait` (a
	// fresh image, tracker and agents), after the cold P2P rollout and
	// before the baseline. SeedTimeout bounds the seed.
	Preseed     bool
	SeedTimeout time.Duration
	// TrackerArgs and AgentArgs are appended to the shoal command lines
	// (for example "--log-level", "debug").
	TrackerArgs, AgentArgs []string
	// OnSample, if set, sees every sample of the P2P rollout as it is
	// taken; tests use it to kill a peer halfway.
	OnSample func(Sample)
}

// DefaultScenario is the issue's: 200 MiB in 5 layers, with a baseline.
func DefaultScenario() Scenario {
	return Scenario{
		ImageSize:      200 << 20,
		Layers:         5,
		Seed:           1,
		Repo:           "bench",
		SampleInterval: 500 * time.Millisecond,
		PullTimeout:    15 * time.Minute,
		Baseline:       true,
		SeedTimeout:    15 * time.Minute,
	}
}

// Validate reports the first problem with s.
func (s Scenario) Validate() error {
	switch {
	case s.Layers < 1 || s.Layers > 100:
		return fmt.Errorf("%w: layers %d: want 1..100", ErrConfig, s.Layers)
	case s.ImageSize < int64(s.Layers)*1024 || s.ImageSize > 64<<30:
		return fmt.Errorf("%w: image size %d: want at least 1 KiB per layer and at most 64 GiB", ErrConfig, s.ImageSize)
	case !grammar.Repository(s.Repo): // a plain name, without a registry or tag
		return fmt.Errorf("%w: repository %q", ErrConfig, s.Repo)
	case s.SampleInterval < 10*time.Millisecond:
		return fmt.Errorf("%w: sample interval %s: want at least 10ms", ErrConfig, s.SampleInterval)
	case s.PullTimeout <= 0:
		return fmt.Errorf("%w: pull timeout %s", ErrConfig, s.PullTimeout)
	case s.Preseed && s.SeedTimeout <= 0:
		return fmt.Errorf("%w: seed timeout %s", ErrConfig, s.SeedTimeout)
	}
	return nil
}

// Sample is the swarm's state at one moment of the P2P rollout.
type Sample struct {
	// Elapsed is the time since every pull started.
	Elapsed time.Duration
	// Received is what each host's agent has received (index as Bed.Hosts);
	// zero for an agent that did not answer.
	Received []Received
	// Done tells which hosts' pulls have ended, well or not.
	Done []bool
	// OriginTx is what the origin has sent since the rollout started.
	OriginTx int64
	// SeederTx is what the tracker's host (its seeder) has sent since the
	// rollout started.
	SeederTx int64
	// Links is what each host's link carried since the rollout started.
	Links []LinkBytes
}

// Run plays s on b: it starts the origin, pushes the image, starts the
// tracker and the agents, has every host pull through its own agent at
// the same instant while sampling the agents, then (if s.Preseed) starts a
// fresh swarm, runs shoal seed --wait for a fresh image and rolls that out
// the same way, then (if s.Baseline) stops the swarm and has every host
// pull a fresh image straight from the origin.
// A host whose pull fails is reported, not fatal; Run fails only when the
// bed itself does.
func Run(ctx context.Context, b *Bed, s Scenario, log *slog.Logger) (*Report, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rep := &Report{
		Hosts:        len(b.Hosts),
		Layers:       s.Layers,
		HostRate:     b.cfg.HostDownload,
		OriginRate:   b.cfg.OriginRate,
		TrackerRate:  b.cfg.TrackerRate,
		HostUpload:   b.cfg.HostUpload,
		Started:      time.Now().UTC(),
		SampleMillis: s.SampleInterval.Milliseconds(),
	}
	if err := b.StartOrigin(ctx); err != nil {
		return nil, err
	}
	imgDir := filepath.Join(b.cfg.WorkDir, "images")
	defer os.RemoveAll(imgDir)
	genStart := time.Now()
	p2pImg, err := GenerateImage(filepath.Join(imgDir, "p2p"), s.ImageSize, s.Layers, s.Seed)
	if err != nil {
		return nil, err
	}
	var baseImg Image
	if s.Baseline {
		if baseImg, err = GenerateImage(filepath.Join(imgDir, "baseline"), s.ImageSize, s.Layers, s.Seed+1); err != nil {
			return nil, err
		}
	}
	var seedImg Image
	if s.Preseed {
		if seedImg, err = GenerateImage(filepath.Join(imgDir, "seeded"), s.ImageSize, s.Layers, s.Seed+2); err != nil {
			return nil, err
		}
	}
	log.Info("images generated", "bytes", p2pImg.Size(), "duration", time.Since(genStart).Round(time.Millisecond))
	rep.ImageBytes = p2pImg.Size()
	rep.LimitSeconds = float64(rep.ImageBytes) / float64(b.cfg.HostDownload)
	rep.BaselineExpectedSeconds = float64(len(b.Hosts)) * float64(rep.ImageBytes) / float64(b.cfg.OriginRate)
	if _, err := b.Push(ctx, p2pImg, s.Repo+":p2p"); err != nil {
		return nil, err
	}
	var baseRef string
	if s.Baseline {
		if baseRef, err = b.Push(ctx, baseImg, s.Repo+":baseline"); err != nil {
			return nil, err
		}
	}
	var seedRef string
	if s.Preseed {
		if seedRef, err = b.Push(ctx, seedImg, s.Repo+":seeded"); err != nil {
			return nil, err
		}
	}
	if err := startSwarm(ctx, b, s); err != nil {
		return nil, err
	}
	log.Info("swarm ready, pulling through the agents", "hosts", len(b.Hosts), "limit_s", round2(rep.LimitSeconds))
	if rep.P2P, err = rollout(ctx, b, s, p2pImg, AgentRef(s.Repo+":p2p"), "p2p", log); err != nil {
		return nil, err
	}
	stopSwarm(b, log)
	if s.Preseed {
		if err := startSwarm(ctx, b, s); err != nil {
			return nil, err
		}
		if rep.Seed, err = seed(ctx, b, s, seedRef, log); err != nil {
			return nil, err
		}
		log.Info("seeded, pulling through the agents", "seed_s", rep.Seed.Seconds)
		if rep.Seeded, err = rollout(ctx, b, s, seedImg, AgentRef(s.Repo+":seeded"), "p2p-seeded", log); err != nil {
			return nil, err
		}
		stopSwarm(b, log)
	}
	if s.Baseline {
		log.Info("pulling straight from the origin (baseline)", "hosts", len(b.Hosts))
		if rep.Baseline, err = rollout(ctx, b, s, baseImg, baseRef, "baseline", log); err != nil {
			return nil, err
		}
	}
	rep.finish()
	return rep, nil
}

// startSwarm starts a fresh tracker and fresh agents.
func startSwarm(ctx context.Context, b *Bed, s Scenario) error {
	if err := b.StartTracker(ctx, s.TrackerArgs...); err != nil {
		return err
	}
	return b.StartAgents(ctx, s.AgentArgs...)
}

func stopSwarm(b *Bed, log *slog.Logger) {
	if err := b.StopSwarm(); err != nil {
		// Agents that die on shutdown are a product bug worth a line, not a
		// reason to lose the run.
		log.Warn("swarm did not stop cleanly", "err", err)
	}
}

// seed runs shoal seed for ref on the running swarm and times it, with
// what the origin sent meanwhile.
func seed(ctx context.Context, b *Bed, s Scenario, ref string, log *slog.Logger) (*SeedReport, error) {
	tx0, err := b.OriginTxBytes()
	if err != nil {
		return nil, err
	}
	log.Info("running shoal seed --wait", "image", ref)
	start := time.Now()
	out, err := b.Seed(ctx, s.SeedTimeout, ref)
	took := time.Since(start)
	if err != nil {
		return nil, err
	}
	tx1, err := b.OriginTxBytes()
	if err != nil {
		return nil, err
	}
	sr := &SeedReport{Image: ref, Seconds: round2(took.Seconds()), OriginEgressBytes: tx1 - tx0, Summary: finalLine(out)}
	if up, err := b.UpstreamTaken(ctx); err == nil {
		sr.Upstream = &up
	} else {
		log.Warn("cannot read the upstream counters after the seed", "err", err)
	}
	return sr, nil
}

// rollout has every host pull ref at once and measures it. Except for the
// baseline, the agents are sampled, their resource use read at the end, and
// the blob bytes the swarm took from the origin counted.
func rollout(ctx context.Context, b *Bed, s Scenario, img Image, ref, name string, log *slog.Logger) (*RunReport, error) {
	swarm := name != "baseline"
	pullDir := filepath.Join(b.cfg.WorkDir, "pulls", name)
	if err := os.RemoveAll(pullDir); err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	defer os.RemoveAll(pullDir)
	tx0, err := b.OriginTxBytes()
	if err != nil {
		return nil, err
	}
	var (
		up0   Upstream
		upErr error
	)
	links0 := make([]LinkBytes, len(b.Hosts))
	var seeder0 int64
	if swarm {
		up0, upErr = b.UpstreamTaken(ctx)
		seeder0, _ = b.SeederTxBytes()
		for i := range b.Hosts {
			links0[i], _ = b.HostLinkBytes(i) // a host it cannot read counts from zero
		}
	}
	cpu0, cpuErr := readCPUTimes()
	n := len(b.Hosts)
	rr := &RunReport{Name: name, Hosts: make([]HostResult, n)}
	var mu sync.Mutex // guards done and rr.Hosts while pulls run
	// last keeps each agent's latest counters, so that one that stops
	// answering (or was killed) still counts what it had received.
	last := make([]Received, n)
	done := make([]bool, n)
	var wg sync.WaitGroup
	allDone := make(chan struct{})
	start := time.Now()
	for i, h := range b.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, s.PullTimeout)
			defer cancel()
			cpu, err := b.Pull(pctx, h, ref, filepath.Join(pullDir, h.Name))
			elapsed := time.Since(start).Seconds()
			mu.Lock()
			defer mu.Unlock()
			done[i] = true
			rr.Hosts[i] = HostResult{Host: h.Name, Seconds: elapsed, ClientCPUSeconds: round2(cpu.Seconds())}
			if err != nil {
				rr.Hosts[i].Err = err.Error()
			}
		}()
	}
	go func() { wg.Wait(); close(allDone) }()

	sample := func() Sample {
		smp := Sample{Elapsed: time.Since(start)}
		if tx, err := b.OriginTxBytes(); err == nil {
			smp.OriginTx = tx - tx0
		}
		if swarm {
			if tx, err := b.SeederTxBytes(); err == nil {
				smp.SeederTx = tx - seeder0
			}
			smp.Links = make([]LinkBytes, len(b.Hosts))
			for i := range b.Hosts {
				if l, err := b.HostLinkBytes(i); err == nil {
					smp.Links[i] = LinkBytes{Rx: l.Rx - links0[i].Rx, Tx: l.Tx - links0[i].Tx}
				}
			}
			for i, r := range scrapeAll(ctx, b, s.SampleInterval) {
				if r != nil {
					last[i] = *r
				}
			}
			smp.Received = append([]Received(nil), last...)
		}
		mu.Lock()
		smp.Done = append([]bool(nil), done...)
		mu.Unlock()
		return smp
	}
	record := func(smp Sample) {
		var total Received
		for _, r := range smp.Received {
			total = total.add(r)
		}
		rr.Series = append(rr.Series, Point{Seconds: round2(smp.Elapsed.Seconds()), Received: total, OriginTx: smp.OriginTx, SeederTx: smp.SeederTx, Links: smp.Links})
		if name == "p2p" && s.OnSample != nil {
			s.OnSample(smp)
		}
	}
	tick := time.NewTicker(s.SampleInterval)
	defer tick.Stop()
	lastLog := time.Now()
loop:
	for {
		select {
		case <-allDone:
			break loop
		case <-ctx.Done():
			<-allDone
			return nil, ctx.Err()
		case <-tick.C:
			smp := sample()
			record(smp)
			if time.Since(lastLog) >= 5*time.Second {
				lastLog = time.Now()
				p := rr.Series[len(rr.Series)-1]
				log.Info("rollout progress", "run", name, "elapsed_s", round2(smp.Elapsed.Seconds()), "done", count(smp.Done), "of", n,
					"origin_tx_mib", smp.OriginTx>>20, "from_peers_mib", p.Received.Peer>>20, "from_seeder_mib", p.Received.Seeder>>20, "from_origin_mib", p.Received.Origin>>20)
			}
		}
	}
	final := sample()
	record(final)
	tx1, err := b.OriginTxBytes()
	if err != nil {
		return nil, err
	}
	rr.OriginEgressBytes = tx1 - tx0
	if swarm {
		up1, err := b.UpstreamTaken(ctx)
		if err = errors.Join(upErr, err); err == nil {
			d := up1.sub(up0)
			rr.OriginBlobs = &d
		} else {
			// A killed agent takes its counters along: no sum then.
			log.Warn("origin blob bytes not counted", "run", name, "err", err)
		}
	}
	if cpu1, err := readCPUTimes(); err == nil && cpuErr == nil {
		rr.MachineCPUBusy = round2(busy(cpu0, cpu1))
		rr.MachineCPUSeconds = round2(busySeconds(cpu0, cpu1))
	}
	if swarm {
		for i, h := range b.Hosts {
			ar := AgentResult{Host: h.Name, Received: final.Received[i]}
			st, err := b.AgentStats(i)
			if err != nil {
				ar.Err = "agent gone: " + err.Error()
			}
			ar.ProcStats = st
			rr.Agents = append(rr.Agents, ar)
		}
		if st, err := b.TrackerStats(); err == nil {
			rr.Tracker = &st
		}
		rr.DownloadUse = downloadUse(rr.Series, rr.Hosts, float64(b.cfg.HostDownload))
		rr.OriginDone = originDone(rr.Series, float64(b.cfg.OriginRate), int64(len(rr.Hosts))*img.Size())
		rr.SeederUse = seederUse(rr.Series, float64(b.cfg.TrackerRate))
	}
	// Verification after the clock stopped: its hashing must not slow
	// the pulls it checks.
	for i, h := range b.Hosts {
		if rr.Hosts[i].Err != "" {
			continue
		}
		if err := VerifyLayout(filepath.Join(pullDir, h.Name), img); err != nil {
			rr.Hosts[i].Err = err.Error()
		}
	}
	for _, hr := range rr.Hosts {
		if hr.Err != "" {
			log.Warn("pull failed", "run", name, "host", hr.Host, "err", hr.Err)
		}
	}
	return rr, nil
}

// scrapeAll asks every agent for its counters at once; an agent that does
// not answer within the sampling interval (or a second) gets nil.
func scrapeAll(ctx context.Context, b *Bed, within time.Duration) []*Received {
	ctx, cancel := context.WithTimeout(ctx, max(within, time.Second))
	defer cancel()
	out := make([]*Received, len(b.Hosts))
	var wg sync.WaitGroup
	for i := range b.Hosts {
		if b.agents[i].exited() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := b.AgentReceived(ctx, i); err == nil {
				out[i] = &r
			}
		}()
	}
	wg.Wait()
	return out
}

func count(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
