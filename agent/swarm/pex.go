package swarm

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// Surviving the tracker. Nodes tell each other, over /shoal/meta, what the
// tracker would: a blob's metainfo and who holds or fetches it. While the
// tracker answers, nothing here is asked; once it fails,
//
//   - a session's peer handout comes from the peers it follows (peer
//     exchange) and from the peers this node met for the blob (followPeers);
//   - a session whose metainfo is incomplete asks the peers it follows for
//     the piece CIDs that follow those it knows (followMetaInfo);
//   - the first metainfo of a blob (Swarm.MetaInfo) comes from peers this
//     node met recently, for any blob: in a rollout they pull the same image.
//
// What a peer says is its word only: a metainfo it gives must have the shape
// the session knows and keep every CID known, and every piece is still
// checked against its CID, the whole blob against its digest.

// metaTransport is the optional part of a Transport that asks a peer what
// it knows of a blob: *p2p.Host speaks /shoal/meta. Without it a swarm
// depends on its tracker as before.
type metaTransport interface {
	Meta(ctx context.Context, p peer.ID, dgst digest.Digest, known []cid.Cid) (*piece.Info, []peer.AddrInfo, error)
}

var (
	_ p2p.MetaSource = (*Swarm)(nil)
	_ metaTransport  = (*p2p.Host)(nil)
)

const (
	// trackerTimeout bounds a question to the tracker that it answers at
	// once (peers, a first metainfo): a tracker cut off by the network
	// would otherwise hold it for the dial timeout, 30 s, before the peers
	// are asked instead. Metainfo long-polls are not bounded.
	trackerTimeout = 10 * time.Second
	// exchangeFanout is how many followed peers a session asks per round.
	exchangeFanout = 4
	// askRecent is how many recently met peers MetaInfo asks at once.
	askRecent = 8
	// metaTimeout bounds one round of meta requests.
	metaTimeout = 5 * time.Second
	// maxMetaPeers is as many peers as one meta answer carries.
	maxMetaPeers = 32
	// maxBook bounds the peers the book remembers, maxBookBlobs the blobs
	// it remembers each was met for.
	maxBook      = 256
	maxBookBlobs = 16
	// maxHashed bounds the metainfos of committed blobs kept for answers.
	maxHashed = 64
)

// pex is the swarm's state for surviving its tracker.
type pex struct {
	book   book
	hashed metaCache
	m      pexMetrics
}

type pexMetrics struct {
	learned  prometheus.Counter
	metainfo *prometheus.CounterVec
}

func newPex(r prometheus.Registerer) *pex {
	p := &pex{m: pexMetrics{
		learned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_swarm_peers_exchanged_total",
			Help: "Peers new to a download learned from other peers while the tracker could not hand any out.",
		}),
		metainfo: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_swarm_metainfo_from_peers_total",
			Help: "Metainfo taken from peers while the tracker could not answer: first (a download's start) or more (piece CIDs it lacked).",
		}, []string{"kind"}),
	}}
	r.MustRegister(p.m.learned, p.m.metainfo)
	return p
}

// Meta implements p2p.MetaSource. For a blob this node is downloading it
// answers the metainfo its sessions know and the peers they follow, at the
// addresses they dialled; for a blob its store holds, the metainfo of the
// blob cut by the default policy, as the seeder cuts it (known from the
// download that brought it, or hashed from the store once), and the peers
// this node met for it.
func (s *Swarm) Meta(ctx context.Context, dgst digest.Digest) (*piece.Info, []peer.AddrInfo, error) {
	if b := s.lookup(dgst); b != nil {
		info, followed := b.known()
		if info == nil { // seeding, with no session: the shape only
			info = &piece.Info{Digest: dgst, Size: b.size, PieceSize: b.psize}
		}
		return info, s.pex.book.holders(dgst, followed, maxMetaPeers), nil
	}
	if _, err := s.store.Stat(ctx, dgst); err != nil {
		return nil, nil, p2p.ErrUnknownBlob
	}
	info, err := s.pex.hashed.get(ctx, dgst, s.hash)
	if err != nil {
		return nil, nil, err
	}
	return info, s.pex.book.holders(dgst, nil, maxMetaPeers), nil
}

// hash computes the metainfo of a committed blob from the store.
func (s *Swarm) hash(ctx context.Context, dgst digest.Digest) (*piece.Info, error) {
	r, err := s.store.OpenWritten(ctx, dgst)
	if err != nil {
		return nil, p2p.ErrUnknownBlob // evicted since
	}
	defer r.Close()
	size := r.Size()
	info := &piece.Info{Digest: dgst, Size: size, PieceSize: piece.SizeFor(size)}
	h := piece.NewHasher(info.PieceSize, func(_ int, c cid.Cid) { info.Pieces = append(info.Pieces, c) })
	if _, err := io.CopyBuffer(h, ctxReader{ctx, io.NewSectionReader(r, 0, size)}, make([]byte, 256<<10)); err != nil {
		return nil, err
	}
	h.Close()
	if err := info.Validate(); err != nil || !info.Complete() {
		return nil, fmt.Errorf("swarm: hashing %s: %d of %d pieces, %v", dgst, len(info.Pieces), info.Count(), err)
	}
	return info, nil
}

// committed keeps the metainfo of a blob its download verified piece by
// piece: every CID matched the bytes, and the bytes matched the digest, so
// no hashing is needed to answer for it. A blob that came (in part) from
// the origin fallback is hashed if asked for.
func (s *Swarm) committed(b *blob) {
	b.mu.Lock()
	info, full := b.info, b.have.Full()
	b.mu.Unlock()
	if full && info != nil && info.Complete() {
		s.pex.hashed.put(info)
	}
}

// ctxReader ends a read once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// answer is one peer's meta answer.
type answer struct {
	from  peer.AddrInfo
	info  *piece.Info
	peers []peer.AddrInfo
}

// ask asks targets at once what they know of dgst beyond known, for up to
// metaTimeout, and returns the valid answers. With enough it stops at the
// first answer enough accepts. Whoever answers is noted in the book as met
// for dgst, the peers they name as heard of; a peer that cannot be reached
// is forgotten.
func (s *Swarm) ask(ctx context.Context, dgst digest.Digest, targets []peer.AddrInfo, known []cid.Cid, enough func(*piece.Info) bool) []answer {
	mt, ok := s.tp.(metaTransport)
	if !ok || len(targets) == 0 {
		return nil
	}
	ctx, cancel := s.clock.WithTimeout(ctx, metaTimeout)
	defer cancel()
	var (
		mu  sync.Mutex
		out []answer
		wg  sync.WaitGroup
	)
	for _, ai := range targets {
		wg.Go(func() {
			if err := s.tp.Connect(ctx, ai); err != nil {
				if ctx.Err() == nil {
					s.pex.book.forget(ai.ID)
				}
				return
			}
			info, peers, err := mt.Meta(ctx, ai.ID, dgst, known)
			if err != nil {
				s.log.Debug("meta request failed", "peer", ai.ID, "digest", dgst, "err", err)
				return
			}
			if info.Digest != dgst || info.Validate() != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			out = append(out, answer{from: ai, info: info, peers: peers})
			if enough != nil && enough(info) {
				cancel()
			}
		})
	}
	wg.Wait()
	now := s.clock.Now()
	for _, a := range out {
		s.remember(a.from, dgst, true, now)
		for _, p := range a.peers {
			s.remember(p, dgst, false, now)
		}
	}
	return out
}

// remember notes a peer in the book, never this node itself.
func (s *Swarm) remember(ai peer.AddrInfo, dgst digest.Digest, met bool, now time.Time) {
	if ai.ID.String() != s.self.ID {
		s.pex.book.add(ai, dgst, met, now)
	}
}

// metaFromPeers is Swarm.MetaInfo's way when the tracker cannot answer: the
// peers this node met recently, those met for dgst first, are asked at
// once; the answer with the most piece CIDs wins (the first complete one
// ends the round). Nil if nobody knows the blob.
func (s *Swarm) metaFromPeers(ctx context.Context, dgst digest.Digest) *piece.Info {
	answers := s.ask(ctx, dgst, s.pex.book.recent(dgst, askRecent), nil, (*piece.Info).Complete)
	var best *piece.Info
	for _, a := range answers {
		if best == nil || len(a.info.Pieces) > len(best.Pieces) {
			best = a.info
		}
	}
	if best != nil {
		s.pex.m.metainfo.WithLabelValues("first").Inc()
		s.log.Info("tracker unavailable, metainfo from peers", "digest", dgst, "pieces", len(best.Pieces), "of", best.Count(), "answers", len(answers))
	}
	return best
}

// exchange is a session's handout while the tracker cannot give one: the
// peers that a few of the peers it follows name for the blob, and the
// peers this node met or heard of for it.
func (ss *session) exchange(ctx context.Context) []tracker.Peer {
	info, followed := ss.b.known()
	var known []cid.Cid
	if info != nil {
		known = info.Pieces // only the peers are wanted; CIDs beyond come along
	}
	rand.Shuffle(len(followed), func(i, j int) { followed[i], followed[j] = followed[j], followed[i] })
	var out []tracker.Peer
	for _, a := range ss.s.ask(ctx, ss.src.Digest, followed[:min(len(followed), exchangeFanout)], known, nil) {
		if ss.sameShape(a.info) {
			out = appendPeers(out, a.peers)
		}
	}
	return appendPeers(out, ss.s.pex.book.holders(ss.src.Digest, nil, ss.s.cfg.MaxPeers))
}

// moreMeta asks a few of the peers the session follows for the piece CIDs
// after those of info, and returns the longest answer that extends info,
// or nil.
func (ss *session) moreMeta(ctx context.Context, info *piece.Info) *piece.Info {
	_, followed := ss.b.known()
	rand.Shuffle(len(followed), func(i, j int) { followed[i], followed[j] = followed[j], followed[i] })
	var best *piece.Info
	for _, a := range ss.s.ask(ctx, ss.src.Digest, followed[:min(len(followed), exchangeFanout)], info.Pieces, (*piece.Info).Complete) {
		if extends(a.info, info) && (best == nil || len(a.info.Pieces) > len(best.Pieces)) {
			best = a.info
		}
	}
	if best != nil && len(best.Pieces) > len(info.Pieces) {
		ss.s.pex.m.metainfo.WithLabelValues("more").Inc()
		ss.s.log.Info("tracker unavailable, piece hashes from peers", "digest", info.Digest, "pieces", len(best.Pieces), "of", best.Count())
		return best
	}
	return nil
}

// sameShape tells whether info describes the blob this session downloads.
func (ss *session) sameShape(info *piece.Info) bool {
	return info.Digest == ss.src.Digest && info.Size == ss.b.size && info.PieceSize == ss.b.psize
}

// extends tells whether next has old's shape and keeps every CID of old.
func extends(next, old *piece.Info) bool {
	return next.Digest == old.Digest && next.Size == old.Size && next.PieceSize == old.PieceSize &&
		len(next.Pieces) >= len(old.Pieces) && slices.EqualFunc(next.Pieces[:len(old.Pieces)], old.Pieces, cid.Cid.Equals)
}

func appendPeers(out []tracker.Peer, ais []peer.AddrInfo) []tracker.Peer {
	for _, ai := range ais {
		tp := tracker.Peer{ID: ai.ID.String()}
		for _, a := range ai.Addrs {
			tp.Addrs = append(tp.Addrs, a.String())
		}
		out = append(out, tp)
	}
	return out
}

// followedPeer is a peer a session follows, at the addresses it dialled.
type followedPeer struct {
	ai peer.AddrInfo
	n  int // sessions following it (a sparse read runs its own)
}

// follow records that a session follows ai for this blob; unfollow undoes it.
func (b *blob) follow(ai peer.AddrInfo) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.followed == nil {
		b.followed = make(map[peer.ID]*followedPeer)
	}
	f := b.followed[ai.ID]
	if f == nil {
		f = &followedPeer{}
		b.followed[ai.ID] = f
	}
	f.ai = ai
	f.n++
}

func (b *blob) unfollow(id peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f := b.followed[id]; f != nil {
		if f.n--; f.n == 0 {
			delete(b.followed, id)
		}
	}
}

// setInfo records the metainfo a session knows, if it knows more than was
// recorded.
func (b *blob) setInfo(info *piece.Info) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.info == nil || len(info.Pieces) > len(b.info.Pieces) {
		b.info = info
	}
}

// known returns the recorded metainfo (nil: none) and the peers followed.
func (b *blob) known() (*piece.Info, []peer.AddrInfo) {
	b.mu.Lock()
	defer b.mu.Unlock()
	peers := make([]peer.AddrInfo, 0, len(b.followed))
	for _, f := range b.followed {
		peers = append(peers, f.ai)
	}
	return b.info, peers
}

// book remembers the peers this node met recently, across downloads: where
// it dialled them and for which blobs. Peers only heard of (named in a
// meta answer) are kept too, but they are evicted first and never replace
// an address this node dialled.
type book struct {
	mu    sync.Mutex
	peers map[peer.ID]*bookEntry
}

type bookEntry struct {
	ai    peer.AddrInfo
	at    time.Time
	met   bool
	blobs []digest.Digest // newest last, at most maxBookBlobs
}

func (bk *book) add(ai peer.AddrInfo, dgst digest.Digest, met bool, now time.Time) {
	if len(ai.Addrs) == 0 {
		return
	}
	bk.mu.Lock()
	defer bk.mu.Unlock()
	if bk.peers == nil {
		bk.peers = make(map[peer.ID]*bookEntry)
	}
	e := bk.peers[ai.ID]
	if e == nil {
		if len(bk.peers) >= maxBook {
			bk.evict()
		}
		e = &bookEntry{ai: ai, at: now}
		bk.peers[ai.ID] = e
	}
	if met || !e.met {
		e.ai, e.at = ai, now
	}
	e.met = e.met || met
	if i := slices.Index(e.blobs, dgst); i >= 0 {
		e.blobs = slices.Delete(e.blobs, i, i+1)
	}
	if len(e.blobs) == maxBookBlobs {
		e.blobs = slices.Delete(e.blobs, 0, 1)
	}
	e.blobs = append(e.blobs, dgst)
}

// evict drops the oldest peer only heard of, or else the oldest met.
func (bk *book) evict() {
	var victim peer.ID
	var oldest *bookEntry
	for id, e := range bk.peers {
		if oldest == nil || (!e.met && oldest.met) || (e.met == oldest.met && e.at.Before(oldest.at)) {
			victim, oldest = id, e
		}
	}
	delete(bk.peers, victim)
}

func (bk *book) forget(id peer.ID) {
	bk.mu.Lock()
	defer bk.mu.Unlock()
	delete(bk.peers, id)
}

// holders returns first, then the peers met for dgst, then those heard of
// for it, newest first: up to n distinct peers.
func (bk *book) holders(dgst digest.Digest, first []peer.AddrInfo, n int) []peer.AddrInfo {
	return bk.list(first, n, func(e *bookEntry) int {
		switch {
		case !slices.Contains(e.blobs, dgst):
			return -1
		case e.met:
			return 0
		}
		return 1
	})
}

// recent returns up to n peers to ask about dgst: those met for it, then
// the others met, newest first, then those heard of for it.
func (bk *book) recent(dgst digest.Digest, n int) []peer.AddrInfo {
	return bk.list(nil, n, func(e *bookEntry) int {
		has := slices.Contains(e.blobs, dgst)
		switch {
		case e.met && has:
			return 0
		case e.met:
			return 1
		case has:
			return 2
		}
		return -1
	})
}

// list returns first, then the entries rank puts in a class (0 first;
// negative: left out), newest first within a class: up to n distinct peers.
func (bk *book) list(first []peer.AddrInfo, n int, rank func(*bookEntry) int) []peer.AddrInfo {
	out := make([]peer.AddrInfo, 0, n)
	seen := make(map[peer.ID]bool)
	for _, ai := range first {
		if len(out) < n && !seen[ai.ID] {
			seen[ai.ID] = true
			out = append(out, ai)
		}
	}
	type ranked struct {
		ai   peer.AddrInfo
		at   time.Time
		rank int
	}
	var rs []ranked
	bk.mu.Lock()
	for id, e := range bk.peers {
		if r := rank(e); r >= 0 && !seen[id] {
			rs = append(rs, ranked{e.ai, e.at, r}) // entries change under mu
		}
	}
	bk.mu.Unlock()
	slices.SortFunc(rs, func(a, b ranked) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		return b.at.Compare(a.at)
	})
	for _, r := range rs {
		if len(out) == n {
			break
		}
		out = append(out, r.ai)
	}
	return out
}

// metaCache keeps the metainfo of committed blobs, computing each once
// however many peers ask at the same time.
type metaCache struct {
	mu      sync.Mutex
	infos   map[digest.Digest]*piece.Info
	order   []digest.Digest // oldest first
	pending map[digest.Digest]chan struct{}
}

func (c *metaCache) put(info *piece.Info) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(info)
}

func (c *metaCache) putLocked(info *piece.Info) {
	if c.infos == nil {
		c.infos = make(map[digest.Digest]*piece.Info)
	}
	if _, ok := c.infos[info.Digest]; ok {
		return
	}
	if len(c.order) == maxHashed {
		delete(c.infos, c.order[0])
		c.order = slices.Delete(c.order, 0, 1)
	}
	c.infos[info.Digest] = info
	c.order = append(c.order, info.Digest)
}

// get returns the metainfo of dgst, computed by compute unless known or
// under way for another caller (then it waits for that).
func (c *metaCache) get(ctx context.Context, dgst digest.Digest, compute func(context.Context, digest.Digest) (*piece.Info, error)) (*piece.Info, error) {
	for {
		c.mu.Lock()
		if info, ok := c.infos[dgst]; ok {
			c.mu.Unlock()
			return info, nil
		}
		if wait, ok := c.pending[dgst]; ok {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if c.pending == nil {
			c.pending = make(map[digest.Digest]chan struct{})
		}
		done := make(chan struct{})
		c.pending[dgst] = done
		c.mu.Unlock()

		info, err := compute(ctx, dgst)
		c.mu.Lock()
		delete(c.pending, dgst)
		if err == nil {
			c.putLocked(info)
		}
		c.mu.Unlock()
		close(done)
		return info, err
	}
}
