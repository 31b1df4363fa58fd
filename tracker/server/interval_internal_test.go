package server

import (
	"testing"
	"time"
)

// The paced interval and TTL follow the documented formula.
func TestPace(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig() // 3 s, 9 s, 2,000/s
	fixed := cfg
	fixed.MaxAnnounceRate = 0
	for _, tc := range []struct {
		cfg           Config
		peers         int
		interval, ttl time.Duration
	}{
		{cfg, 0, 3 * time.Second, 9 * time.Second},
		{cfg, 6000, 3 * time.Second, 9 * time.Second},
		{cfg, 6001, 3100 * time.Millisecond, 9300 * time.Millisecond},
		{cfg, 10_000, 5 * time.Second, 15 * time.Second},
		{cfg, 100_000, 50 * time.Second, 150 * time.Second},
		{cfg, 10_000_000, 5 * time.Minute, 15 * time.Minute},
		{fixed, 10_000_000, 3 * time.Second, 9 * time.Second},
	} {
		interval, ttl := tc.cfg.pace(tc.peers)
		if interval != tc.interval || ttl != tc.ttl {
			t.Errorf("rate %d, %d peers: %s, %s; want %s, %s", tc.cfg.MaxAnnounceRate, tc.peers, interval, ttl, tc.interval, tc.ttl)
		}
	}
}
