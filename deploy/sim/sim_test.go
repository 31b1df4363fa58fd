package sim

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/shoal-dev/shoal/tracker/server"
)

// Flags of TestSim, the simulator's command line (`make sim` passes them).
var (
	simRun    = flag.Bool("sim", false, "run TestSim: one rollout with the flags below, printing its row of the table")
	simN      = flag.Int("sim.n", 20, "agents")
	simSize   = flag.Int64("sim.size", 200, "image size, MiB")
	simLayers = flag.Int("sim.layers", 5, "layers")
	simSeeder = flag.Float64("sim.seeder", 20, "seeder upload, MB/s")
	simUp     = flag.Float64("sim.up", 20, "agent upload, MB/s")
	simDown   = flag.Float64("sim.down", 20, "agent download, MB/s")
	simOrigin = flag.Float64("sim.origin", 1000, "origin upload, MB/s")
	simSlow   = flag.Float64("sim.slow", 0, "fraction of agents at half bandwidth")
	simLatMin = flag.Duration("sim.lat-min", time.Millisecond, "one-way link latency, lowest")
	simLatMax = flag.Duration("sim.lat-max", time.Millisecond, "one-way link latency, highest")
	simChurn  = flag.Float64("sim.churn", 0, "fraction of agents leaving mid-rollout")
	simSpread = flag.Duration("sim.spread", 0, "agents start at uniform times within this")
	simSeed   = flag.Uint64("sim.seed", 1, "seed")
	simZones  = flag.Int("sim.zones", 0, "zones (0: none); agents round robin, the seeder in none")
	simZoneUp = flag.Float64("sim.zone-up", 1000, "each zone's uplink, each way, MB/s")
	simQuant  = flag.Duration("sim.quantum", 100*time.Microsecond, "network completion times rounded up to this")
	simWindow = flag.Int64("sim.window", DefaultConfig().Window>>10, "a piece stream's send window, KiB: messages wait behind that much of each piece on their link (0: no head-of-line delay)")
	simProg   = flag.Bool("sim.progress", false, "print a progress line to stderr every million events")
	simTrace  = flag.Duration("sim.trace", 0, "if set, print a trace (utilisation, answers, piece spread) in bins of this")
	simHeap   = flag.String("sim.heap", "", "write a heap profile to this file after sim.prof-for of wall time")
	simCPU    = flag.String("sim.cpu", "", "write a CPU profile of the first sim.prof-for of wall time to this file")
	simProfAt = flag.Duration("sim.prof-for", time.Minute, "when to write sim.heap, how long sim.cpu profiles")
	simProcs  = flag.Int("sim.procs", 1, "GOMAXPROCS of the run")
)

func flagConfig() Config {
	c := DefaultConfig()
	c.N, c.Size, c.Layers = *simN, *simSize<<20, *simLayers
	c.SeederUp, c.HostUp, c.HostDown, c.OriginUp = *simSeeder*MB, *simUp*MB, *simDown*MB, *simOrigin*MB
	c.SlowFrac, c.LatMin, c.LatMax, c.Churn, c.Spread = *simSlow, *simLatMin, *simLatMax, *simChurn, *simSpread
	c.Seed, c.Quantum, c.Window = *simSeed, *simQuant, *simWindow<<10
	c.Zones, c.ZoneUp, c.ZoneDown = *simZones, *simZoneUp*MB, *simZoneUp*MB
	c.Trace = *simTrace
	if *simProg {
		c.Progress = os.Stderr
	}
	return c
}

// realTracker is the tracker server itself, seeded.
func realTracker(seed uint64, sd Seeder) (Tracker, error) {
	cfg := server.DefaultConfig()
	cfg.Tokens = []string{"simulated-cluster-token"}
	srv, err := server.New(cfg, server.WithSeed(seed))
	if err != nil {
		return nil, err
	}
	if err := srv.Start(sd); err != nil {
		return nil, err
	}
	return srv, nil
}

// simulate runs cfg in a bubble of its own.
func simulate(t *testing.T, cfg Config) *Result {
	t.Helper()
	var r *Result
	start := time.Now()
	synctest.Test(t, func(t *testing.T) {
		var err error
		if r, err = Run(cfg, realTracker); err != nil {
			t.Fatal(err)
		}
	})
	if r != nil {
		r.Wall = time.Since(start)
	}
	return r
}

// TestSim is the simulator's entry point: `go test ./deploy/sim -run
// '^TestSim$' -args -sim -sim.n 1000 …` (make sim).
func TestSim(t *testing.T) {
	if !*simRun {
		t.Skip("run with -sim (make sim)")
	}
	// The driver delivers one event at a time: a second P mostly adds
	// wake-ups across threads (1.45× the CPU time at N = 300).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(*simProcs))
	if *simCPU != "" || *simHeap != "" {
		// Profiles of a part of a long run, outside the bubble: real time.
		var cpu *os.File
		if *simCPU != "" {
			var err error
			if cpu, err = os.Create(*simCPU); err != nil {
				t.Fatal(err)
			}
			if err := pprof.StartCPUProfile(cpu); err != nil {
				t.Fatal(err)
			}
		}
		var once sync.Once
		stop := func() {
			once.Do(func() {
				if cpu != nil {
					pprof.StopCPUProfile()
					cpu.Close()
				}
				for _, p := range [...]struct{ name, file string }{{"heap", *simHeap}, {"goroutine", *simHeap + ".goroutine"}} {
					if *simHeap == "" {
						break
					}
					if f, err := os.Create(p.file); err == nil {
						pprof.Lookup(p.name).WriteTo(f, 0)
						f.Close()
					}
				}
			})
		}
		timer := time.AfterFunc(*simProfAt, stop)
		defer func() { timer.Stop(); stop() }()
	}
	r := simulate(t, flagConfig())
	os.Stdout.WriteString(Header)
	r.WriteRow(os.Stdout)
	r.WriteCDF(os.Stdout)
	fmt.Fprintf(os.Stdout, "head-of-line window %d KiB\n", r.Config.Window>>10)
	r.WriteZones(os.Stdout)
	r.WriteTrace(os.Stdout)
	r.WriteKinds(os.Stdout)
	fmt.Fprintf(os.Stdout, "trace %016x of %d events\n", r.Trace, r.Events)
}

// A small rollout on the default configuration completes, within a loose
// bound of the limit, and the same seed gives the same run, event for
// event. Not timed: the figures are virtual.
func TestSimSmall(t *testing.T) {
	cfg := DefaultConfig() // N = 20, 200 MiB in 5 layers, 20 MB/s
	if raceEnabled {
		cfg.N, cfg.Size = 10, 40<<20
	}
	a := simulate(t, cfg)
	b := simulate(t, cfg)
	if a.Unfinished > 0 || a.TimedOut || len(a.Done) != cfg.N {
		t.Fatalf("%d of %d agents done, %d unfinished, timed out %v", len(a.Done), cfg.N, a.Unfinished, a.TimedOut)
	}
	if limit := 5 * a.Bound.Pipe; a.Max() > limit {
		t.Errorf("last agent done at %s, more than 5× the bound %s", a.Max(), a.Bound.Pipe)
	}
	if a.Trace != b.Trace || a.Events != b.Events || !equal(a.Done, b.Done) || a.SeederCopies != b.SeederCopies {
		t.Errorf("same seed, different runs: %d and %d events (trace %x and %x), max %s and %s, seeder copies %.4f and %.4f",
			a.Events, b.Events, a.Trace, b.Trace, a.Max(), b.Max(), a.SeederCopies, b.SeederCopies)
	}
	t.Logf("T_min %s, p50 %s, max %s, seeder copies %.2f, origin copies %.2f, %d events",
		a.Bound.Min, a.Quantile(0.5), a.Max(), a.SeederCopies, a.OriginCopies, a.Events)
}

func equal(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
