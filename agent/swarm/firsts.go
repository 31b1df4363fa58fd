package swarm

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// firsts is the seeder's record of the first copies of pieces (of any
// blob) each peer got from it, so that it spreads them evenly over the
// peers asking: a peer gets a first copy only while it got at most
// firstSlack more than the peer asking that got the fewest. Every agent
// asks for the pieces only the seeder holds, and the first request to
// arrive would win each: in simulation (deploy/sim, 20 agents, equal
// links) one agent got every piece, and the others then waited on its
// one upload link for all of them. Spread evenly, each agent holds its
// share of the new pieces and its upload carries them to the others, as
// in the bound's schedule.
type firsts struct {
	mu    sync.Mutex
	peers map[peer.ID]*asker
}

type asker struct {
	got   int       // first copies granted
	asked time.Time // the latest request for a first copy
}

const (
	// firstSlack is how many first copies a peer may be ahead of the
	// asker with the fewest.
	firstSlack = 1
	// firstWindow is how long a peer counts as asking after its latest
	// request for a first copy; one silent for longer is forgotten.
	firstWindow = seedIdle
)

// note records that p asked the seeder for a piece now: it counts among
// the peers the first copies are spread over. A peer new to the record
// starts at the fewest of those asking: it takes its share from now on,
// not every piece until it caught up.
func (f *firsts) note(p peer.ID, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.peers[p]
	if a == nil || now.Sub(a.asked) > firstWindow {
		low, _ := f.low(p, now)
		a = &asker{got: low}
		if f.peers == nil {
			f.peers = make(map[peer.ID]*asker)
		}
		f.peers[p] = a
	}
	a.asked = now
}

// grant tells whether p, which asked now (note), may have a first copy
// of a piece, and counts it if so.
func (f *firsts) grant(p peer.ID, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.peers[p]
	if a == nil {
		return true
	}
	if low, any := f.low(p, now); any && a.got > low+firstSlack {
		return false
	}
	a.got++
	return true
}

// low is the fewest first copies a peer but p asking within firstWindow
// got; any is false if none is. It forgets the peers silent for longer.
func (f *firsts) low(p peer.ID, now time.Time) (low int, any bool) {
	for id, a := range f.peers {
		switch {
		case now.Sub(a.asked) > firstWindow:
			delete(f.peers, id)
		case id == p:
		case !any || a.got < low:
			low, any = a.got, true
		}
	}
	return low, any
}
