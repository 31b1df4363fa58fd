package sim

import (
	"errors"
	"math"
	"time"
)

// network shares the capacities of resources (a host's upload, a host's
// download; a zone's uplink would be one more) max-min fairly among the
// flows that cross them, recomputed once per instant at which flows came
// or went (once its events are all delivered), and tells each flow when it
// completes. Only the driver and the
// goroutines it woke touch it, one at a time: the mutex of the queue is not
// needed, but the goroutines of one instant may call add and cancel
// concurrently, so it has its own.
type network struct {
	q       *queue
	quantum time.Duration // completion times are rounded up to it
	caps    []float64     // bytes per second, by resource
	users   [][]*flow     // the flows crossing each resource
	flows   []*flow       // all active flows
	last    time.Time     // flows' left is as of last
	start   time.Time     // of the grid completion times are rounded up to
	dirty   bool
	filled  bool               // the rates are set for the flows of now (hol.go measured them)
	gen     uint64             // the completion event that is current
	pairs   map[[2]int][]*flow // piece flows by (uploader, receiver), in key order (hol.go)
	lock    chan struct{}
	tr      *tracer // nil unless tracing
	// fill's scratch, kept from one call to the next
	rem     []float64
	cnt     []int
	hits    []int
	heap    shares
	touched []int
}

var errCancelled = errors.New("sim: transfer cancelled")

type flow struct {
	key   key // of the event that tells its end
	res   []int
	pos   []int // index in users[res[i]]
	at    int   // index in flows; -1 once ended
	size  float64
	left  float64
	rate  float64
	err   error
	done  chan struct{} // closed when it completes or is cancelled
	fixed bool          // scratch for fill
}

func newNetwork(q *queue, quantum time.Duration) *network {
	return &network{q: q, quantum: quantum, lock: make(chan struct{}, 1), last: time.Now(), start: time.Now(), pairs: make(map[[2]int][]*flow)}
}

func (nw *network) enter() { nw.lock <- struct{}{} }
func (nw *network) leave() { <-nw.lock }

// resource adds a resource of capacity bytes per second and returns it.
func (nw *network) resource(capacity float64) int {
	nw.caps = append(nw.caps, capacity)
	nw.users = append(nw.users, nil)
	return len(nw.caps) - 1
}

// add starts a flow of size bytes across res; k, of kind kindFlow, names
// the event that tells its end.
func (nw *network) add(k key, size int64, res ...int) *flow {
	nw.enter()
	defer nw.leave()
	nw.advance()
	f := &flow{key: k, res: res, pos: make([]int, len(res)), size: float64(size), left: float64(size), done: make(chan struct{})}
	for i, r := range res {
		f.pos[i] = len(nw.users[r])
		nw.users[r] = append(nw.users[r], f)
	}
	f.at = len(nw.flows)
	nw.flows = append(nw.flows, f)
	nw.pair(f, true)
	nw.dirty, nw.filled = true, false
	// A goroutine its own timer woke (the seeder's paced origin fetch)
	// adds flows while the driver sleeps: it must wake to set their rates.
	nw.q.poke()
	return f
}

// cancel ends f, if still active, with err.
func (nw *network) cancel(f *flow, err error) {
	nw.enter()
	defer nw.leave()
	if f.at < 0 {
		return
	}
	nw.advance()
	nw.end(f, err)
}

// sent is how many bytes of f went through.
func (f *flow) sent() int64 { return int64(math.Round(f.size - max(f.left, 0))) }

func (nw *network) end(f *flow, err error) {
	for i, r := range f.res {
		us := nw.users[r]
		last := us[len(us)-1]
		us[f.pos[i]] = last
		for j, lr := range last.res {
			if lr == r {
				last.pos[j] = f.pos[i]
			}
		}
		nw.users[r] = us[:len(us)-1]
	}
	last := nw.flows[len(nw.flows)-1]
	nw.flows[f.at] = last
	last.at = f.at
	nw.flows = nw.flows[:len(nw.flows)-1]
	nw.pair(f, false)
	f.at = -1
	f.err = err
	nw.dirty, nw.filled = true, false
	// Flows of one instant end in the order of their keys, one event
	// each: the goroutines they wake must not race each other.
	nw.q.push(time.Now(), f.key, func() { close(f.done) })
}

// advance moves every flow's bytes on to now at its rate.
func (nw *network) advance() {
	now := time.Now()
	nw.tr.advance(nw.flows, nw.last, now)
	dt := now.Sub(nw.last).Seconds()
	nw.last = now
	if dt <= 0 {
		return
	}
	for _, f := range nw.flows {
		f.left -= f.rate * dt
	}
}

// settle, called by the driver once the events of an instant are all
// delivered and the code is blocked, recomputes the rates if flows came or
// went and schedules the next completion.
func (nw *network) settle() {
	nw.enter()
	defer nw.leave()
	if !nw.dirty {
		return
	}
	nw.dirty = false
	nw.advance()
	if !nw.filled { // else the same flows' rates, set at this instant
		nw.fill()
	}
	nw.filled = false
	next := math.Inf(1)
	for _, f := range nw.flows {
		if f.rate > 0 {
			next = min(next, max(f.left, 0)/f.rate)
		}
	}
	nw.gen++
	if math.IsInf(next, 1) {
		return
	}
	at := nw.last.Add(time.Duration(math.Ceil(next * 1e9)))
	if nw.quantum > 0 {
		// Up to a grid laid from the start: when the rates were last set
		// does not move the completions.
		since := at.Sub(nw.start)
		at = nw.start.Add((since + nw.quantum - 1) / nw.quantum * nw.quantum)
	}
	gen := nw.gen
	nw.q.push(at, key{kind: kindNet}, func() { nw.complete(gen) })
}

// complete ends the flows that are through, if gen is still current.
func (nw *network) complete(gen uint64) {
	nw.enter()
	defer nw.leave()
	if gen != nw.gen {
		return
	}
	nw.advance()
	var through []*flow
	for _, f := range nw.flows {
		// Within a nanosecond of done, or a byte: the rounding of times.
		if f.left <= 1 || (f.rate > 0 && f.left/f.rate < 1e-9) {
			through = append(through, f)
		}
	}
	for _, f := range through {
		f.left = 0
		nw.end(f, nil)
	}
	nw.dirty, nw.filled = true, false // the next completion, even if none was through
}

// fill sets max-min fair rates by progressive filling: the resource whose
// fair share is smallest fixes the rate of its flows, which then use up
// their share of the other resources they cross; and so on. The result
// does not depend on the order of the flows.
func (nw *network) fill() {
	k := len(nw.caps)
	if cap(nw.rem) < k {
		nw.rem, nw.cnt, nw.hits = make([]float64, k), make([]int, k), make([]int, k)
	}
	rem, cnt, hits := nw.rem[:k], nw.cnt[:k], nw.hits[:k]
	copy(rem, nw.caps)
	h := nw.heap[:0]
	for r, us := range nw.users {
		cnt[r] = len(us)
		if cnt[r] > 0 {
			h = append(h, share{v: rem[r] / float64(cnt[r]), r: r, cnt: cnt[r]})
		}
	}
	for _, f := range nw.flows {
		f.fixed, f.rate = false, 0
	}
	h.init()
	touched := nw.touched[:0]
	for len(h) > 0 {
		s := h.pop()
		if cnt[s.r] != s.cnt || cnt[s.r] == 0 {
			continue // stale
		}
		v := max(s.v, 0)
		touched = touched[:0]
		for _, f := range nw.users[s.r] {
			if f.fixed {
				continue
			}
			f.fixed, f.rate = true, v
			for _, r := range f.res {
				if hits[r] == 0 {
					touched = append(touched, r)
				}
				hits[r]++
			}
		}
		// Each resource's share is taken in one subtraction, whatever
		// the order of its flows.
		for _, r := range touched {
			rem[r] -= v * float64(hits[r])
			cnt[r] -= hits[r]
			hits[r] = 0
			if cnt[r] > 0 {
				h.push(share{v: rem[r] / float64(cnt[r]), r: r, cnt: cnt[r]})
			}
		}
	}
	nw.heap, nw.touched = h, touched
}

type share struct {
	v   float64
	r   int
	cnt int
}

type shares []share // a heap (heap.go)
