package swarm

import (
	"hash/fnv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoal-dev/shoal/tracker"
)

// Zones. A node with a zone (the Zone of self as New is given it, which
// is how the tracker hands the node out; tracker.ValidateZone) fetches
// from the agents of its zone first and asks agents of other zones only
// for pieces that no agent of its zone it follows holds, so that a piece
// crosses into a zone about once, through one of its agents, and spreads
// inside it from there. Of the agents of its zone it follows that lack
// such a piece, only the one that ranks first for it (by a hash of the
// blob, the piece and the peer ID) asks at once; the others wait up to
// zoneWait for it to arrive (they cannot see each other's requests). No
// endgame duplicate crosses zones. The tracker's handout to such a node
// names mostly peers of its zone and a few of others
// (tracker/server/zone.go). A peer whose zone no handout named (met
// through peer exchange) counts as another zone's. Without a zone, nothing
// here applies.

// zoneWait is how long an agent that does not rank first for a piece
// waits for it to arrive in its zone before it asks another zone itself:
// the one that ranks first may follow no holder of it, or be busy.
const zoneWait = 3 * time.Second

// zoneState is a session's knowledge of zones; only the loop touches it.
type zoneState struct {
	of    map[peer.ID]zonePeer // the peers handouts named
	self  uint64               // this node's rank key
	since []time.Time          // when each piece was first passed over for the zone's first
}

type zonePeer struct {
	zone string
	key  uint64 // rank key: hash of the blob and the peer ID
}

// learn notes the zones a handout names.
func (z *zoneState) learn(ss *session, handout []tracker.Peer) {
	if ss.s.self.Zone == "" {
		return
	}
	if z.of == nil {
		z.of = make(map[peer.ID]zonePeer)
		z.self = rankKey(ss, ss.s.self.ID)
		z.since = make([]time.Time, ss.count)
	}
	for _, tp := range handout {
		id, err := peer.Decode(tp.ID)
		if err != nil {
			continue
		}
		if p, ok := z.of[id]; !ok || p.zone != tp.Zone {
			z.of[id] = zonePeer{zone: tp.Zone, key: rankKey(ss, tp.ID)}
		}
	}
}

func rankKey(ss *session, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(ss.src.Digest))
	h.Write([]byte(id))
	return h.Sum64()
}

// rank is the place of key's holder for piece n: lowest first.
func rank(key uint64, n int) uint64 {
	x := key ^ (uint64(n)+1)*0x9e3779b97f4a7c15 // splitmix64's finalizer
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// byZone moves the agents of this node's zone to the front of agents and
// returns how many there are: all of them without a zone.
func (ss *session) byZone(agents []*remote) int {
	if ss.s.self.Zone == "" {
		return len(agents)
	}
	i := 0
	for j, r := range agents {
		if ss.zone.of[r.id].zone == ss.s.self.Zone {
			agents[i], agents[j] = agents[j], agents[i]
			i++
		}
	}
	return i
}

// pickAcross fills the free request slots of others, the agents of other
// zones, with pieces no agent of local (this zone's) holds, as far as they
// announced, and that this node ranks first for among local or has waited
// zoneWait for (mayCross). A piece the picker offers that does not
// qualify is skipped for that agent until the fill ends; at most
// maxCrossSkips are, per agent and fill, which bounds its cost.
func (ss *session) pickAcross(others, local []*remote, now time.Time, bg *sync.WaitGroup) {
	for _, r := range others {
		if !r.skipped.IsZero() {
			continue // it rationed pieces: its skips are the ration's (agents never do)
		}
		skips := 0
		for r.inflight < ss.perPeer(r) && ss.toAgents() < ss.window() && !now.Before(r.busyTill) {
			n, ok := ss.pick.Pick(string(r.id))
			if !ok {
				break
			}
			if ss.mayCross(local, n, now) {
				ss.start(r, n, bg)
				continue
			}
			ss.pick.Cancel(n, string(r.id))
			ss.pick.Skip(n, string(r.id))
			if skips++; skips >= maxCrossSkips {
				break
			}
		}
		if skips > 0 {
			ss.pick.ClearSkips(string(r.id))
		}
	}
}

// maxCrossSkips bounds the pieces pickAcross passes over per agent and fill.
const maxCrossSkips = 8

// mayCross reports whether piece n may be asked of another zone: it is
// not in flight already (an endgame duplicate: cut duplicates cost the
// zones' uplinks 0.9 images per zone in simulation, 10 zones of 20), none of local announced it, and this node ranks first for
// it among them or has waited zoneWait since it first did not.
func (ss *session) mayCross(local []*remote, n int, now time.Time) bool {
	for req := range ss.flight {
		if req.n == n {
			return false
		}
	}
	mine := rank(ss.zone.self, n)
	first := true
	ss.b.mu.Lock()
	for _, r := range local {
		if bf := ss.b.theirs[r.id]; bf != nil && bf.Has(n) {
			ss.b.mu.Unlock()
			return false
		}
		if rank(ss.zone.of[r.id].key, n) < mine {
			first = false
		}
	}
	ss.b.mu.Unlock()
	if first || n >= len(ss.zone.since) {
		return true
	}
	if ss.zone.since[n].IsZero() {
		ss.zone.since[n] = now
	}
	return now.Sub(ss.zone.since[n]) >= zoneWait
}
