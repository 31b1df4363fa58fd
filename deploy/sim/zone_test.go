package sim

import "testing"

// A small rollout in zones with 4:1 uplinks completes, the same seed gives
// the same run, and about one image enters each zone: the agents announce
// their zone, and the tracker's handout and the swarm prefer peers of it
// (before zones, 4.12 images per zone in this rollout). Not timed: the
// figures are virtual and the run deterministic.
func TestSimZones(t *testing.T) {
	cfg := DefaultConfig() // 200 MiB in 5 layers, 20 MB/s
	cfg.N, cfg.Zones = 20, 4
	if raceEnabled {
		cfg.N, cfg.Size = 8, 40<<20
	}
	cfg.ZoneUp = float64(cfg.N/cfg.Zones) * cfg.HostUp / 4 // 4:1 oversubscribed
	cfg.ZoneDown = cfg.ZoneUp
	a := simulate(t, cfg)
	b := simulate(t, cfg)
	if a.Unfinished > 0 || a.TimedOut || len(a.Done) != cfg.N {
		t.Fatalf("%d of %d agents done, %d unfinished, timed out %v", len(a.Done), cfg.N, a.Unfinished, a.TimedOut)
	}
	if a.Trace != b.Trace || a.Events != b.Events || a.CrossZoneCopies != b.CrossZoneCopies {
		t.Errorf("same seed, different runs: %d and %d events, %.4f and %.4f images per zone", a.Events, b.Events, a.CrossZoneCopies, b.CrossZoneCopies)
	}
	if a.CrossZoneCopies > 2 {
		t.Errorf("%.2f images crossed into each zone, want about one (at most 2)", a.CrossZoneCopies)
	}
	t.Logf("T_min %s, max %s, seeder copies %.2f, %.2f images per zone", a.Bound.Min, a.Max(), a.SeederCopies, a.CrossZoneCopies)
}
