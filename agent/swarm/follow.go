package swarm

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// followMetaInfo long-polls the tracker while piece hashes are still
// arriving from the seeder, starting from info, the session's first
// metainfo. While the tracker fails, it asks the peers the session follows
// for the hashes after those it knows, and takes only an answer that keeps
// every one of them. It is the only poster of info events, and it records
// each metainfo it posts for the peers that ask this node (Swarm.Meta).
func (ss *session) followMetaInfo(ctx context.Context, info *piece.Info) {
	ss.b.setInfo(info)
	for len(info.Pieces) < ss.count {
		next, err := ss.s.tr.MetaInfoAfter(ctx, ss.src, info)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			ss.s.log.Debug("metainfo poll failed, asking peers", "digest", ss.src.Digest, "err", err)
			if next = ss.moreMeta(ctx, info); next == nil {
				if !ss.sleep(ctx, time.Second) {
					return
				}
				continue
			}
		}
		// An answer of the tracker that contradicts what peers said fails
		// the session (grow checks): the tracker's word is the seeder's.
		if len(next.Pieces) > len(info.Pieces) {
			info = next
			ss.b.setInfo(info)
			ss.post(event{info: info})
		}
	}
}

// followPeers asks the tracker for peers now and then: every PeersRefresh
// while handouts are sparse or bring peers it has not seen, less often (up
// to 8 times that) while they are full and bring none, so a settled swarm
// does not poll its tracker. A sparse handout (a swarm still forming, or
// just the seeder) is asked again soon: a session that waited long with a
// handful of peers would starve. While the tracker fails, the handout comes
// from peers instead (exchange), at the same pace.
func (ss *session) followPeers(ctx context.Context) {
	seen := make(map[string]bool)
	every := ss.s.cfg.PeersRefresh
	// Until a handout names the seeder, the session asks again soon,
	// doubling from busyBackoff up to PeersRefresh: the seeder announces
	// a blob once its first piece is in from the origin, and a session
	// whose first handout came before that would otherwise leave the
	// pieces that enter the swarm through the seeder to others for a
	// whole PeersRefresh.
	seeded, soon := false, time.Duration(0)
	for {
		tctx, cancel := ss.s.clock.WithTimeout(ctx, trackerTimeout)
		asked := ss.s.clock.Now()
		peers, err := ss.s.tr.Peers(tctx, ss.src.Digest, ss.s.self.ID)
		cancel()
		if soon == 0 {
			soon = firstSoon(ss.s.clock.Since(asked))
		}
		if ctx.Err() != nil {
			return
		}
		exchanged := err != nil
		if exchanged {
			ss.s.log.Debug("peer handout failed, asking peers", "digest", ss.src.Digest, "err", err)
			if peers = ss.exchange(ctx); ctx.Err() != nil {
				return
			}
		}
		fresh := 0
		for _, p := range peers {
			if !seen[p.ID] {
				seen[p.ID] = true
				fresh++
			}
		}
		if exchanged {
			ss.s.pex.m.learned.Add(float64(fresh))
		}
		if !exchanged && slices.ContainsFunc(peers, func(p tracker.Peer) bool { return p.Seeder }) {
			seeded = true
		}
		switch {
		case !seeded && !exchanged:
			every, soon = soon, min(2*soon, ss.s.cfg.PeersRefresh)
		case fresh > 0 || len(peers) < min(ss.s.cfg.MaxPeers, denseHandout):
			every = ss.s.cfg.PeersRefresh
		default:
			every = min(2*every, 8*ss.s.cfg.PeersRefresh)
		}
		if len(peers) > 0 {
			ss.post(event{peers: peers})
		}
		if !ss.sleep(ctx, every) {
			return
		}
	}
}

// firstSoon is how long a session waits before it asks the tracker for
// peers again while no handout named the seeder, after a first answer
// that took took: soonRounds of those round trips, at least a
// millisecond, at most busyBackoff. The seeder is listed once its first
// piece is in from the origin, a piece time or so after the rollout
// starts; a session that waits longer leaves the pieces only the seeder
// has to others meanwhile, and the seeder's link, the rollout's bound,
// half idle (in simulation, 20 agents at 20 MB/s: a quarter of its link
// for the first 0.15 s with a fixed busyBackoff). The wait doubles after
// each ask, so a slow or loaded tracker is asked less often.
func firstSoon(took time.Duration) time.Duration {
	return min(max(soonRounds*took, time.Millisecond), busyBackoff)
}

// soonRounds is how many tracker round trips firstSoon waits.
const soonRounds = 4

// meet starts following the peers of a handout it does not follow yet.
func (ss *session) meet(handout []tracker.Peer, bg *sync.WaitGroup) {
	for _, tp := range handout {
		// The seeder may hold pieces nobody else has yet: it is always
		// followed, whatever else is.
		if len(ss.peers) >= ss.s.cfg.MaxPeers && !tp.Seeder {
			continue
		}
		ai, err := addrInfo(tp)
		if err != nil {
			ss.s.log.Debug("bad peer in handout", "peer", tp.ID, "err", err)
			continue
		}
		if ss.peers[ai.ID] != nil || ss.banned[ai.ID] || tp.ID == ss.s.self.ID {
			continue
		}
		ctx, stop := context.WithCancel(ss.ctx)
		r := &remote{id: ai.ID, seeder: tp.Seeder, stop: stop}
		ss.add(r)
		bg.Go(func() { ss.watch(ctx, r, ai) })
	}
}

func addrInfo(p tracker.Peer) (peer.AddrInfo, error) {
	id, err := peer.Decode(p.ID)
	if err != nil {
		return peer.AddrInfo{}, err
	}
	ai := peer.AddrInfo{ID: id}
	for _, a := range p.Addrs {
		ma, err := multiaddr.NewMultiaddr(a)
		if err != nil {
			return peer.AddrInfo{}, err
		}
		ai.Addrs = append(ai.Addrs, ma)
	}
	return ai, nil
}

// watch connects to a peer and subscribes a watcher to what it holds. Its
// goroutine ends once the watch is open: what the peer announces from then
// on comes by the watcher's calls, without a goroutine per followed peer.
func (ss *session) watch(ctx context.Context, r *remote, ai peer.AddrInfo) {
	err := ss.s.tp.Connect(ctx, ai)
	if err != nil && ctx.Err() == nil {
		ss.s.pex.book.forget(ai.ID) // gone, or never there
	}
	if err == nil {
		err = ss.s.tp.Follow(ctx, ai.ID, ss.src.Digest, ss.count, &watcher{ss: ss, ctx: ctx, r: r, ai: ai})
	}
	if err != nil {
		if ctx.Err() == nil {
			ss.s.log.Debug("cannot follow peer", "peer", ai.ID, "digest", ss.src.Digest, "err", err)
		}
		ss.post(event{from: ai.ID, r: r, gone: true})
	}
}

// watcher relays one following of a peer to the session's loop, as events
// of r: its bitfield, each HAVE, the end of the watch.
type watcher struct {
	ss  *session
	ctx context.Context // the following's: it outlives the watch of a complete peer
	r   *remote
	ai  peer.AddrInfo
}

var _ p2p.Watcher = (*watcher)(nil)

func (w *watcher) Bits(bits *piece.Bitfield) {
	ss, ai := w.ss, w.ai
	// Peers that ask this node about the blob hear of ai while it is
	// followed (until the session drops it or ends), and the book
	// remembers it for later downloads.
	ss.b.follow(ai)
	context.AfterFunc(w.ctx, func() { ss.b.unfollow(ai.ID) })
	ss.s.remember(ai, ss.src.Digest, true, ss.s.clock.Now())
	ss.b.heard(ai.ID, bits, -1)
	ss.post(event{from: ai.ID, r: w.r, bits: bits})
}

func (w *watcher) Have(n int) {
	w.ss.b.heard(w.ai.ID, nil, n)
	w.ss.post(event{from: w.ai.ID, r: w.r, have: n})
}

func (w *watcher) Ended() { w.ss.post(event{from: w.ai.ID, r: w.r, ended: true}) }

// denseHandout is the handout size from which an unchanged handout makes
// a session ask the tracker less often.
const denseHandout = 8

// sleep waits d on the swarm's clock; false if ctx ended first.
func (ss *session) sleep(ctx context.Context, d time.Duration) bool {
	t := ss.s.clock.Timer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
