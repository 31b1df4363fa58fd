package sim

import (
	"sync"
	"time"
)

// Event kinds, in the order events of one instant are delivered.
const (
	kindNet     = iota // flows complete
	kindFlow           // the goroutine waiting on a flow that ended learns it
	kindTracker        // a call reaches the tracker
	kindReply          // an answer reaches its caller
	kindArrive         // a peer request reaches its server
	kindHave           // a HAVE or a watch's end reaches its watcher
	kindCancel         // a cancelled transfer's reset reaches its server
	kindAbort          // a cancelled request returns to its session
	kindNode           // a node starts or leaves
)

// key orders the events of one instant by what they are, not by when they
// were pushed: goroutines woken at the same instant push in any order.
type key struct {
	kind       int
	a, b       int // nodes
	blob, item int // layer, piece or call
}

func (k key) less(o key) bool {
	switch {
	case k.kind != o.kind:
		return k.kind < o.kind
	case k.a != o.a:
		return k.a < o.a
	case k.b != o.b:
		return k.b < o.b
	case k.blob != o.blob:
		return k.blob < o.blob
	}
	return k.item < o.item
}

type event struct {
	at  time.Time
	ns  int64 // at, in Unix nanoseconds: the heap's order
	key key
	seq uint64 // last resort: push order
	fn  func()
}

type events []*event // a heap (heap.go)

// queue is the simulation's one queue of events. Goroutines of the code
// under test push; only the driver pops.
type queue struct {
	mu    sync.Mutex
	q     events
	seq   uint64
	wake  chan struct{}        // the driver waits on it for events earlier than it sleeps to
	count uint64               // events delivered
	kinds [kindNode + 1]uint64 // by kind
	trace uint64               // a hash of every event delivered, when and what
}

func newQueue() *queue { return &queue{wake: make(chan struct{}, 1), trace: 14695981039346656037} }

// push schedules fn at at (not before now).
func (q *queue) push(at time.Time, k key, fn func()) {
	if now := time.Now(); at.Before(now) {
		at = now
	}
	q.mu.Lock()
	q.seq++
	q.q.push(&event{at: at, ns: at.UnixNano(), key: k, seq: q.seq, fn: fn})
	q.mu.Unlock()
	q.poke()
}

// poke wakes the driver if it sleeps.
func (q *queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// after schedules fn d from now.
func (q *queue) after(d time.Duration, k key, fn func()) { q.push(time.Now().Add(d), k, fn) }

func (q *queue) peek() (*event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.q) == 0 {
		return nil, false
	}
	return q.q[0], true
}

func (q *queue) pop() *event {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.count++
	e := q.q.pop()
	q.kinds[e.key.kind]++
	for _, v := range [...]int64{e.ns, int64(e.key.kind), int64(e.key.a), int64(e.key.b), int64(e.key.blob), int64(e.key.item)} {
		q.trace = (q.trace ^ uint64(v)) * 1099511628211 // FNV-1a, a word at a time
	}
	return e
}
