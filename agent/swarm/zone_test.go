package swarm

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// TestScheduleZones: a session of zone a asks the agent of its zone for
// what it holds and an agent of zone b only for the rest; of those pieces,
// at once only the ones it ranks first for among the agents of its zone
// it follows, the others once they have waited zoneWait (the first in
// rank may be fetching them already). The seeder is asked for nothing
// agents hold, and no endgame duplicate crosses zones.
func TestScheduleZones(t *testing.T) {
	t.Parallel()
	info := trackertest.InfoFor(make([]byte, 12<<10), 1<<10) // 12 pieces
	tp := &asked{got: make(map[peer.ID][]int)}
	cfg := DefaultConfig()
	cfg.PerPeer, cfg.MaxInFlight, cfg.NodeInFlight = 16, 16, 0
	clk := clock.NewMock()
	s := &Swarm{cfg: cfg, tp: tp, clock: clk, self: randomPeer(t, false)}
	s.self.Zone = "a"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ss := testSession(ctx, s, info)
	ss.b = &blob{theirs: make(map[peer.ID]*piece.Bitfield)}
	// A local agent for which this node ranks first for some of pieces
	// 4..11 and not for others (random peer IDs: almost always at once).
	all := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	var local tracker.Peer
	var first, later []int
	for len(first) == 0 || len(later) == 0 {
		local, first, later = randomPeer(t, false), nil, nil
		me, them := rankKey(ss, s.self.ID), rankKey(ss, local.ID)
		for _, n := range all[4:] {
			if rank(me, n) < rank(them, n) {
				first = append(first, n)
			} else {
				later = append(later, n)
			}
		}
	}
	other, seeder := randomPeer(t, false), randomPeer(t, true)
	local.Zone, other.Zone = "a", "b"
	ss.zone.learn(ss, []tracker.Peer{local, other, seeder})
	has := func(tp tracker.Peer, seeder bool, pieces ...int) peer.ID {
		id, err := peer.Decode(tp.ID)
		if err != nil {
			t.Fatal(err)
		}
		ss.add(&remote{id: id, seeder: seeder})
		bits := piece.NewBitfield(info.Count())
		for _, n := range pieces {
			ss.pick.PeerHas(string(id), n)
			bits.Set(n)
		}
		ss.b.theirs[id] = bits
		return id
	}
	lid := has(local, false, 0, 1, 2, 3)
	oid := has(other, false, all...)
	sid := has(seeder, true, all...)
	var bg sync.WaitGroup
	defer bg.Wait()
	schedule := func() map[peer.ID][]int {
		ss.schedule(&bg)
		// The fetches start in goroutines: wait until each has asked.
		for deadline := time.Now().Add(10 * time.Second); ; {
			tp.mu.Lock()
			n := 0
			for _, ns := range tp.got {
				n += len(ns)
			}
			got := make(map[peer.ID][]int)
			for id, ns := range tp.got {
				got[id] = slices.Sorted(slices.Values(ns))
			}
			tp.mu.Unlock()
			if n == len(ss.flight) || time.Now().After(deadline) {
				return got
			}
			time.Sleep(time.Millisecond)
		}
	}
	got := schedule()
	if !slices.Equal(got[lid], []int{0, 1, 2, 3}) || !slices.Equal(got[oid], first) || len(got[sid]) != 0 {
		t.Errorf("asked the local agent for %v, the other zone's for %v, the seeder for %v; want %v, %v and none",
			got[lid], got[oid], got[sid], []int{0, 1, 2, 3}, first)
	}
	clk.Add(zoneWait)
	got = schedule()
	if want := append(slices.Clone(first), later...); !slices.Equal(got[oid], slices.Sorted(slices.Values(want))) {
		t.Errorf("after %s, asked the other zone's agent for %v, want %v", zoneWait, got[oid], slices.Sorted(slices.Values(want)))
	}
	if !slices.Equal(got[lid], []int{0, 1, 2, 3}) || len(got[sid]) != 0 {
		t.Errorf("after %s, asked the local agent for %v and the seeder for %v; want [0 1 2 3] and none", zoneWait, got[lid], got[sid])
	}
	// Everything is in flight now: the endgame's duplicates are not asked
	// across zones, of a second agent of zone b either.
	other2 := randomPeer(t, false)
	other2.Zone = "b"
	ss.zone.learn(ss, []tracker.Peer{other2})
	o2id := has(other2, false, all...)
	if got = schedule(); len(got[o2id]) != 0 || len(got[sid]) != 0 {
		t.Errorf("with every piece in flight, asked a second agent of zone b for %v and the seeder for %v; want none", got[o2id], got[sid])
	}
	cancel()
}

// TestZoneLearn: a handout's zones are noted, a peer's changed zone too;
// without a zone of its own a session notes none and every agent is of
// its zone.
func TestZoneLearn(t *testing.T) {
	t.Parallel()
	a, b := randomPeer(t, false), randomPeer(t, false)
	a.Zone, b.Zone = "a", "b"
	ida, _ := peer.Decode(a.ID)
	idb, _ := peer.Decode(b.ID)
	session := func(zone string) *session {
		self := randomPeer(t, false)
		self.Zone = zone
		ss := &session{s: &Swarm{cfg: DefaultConfig(), self: self}, count: 4}
		ss.zone.learn(ss, []tracker.Peer{a, b})
		return ss
	}
	ss := session("a")
	rs := []*remote{{id: idb}, {id: ida}}
	if n := ss.byZone(rs); n != 1 || rs[0].id != ida {
		t.Errorf("%d agents of zone a first, %s first; want 1, %s", n, rs[0].id, ida)
	}
	b.Zone = "a"
	ss.zone.learn(ss, []tracker.Peer{b})
	if n := ss.byZone(rs); n != 2 {
		t.Errorf("%d agents of zone a after b moved there, want 2", n)
	}
	ss = session("")
	if n := ss.byZone(rs); n != 2 || ss.zone.of != nil {
		t.Errorf("without a zone: %d agents of its zone (want 2), zones noted %v (want none)", n, ss.zone.of)
	}
}
