package swarm

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/tracker"
)

// seederLate is a tracker whose handouts name the seeder only from the
// late-th ask on, recording when each ask came.
type seederLate struct {
	*fakeTracker
	clk    clock.Clock
	seeder tracker.Peer
	late   int

	mu   sync.Mutex
	asks []time.Time
}

func (f *seederLate) Peers(context.Context, digest.Digest, string) ([]tracker.Peer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asks = append(f.asks, f.clk.Now())
	if len(f.asks) >= f.late {
		return append([]tracker.Peer{f.seeder}, f.peers...), nil
	}
	return f.peers, nil
}

func (f *seederLate) asked() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.asks...)
}

// Until a handout names the seeder, a session asks the tracker again soon,
// from a few of the tracker's round trips (firstSoon; at least a
// millisecond) doubling, not every PeersRefresh: the seeder is listed
// once its first piece is in, and a session that waited PeersRefresh would
// leave every piece only the seeder has to the others that long. Once it is
// named, the session asks every PeersRefresh again.
func TestPeersSoonUntilSeeder(t *testing.T) {
	t.Parallel()
	r := newRig(t, 4, nil, func(peer.ID, int) error { return errHang }, nil)
	tr := &seederLate{fakeTracker: &fakeTracker{info: r.info, peers: []tracker.Peer{randomPeer(t, false)}}, clk: r.clk, seeder: randomPeer(t, true), late: 5}
	s, err := New(DefaultConfig(), tr, r.tp, r.st, randomPeer(t, false), WithClock(r.clk))
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
	ctx, cancel := context.WithCancel(t.Context())
	_, done := r.fill(ctx, func(context.Context, store.Writer) error { return errors.New("no origin here") })
	start := r.clk.Now()
	if !r.advanceUntil(time.Millisecond, 10000, func() bool { return len(tr.asked()) >= 6 }) {
		t.Fatalf("%d asks for peers in 10 s of virtual time, want 6", len(tr.asked()))
	}
	cancel()
	wait(t, done)
	asks := tr.asked()
	// The fake answers at once: without the seeder, 1, 2, 4, 8 ms; then
	// PeersRefresh.
	const ms = time.Millisecond
	want := []time.Duration{ms, 2 * ms, 4 * ms, 8 * ms, 2 * time.Second}
	for i, w := range want {
		if gap := asks[i+1].Sub(asks[i]); gap < w {
			t.Errorf("ask %d came %s after the one before, want at least %s", i+1, gap, w)
		}
	}
	// With a fixed first wait of busyBackoff, the fifth ask would have
	// come 1.5 s after the start.
	if took := asks[4].Sub(start); took >= busyBackoff {
		t.Errorf("the fifth ask came %s after the start, want within busyBackoff", took)
	}
}
