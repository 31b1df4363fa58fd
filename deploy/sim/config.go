package sim

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// MB is the unit of the bandwidth flags: 10^6 bytes per second.
const MB = 1e6

// Config is one rollout.
type Config struct {
	N         int     // agents pulling the image
	Size      int64   // image bytes, cut in Layers equal layers
	Layers    int     // layers pulled at once
	SeederUp  float64 // seeder's upload, bytes/s (its download, from the origin, is HostDown)
	HostUp    float64 // each agent's upload, bytes/s
	HostDown  float64 // each agent's download, bytes/s
	OriginUp  float64 // the origin registry's upload, bytes/s
	SlowFrac  float64 // fraction of agents at SlowFactor of HostUp and HostDown
	SlowScale float64
	LatMin    time.Duration // one-way latency of a link: uniform in [LatMin, LatMax]
	LatMax    time.Duration
	Churn     float64 // fraction of agents that leave mid-rollout (at a uniform time in [0, T_min])
	Spread    time.Duration
	Zones     int     // 0: none; else agents sit in Zones zones, round robin (the seeder and the origin in none)
	ZoneUp    float64 // each zone's uplink out of the zone, bytes/s
	ZoneDown  float64 // and into it
	Seed      uint64
	Quantum   time.Duration // network completion times are rounded up to this
	Horizon   time.Duration // virtual time after which the run gives up
	Progress  io.Writer     // if set, a line every million events: virtual time, events, agents done
	Trace     time.Duration // if set, the bin of the trace (trace.go) Result.WriteTrace prints

	// Window is the send window of a piece stream, bytes: a message from a
	// host to another waits behind up to Window bytes of each piece the
	// first is sending the second on their one connection (head-of-line
	// delay, hol.go). 0: messages cross in the link's latency alone.
	Window int64
}

// DefaultConfig is the homogeneous case at N = 20: 200 MiB in 5
// layers, 20 MB/s everywhere, 1 ms links, messages behind up to 512 KiB
// of each piece on their link (the window that fits the testbed's
// Rationed answers best, docs/bench/2026-12-03-sim-hol.md).
func DefaultConfig() Config {
	return Config{
		N: 20, Size: 200 << 20, Layers: 5,
		SeederUp: 20 * MB, HostUp: 20 * MB, HostDown: 20 * MB, OriginUp: 1000 * MB,
		SlowScale: 0.5,
		LatMin:    time.Millisecond, LatMax: time.Millisecond,
		Seed:    1,
		Quantum: 100 * time.Microsecond,
		Horizon: time.Hour,
		Window:  512 << 10,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.N < 1 || c.Layers < 1 || c.Size < int64(c.Layers):
		return fmt.Errorf("sim: n %d, layers %d and size %d must be positive, size at least a byte a layer", c.N, c.Layers, c.Size)
	case c.SeederUp <= 0 || c.HostUp <= 0 || c.HostDown <= 0 || c.OriginUp <= 0:
		return errors.New("sim: bandwidths must be positive")
	case c.SlowFrac < 0 || c.SlowFrac > 1 || c.Churn < 0 || c.Churn >= 1 || c.SlowScale <= 0:
		return errors.New("sim: slow fraction in [0, 1], churn in [0, 1), slow scale positive")
	case c.LatMin < 0 || c.LatMax < c.LatMin || c.Spread < 0 || c.Quantum < 0 || c.Window < 0:
		return errors.New("sim: latencies, spread, quantum and window must not be negative, lat-max at least lat-min")
	case c.Zones < 0 || (c.Zones > 0 && (c.ZoneUp <= 0 || c.ZoneDown <= 0)):
		return errors.New("sim: zones must not be negative, and zones need positive uplinks")
	case c.Horizon <= 0:
		return errors.New("sim: horizon must be positive")
	}
	return nil
}
