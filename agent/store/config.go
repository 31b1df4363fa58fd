package store

import (
	"errors"
	"fmt"
)

// Config configures a Disk store.
type Config struct {
	// Dir is the root directory; blobs/ and ingest/ are created under it.
	Dir string
	// Capacity in bytes; 0 means unlimited (no eviction).
	Capacity int64
	// HighWatermark: evict when usage exceeds HighWatermark*Capacity.
	HighWatermark float64
	// LowWatermark: eviction frees space down to LowWatermark*Capacity.
	LowWatermark float64
	// JournalSyncBytes is how many newly written bytes an ingest accumulates
	// before it fsyncs its data and appends them to its journal. It bounds
	// what a crash can lose (those bytes are fetched again) against the cost
	// of fsync on the hot path.
	JournalSyncBytes int64
}

// DefaultConfig returns the defaults; Dir must still be set.
func DefaultConfig() Config {
	return Config{
		HighWatermark:    0.9,
		LowWatermark:     0.75,
		JournalSyncBytes: 4 << 20,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("store: config: Dir is empty")
	case c.Capacity < 0:
		return fmt.Errorf("store: config: Capacity %d is negative", c.Capacity)
	case !(c.HighWatermark > 0 && c.HighWatermark <= 1):
		return fmt.Errorf("store: config: HighWatermark %v is not in (0,1]", c.HighWatermark)
	case !(c.LowWatermark > 0 && c.LowWatermark <= c.HighWatermark):
		return fmt.Errorf("store: config: LowWatermark %v is not in (0,HighWatermark]", c.LowWatermark)
	case c.JournalSyncBytes <= 0:
		return fmt.Errorf("store: config: JournalSyncBytes %d is not positive", c.JournalSyncBytes)
	}
	return nil
}
