package sim

import (
	"math"
	"slices"
	"time"
)

// Head-of-line delay. Two hosts share one connection (TCP, TLS, the
// muxer), so a small message from a to b (a refusal of a piece request, a
// HAVE, a watch's end, the bitfield a Follow answers) leaves after the
// piece bytes a is already sending b on it: up to a stream's send window
// of each piece in flight, which drain at the rates the network gives
// those flows. The message arrives after the link's latency plus that
// wait, rounded up to a grid of holGrid laid from the start, so that the
// HAVEs that reach one watcher within a grid step still travel as one
// event (watch.go). Requests and successful answers are not delayed: a
// request travels b to a, where the seeder sends nothing back; a piece's
// answer is its flow.

// holGrid is the grid delayed arrivals are rounded up to.
const holGrid = time.Millisecond

// A message's wait is measured once the instant it leaves at is over
// (flush, before settle), with the rates of the flows the instant's
// events left, so that the flows are shared out once per instant rather
// than again after each event that started or ended one: a message is
// never due at the instant it leaves (it crosses a link), so nothing of
// that instant waits for its time.

type late struct {
	k  key
	fn func()
}

// later runs fn, which measures a wait and schedules what it delays, when
// the instant is over. The goroutines the driver woke call it (a refusal):
// those of one instant run in the order of their keys.
func (s *Sim) later(k key, fn func()) {
	s.lateMu.Lock()
	s.lates = append(s.lates, late{k, fn})
	s.lateMu.Unlock()
}

// laterHere is later for the driver's own work (a watch's bitfield, what
// drain found), which runs in the order it came.
func (s *Sim) laterHere(fn func()) { s.here = append(s.here, fn) }

// flush runs what waited for the end of the instant: the driver's work in
// its order, then the goroutines' in the order of their keys.
func (s *Sim) flush() {
	for len(s.here) > 0 {
		here := s.here
		s.here = nil
		for _, fn := range here {
			fn()
		}
	}
	s.lateMu.Lock()
	lates := s.lates
	s.lates = nil
	s.lateMu.Unlock()
	slices.SortStableFunc(lates, func(a, b late) int { return cmpKey(a.k, b.k) })
	for _, l := range lates {
		l.fn()
	}
}

// pair adds f to (or removes it from) the index of the piece flows of its
// (uploader, receiver), kept in key order whatever the order of add.
func (nw *network) pair(f *flow, add bool) {
	if f.key.a < 0 { // the origin's: it is sent no message
		return
	}
	p := [2]int{f.key.a, f.key.b}
	fs := nw.pairs[p]
	if add {
		i, _ := slices.BinarySearchFunc(fs, f, func(x, y *flow) int { return cmpKey(x.key, y.key) })
		for i < len(fs) && fs[i].key == f.key {
			i++ // after equal keys: in the order of add
		}
		nw.pairs[p] = slices.Insert(fs, i, f)
		return
	}
	if i := slices.Index(fs, f); i >= 0 {
		fs = slices.Delete(fs, i, i+1)
	}
	if len(fs) == 0 {
		delete(nw.pairs, p)
		return
	}
	nw.pairs[p] = fs
}

func cmpKey(a, b key) int {
	switch {
	case a.less(b):
		return -1
	case b.less(a):
		return 1
	}
	return 0
}

// backlog is how long a message from node a to node b waits now behind
// the piece bytes a sends b: Σ min(left, window) / Σ rate over their
// flows. Rates of flows that came or went this instant are set here (by
// fill, which settle then need not repeat): left does not move within an
// instant, so the run is the same as without the measure.
func (nw *network) backlog(a, b int, window float64) time.Duration {
	if window <= 0 {
		return 0
	}
	nw.enter()
	defer nw.leave()
	fs := nw.pairs[[2]int{a, b}]
	if len(fs) == 0 {
		return 0
	}
	if nw.dirty && !nw.filled {
		nw.fill()
		nw.filled = true
	}
	// Not advance: moving left on in two steps rather than one would
	// round differently. When dirty, last is now.
	dt := time.Since(nw.last).Seconds()
	var bytes, rate float64
	for _, f := range fs {
		bytes += min(max(f.left-f.rate*dt, 0), window)
		rate += f.rate
	}
	if bytes <= 0 || rate <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(bytes / rate * 1e9))
}

// arrival is when a message from n leaving now reaches o.
func (s *Sim) arrival(n, o *node) time.Time {
	at := time.Now().Add(n.link(o))
	if d := s.net.backlog(n.id, o.id, float64(s.cfg.Window)); d > 0 {
		since := at.Add(d).Sub(s.start)
		at = s.start.Add((since + holGrid - 1) / holGrid * holGrid)
	}
	return at
}

// haveAt is when what sb's watched node sends now (a HAVE, its end)
// reaches the watcher: its arrival, or with wait false (a reset) the
// link's latency alone; never before what sb sent earlier.
func (s *Sim) haveAt(sb *sub, wait bool) time.Time {
	at := time.Now().Add(sb.from.link(sb.to))
	if wait {
		at = s.arrival(sb.from, sb.to)
	}
	if at.Before(sb.last) {
		at = sb.last
	}
	sb.last = at
	return at
}
