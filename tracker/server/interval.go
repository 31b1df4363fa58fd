package server

import "time"

// maxAnnounceInterval caps the paced interval (agents refuse over an hour).
const maxAnnounceInterval = 5 * time.Minute

// pace is how often the tracker asks agents to announce while it lists
// peers live peers, and how long it then keeps a silent (peer, blob):
//
//	interval = max(AnnounceInterval, peers / MaxAnnounceRate s), rounded up to 100 ms, at most 5 min
//	ttl      = PeerTTL × interval / AnnounceInterval
//
// so that the whole swarm sends at most about MaxAnnounceRate announces a
// second however large it grows (10,000 agents at the default 2,000/s
// announce every 5 s), and the TTL keeps its ratio to the interval. A
// MaxAnnounceRate of 0 keeps the interval fixed.
func (c Config) pace(peers int) (interval, ttl time.Duration) {
	interval = c.AnnounceInterval
	if c.MaxAnnounceRate > 0 {
		paced := time.Duration(peers) * time.Second / time.Duration(c.MaxAnnounceRate)
		if step := 100 * time.Millisecond; paced%step != 0 {
			paced += step - paced%step
		}
		interval = max(interval, min(paced, maxAnnounceInterval))
	}
	if interval == c.AnnounceInterval {
		return interval, c.PeerTTL
	}
	return interval, time.Duration(float64(c.PeerTTL) * float64(interval) / float64(c.AnnounceInterval))
}
