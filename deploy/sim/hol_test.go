package sim

import (
	"testing"
	"testing/synctest"
	"time"
)

// holNet is three hosts at 5 MB/s each way, 1 ms to the core, and the
// network between them.
func holNet(window int64) (*Sim, []*node) {
	q := newQueue()
	s := &Sim{cfg: Config{Window: window}, q: q, net: newNetwork(q, 100*time.Microsecond), start: time.Now()}
	var ns []*node
	for i := range 3 {
		n := &node{sim: s, id: i, lat: time.Millisecond}
		n.up, n.down = s.net.resource(5*MB), s.net.resource(5*MB)
		ns = append(ns, n)
	}
	return s, ns
}

// A message behind a piece on its link arrives later than one on an idle
// link, by the window's worth of the piece at the flow's rate (on the 1 ms
// grid); measuring it sets no different rates than settle would, so the
// run goes on the same.
func TestHOLBehindPiece(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const window = 512 << 10
		s, ns := holNet(window)
		ref, rns := holNet(window)
		for _, x := range []struct {
			s  *Sim
			ns []*node
		}{{s, ns}, {ref, rns}} {
			x.s.net.add(key{kindFlow, 0, 1, 0, 0}, 1<<20, x.ns[0].up, x.ns[1].down)
		}
		now := time.Now()
		busy, idle := s.arrival(ns[0], ns[1]), s.arrival(ns[0], ns[2])
		if want := now.Add(time.Millisecond); !idle.Equal(want) {
			t.Errorf("idle link: arrives %s after sending, want %s", idle.Sub(now), want.Sub(now))
		}
		wait := time.Duration(float64(window) / (5 * MB) * 1e9)
		if want := now.Add(time.Millisecond + wait).Truncate(holGrid).Add(holGrid); !busy.Equal(want) {
			t.Errorf("behind a piece: arrives %s after sending, want %s", busy.Sub(now), want.Sub(now))
		}
		if back := s.arrival(ns[1], ns[0]); !back.Equal(idle) {
			t.Errorf("the other way: arrives %s after sending, want %s (no piece goes that way)", back.Sub(now), idle.Sub(now))
		}
		s.net.settle()
		ref.net.settle()
		a, _ := s.q.peek()
		b, _ := ref.q.peek()
		if !a.at.Equal(b.at) || s.net.flows[0].rate != ref.net.flows[0].rate {
			t.Errorf("measured: completion at %s, rate %g; not measured: %s, %g", a.at.Sub(now), s.net.flows[0].rate, b.at.Sub(now), ref.net.flows[0].rate)
		}
	})
}

// What one watch carries never arrives before what it carried earlier,
// though the piece it waited behind is gone; a reset does not wait.
func TestHOLWatchInOrder(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s, ns := holNet(1 << 20)
		sb := &sub{from: ns[0], to: ns[1]}
		f := s.net.add(key{kindFlow, 0, 1, 0, 0}, 1<<20, ns[0].up, ns[1].down)
		s.net.settle()
		first := s.haveAt(sb, true)
		if least := time.Now().Add(200 * time.Millisecond); first.Before(least) {
			t.Fatalf("a HAVE behind a MiB at 5 MB/s arrives %s after sending", time.Until(first))
		}
		time.Sleep(10 * time.Millisecond)
		s.net.cancel(f, errCancelled)
		s.net.settle()
		if idle := s.arrival(ns[0], ns[1]); !idle.Equal(time.Now().Add(time.Millisecond)) {
			t.Fatalf("after the piece: arrival %s after sending, want the latency", time.Until(idle))
		}
		if next := s.haveAt(sb, true); !next.Equal(first) {
			t.Errorf("the next HAVE arrives %s after the first, want with it", next.Sub(first))
		}
		time.Sleep(time.Second)
		if end := s.haveAt(sb, false); !end.Equal(time.Now().Add(time.Millisecond)) {
			t.Errorf("a reset arrives %s after sending, want the latency", time.Until(end))
		}
	})
}
