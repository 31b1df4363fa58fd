package sim

import (
	"fmt"
	"io"
	"math"
	"time"
)

// Result is what a rollout came to.
type Result struct {
	Config     Config
	Bound      Bound
	Done       []time.Duration // completion times of the agents that stayed, sorted
	Unfinished int             // agents that stayed and did not complete
	Left       int             // agents that left mid-rollout
	TimedOut   bool            // the horizon came first
	Virtual    time.Duration   // virtual time simulated
	Events     uint64
	Kinds      [kindNode + 1]uint64 // events by kind
	Haves      uint64               // HAVEs the kindHave events handed to sessions
	Ends       uint64               // watch ends they handed
	Trace      uint64               // a hash of every event, when and what: equal runs have equal traces
	Wall       time.Duration        // set by the caller: the bubble's clock is virtual

	SeederCopies float64 // bytes the seeder uploaded, in images
	OriginCopies float64 // bytes fetched from the origin (seeder and fallbacks), in images
	// CrossZoneCopies is the bytes that crossed a zone's boundary (into or
	// out of it; the seeder is in no zone), in images per zone.
	CrossZoneCopies float64
	PeerBytes       int64 // bytes agents received from agents
	SeederBytes     int64 // from the seeder
	FallbackBytes   int64 // from the origin, by agents
	tracer          *tracer
}

// Quantile returns the q-quantile of the completion times (nearest rank).
func (r *Result) Quantile(q float64) time.Duration {
	if len(r.Done) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(r.Done)))) - 1
	return r.Done[min(max(i, 0), len(r.Done)-1)]
}

// Max is the last completion.
func (r *Result) Max() time.Duration { return r.Quantile(1) }

// Header is the table's header, for WriteRow.
const Header = "| N | image | bandwidth (MB/s) seeder/up/down | latency | slow | churn | T_min | p50 | p90 | max | p50/T_min | max/T_min | max/T_pipe | seeder copies | origin copies | done | events | events/s | wall |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"

// WriteRow writes r as one row of the table.
func (r *Result) WriteRow(w io.Writer) {
	c := r.Config
	ratio := func(d, b time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()/b.Seconds()) }
	eps := 0.0
	if r.Wall > 0 {
		eps = float64(r.Events) / r.Wall.Seconds()
	}
	done := fmt.Sprintf("%d/%d", len(r.Done), c.N-r.Left)
	if r.TimedOut {
		done += " (horizon)"
	}
	fmt.Fprintf(w, "| %d | %d MiB, %d layers | %g/%g/%g | %s–%s | %.0f%% | %.0f%% | %.2fs | %.2fs | %.2fs | %.2fs | %s | %s | %s | %.2f | %.2f | %s | %d | %.0f | %s |\n",
		c.N, c.Size>>20, c.Layers, c.SeederUp/MB, c.HostUp/MB, c.HostDown/MB, c.LatMin, c.LatMax, c.SlowFrac*100, c.Churn*100,
		r.Bound.Min.Seconds(), r.Quantile(0.5).Seconds(), r.Quantile(0.9).Seconds(), r.Max().Seconds(),
		ratio(r.Quantile(0.5), r.Bound.Min), ratio(r.Max(), r.Bound.Min), ratio(r.Max(), r.Bound.Pipe),
		r.SeederCopies, r.OriginCopies, done, r.Events, eps, r.Wall.Round(time.Millisecond))
}

// WriteZones writes the zone figures, if there are zones.
func (r *Result) WriteZones(w io.Writer) {
	if c := r.Config; c.Zones > 0 {
		fmt.Fprintf(w, "zones: %d, uplinks %g/%g MB/s, cross-zone bytes %.2f images per zone\n", c.Zones, c.ZoneUp/MB, c.ZoneDown/MB, r.CrossZoneCopies)
	}
}

// WriteCDF writes the completion CDF at every tenth.
func (r *Result) WriteCDF(w io.Writer) {
	fmt.Fprintf(w, "completion CDF (s): ")
	for q := 0.1; q < 1.05; q += 0.1 {
		fmt.Fprintf(w, "p%.0f=%.2f ", q*100, r.Quantile(q).Seconds())
	}
	fmt.Fprintln(w)
}

var kindNames = [...]string{"net", "flow", "tracker", "reply", "arrive", "have", "cancel", "abort", "node"}

// WriteKinds writes the events by kind.
func (r *Result) WriteKinds(w io.Writer) {
	fmt.Fprintf(w, "events by kind:")
	for k, n := range r.Kinds {
		fmt.Fprintf(w, " %s %d", kindNames[k], n)
	}
	fmt.Fprintf(w, "; HAVEs handed %d, watch ends %d\n", r.Haves, r.Ends)
}
