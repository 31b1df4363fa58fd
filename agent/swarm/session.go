package swarm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/picker"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// ErrNoMetaInfo means the tracker gave no metainfo for a blob.
var ErrNoMetaInfo = errors.New("swarm: no metainfo")

// MetaInfo asks the tracker for a blob's metainfo, waiting until at least
// its size and piece size are known. The first ask of a digest makes the
// tracker start seeding it from the origin.
func (s *Swarm) MetaInfo(ctx context.Context, src tracker.Source) (*piece.Info, error) {
	for {
		info, err := s.tr.MetaInfo(ctx, src, -1)
		if !errors.Is(err, tracker.ErrPending) {
			return info, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// Filler returns a store.Filler that downloads src from the swarm, starting
// from info, and hands whatever is left to fallback if the swarm stalls.
func (s *Swarm) Filler(src tracker.Source, info *piece.Info, fallback store.Filler) store.Filler {
	return func(ctx context.Context, w store.Writer) error {
		err := s.download(ctx, src, info, w)
		if err == nil || ctx.Err() != nil {
			return err
		}
		s.log.Warn("swarm download stalled, finishing from the origin", "digest", src.Digest, "err", err)
		s.m.fallbacks.Inc()
		return fallback(ctx, w)
	}
}

// session is one blob's download. Only run touches its fields; the
// goroutines it starts talk to it through events.
type session struct {
	s      *Swarm
	src    tracker.Source
	count  int         // pieces of the blob; goroutines may read it
	info   *piece.Info // only the loop: it grows
	w      store.Writer
	b      *blob
	pick   *picker.Picker
	events chan event
	ctx    context.Context
	peers  map[peer.ID]*remote
	banned map[peer.ID]bool
	flight map[*request]struct{} // piece requests in flight
	last   time.Time
}

type remote struct {
	id       peer.ID
	seeder   bool
	has      int                // pieces it announced
	stop     context.CancelFunc // ends its watch
	inflight int
	busyTill time.Time
	busy     int       // refusals in a row
	skipped  time.Time // when the first piece it rationed was skipped
	failures int
}

// request is one piece fetch in flight. Results are matched to their
// request, not to (piece, peer): a peer dropped and followed again may be
// asked for the same piece while the old fetch is still being cancelled.
type request struct {
	n      int
	r      *remote
	cancel context.CancelFunc
}

// event is posted to the session loop by its goroutines.
type event struct {
	info  *piece.Info     // metainfo grew
	peers []tracker.Peer  // a handout
	from  peer.ID         // watch and fetch events
	r     *remote         // watch events: which following of the peer
	bits  *piece.Bitfield // the peer's pieces now
	have  int             // a piece the peer verified since (-1: none)
	gone  bool            // the peer cannot be followed
	ended bool            // the peer's watch stream closed
	req   *request        // fetch result: the request
	data  []byte          // fetch result: verified bytes
	err   error           // fetch result: failure
	fetch bool            // this is a fetch result
}

func (s *Swarm) download(ctx context.Context, src tracker.Source, info *piece.Info, w store.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() { cancel(); bg.Wait() }()

	ss := &session{
		s: s, src: src, count: info.Count(), info: info, w: w, ctx: ctx,
		b:      s.track(src.Digest, info.Size, info.PieceSize),
		pick:   picker.New(info.Count(), picker.DefaultOptions()),
		events: make(chan event, 64),
		peers:  make(map[peer.ID]*remote),
		banned: make(map[peer.ID]bool),
		flight: make(map[*request]struct{}),
		last:   time.Now(),
	}
	ss.pick.SetKnown(len(info.Pieces))
	ss.resume()
	if ss.pick.Done() {
		return nil
	}
	known := len(info.Pieces)
	bg.Go(func() { ss.followMetaInfo(ctx, known) })
	bg.Go(func() { ss.followPeers(ctx) })

	stall := time.NewTicker(s.cfg.StallTimeout / 4)
	defer stall.Stop()
	// retry wakes the loop when a peer's backoff or a seeder's ration skip
	// runs out while request slots are free: in a quiet swarm no event may
	// come to do it.
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for !ss.pick.Done() {
		if at := ss.schedule(&bg); !at.IsZero() {
			retry.Reset(time.Until(at))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-ss.events:
			if err := ss.handle(ev, &bg); err != nil {
				return err
			}
		case <-retry.C:
		case <-stall.C:
			if time.Since(ss.last) > s.cfg.StallTimeout {
				return fmt.Errorf("no progress for %s with %d peers", s.cfg.StallTimeout, len(ss.peers))
			}
		}
	}
	s.kickAnnounce()
	return nil
}

// resume marks the pieces a previous run already wrote.
func (ss *session) resume() {
	have := make([]bool, ss.info.Count())
	for n := range have {
		have[n] = true
	}
	for _, r := range ss.w.Missing() {
		first := int(r.Off / ss.info.PieceSize)
		last := int((r.Off + r.Len - 1) / ss.info.PieceSize)
		for n := first; n <= last && n < len(have); n++ {
			have[n] = false
		}
	}
	for n, ok := range have {
		if ok {
			ss.pick.Have(n)
			ss.b.markHave(n)
		}
	}
}

func (ss *session) post(ev event) {
	select {
	case ss.events <- ev:
	case <-ss.ctx.Done():
	}
}

// followMetaInfo long-polls the tracker while piece hashes are still
// arriving from the seeder.
func (ss *session) followMetaInfo(ctx context.Context, have int) {
	for have < ss.count {
		info, err := ss.s.tr.MetaInfo(ctx, ss.src, have)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			ss.s.log.Debug("metainfo poll failed", "digest", ss.src.Digest, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if len(info.Pieces) > have {
			have = len(info.Pieces)
			ss.post(event{info: info})
		}
	}
}

// followPeers asks the tracker for peers now and then: every PeersRefresh
// while handouts are sparse or bring peers it has not seen, less often (up
// to 8 times that) while they are full and bring none, so a settled swarm
// does not poll its tracker. A sparse handout (a swarm still forming, or
// just the seeder) is asked again soon: a session that waited long with a
// handful of peers would starve.
func (ss *session) followPeers(ctx context.Context) {
	seen := make(map[string]bool)
	every := ss.s.cfg.PeersRefresh
	for {
		peers, err := ss.s.tr.Peers(ctx, ss.src.Digest, ss.s.self.ID)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			ss.s.log.Debug("peer handout failed", "digest", ss.src.Digest, "err", err)
			every = ss.s.cfg.PeersRefresh
		} else {
			fresh := false
			for _, p := range peers {
				if !seen[p.ID] {
					seen[p.ID], fresh = true, true
				}
			}
			if fresh || len(peers) < min(ss.s.cfg.MaxPeers, denseHandout) {
				every = ss.s.cfg.PeersRefresh
			} else {
				every = min(2*every, 8*ss.s.cfg.PeersRefresh)
			}
			ss.post(event{peers: peers})
		}
		if !sleep(ctx, every) {
			return
		}
	}
}

func (ss *session) handle(ev event, bg *sync.WaitGroup) error {
	switch {
	case ev.info != nil:
		if err := ss.grow(ev.info); err != nil {
			return err
		}
	case ev.peers != nil:
		ss.meet(ev.peers, bg)
	case ev.fetch:
		ss.fetched(ev)
	case ss.peers[ev.from] != ev.r:
		// from an earlier following of a peer since dropped
	case ev.bits != nil:
		if r := ss.peers[ev.from]; r != nil {
			for n := range ev.bits.Len() {
				if ev.bits.Has(n) {
					ss.pick.PeerHas(string(ev.from), n)
					r.has++
				}
			}
		}
	case ev.gone:
		ss.drop(ev.from)
	case ev.ended:
		// A complete peer ends its announcements; any other peer whose
		// stream closed is followed again from the next handout.
		if r := ss.peers[ev.from]; r != nil && r.has < ss.count {
			ss.drop(ev.from)
		}
	default:
		if r := ss.peers[ev.from]; r != nil {
			ss.pick.PeerHas(string(ev.from), ev.have)
			r.has++
		}
	}
	return nil
}

// grow takes newly published piece hashes; known ones must not change.
func (ss *session) grow(info *piece.Info) error {
	if info.Digest != ss.info.Digest || info.Size != ss.info.Size || info.PieceSize != ss.info.PieceSize {
		return fmt.Errorf("swarm: metainfo of %s changed shape", ss.info.Digest)
	}
	for n, c := range ss.info.Pieces {
		if !info.Pieces[n].Equals(c) {
			return fmt.Errorf("swarm: metainfo of %s changed piece %d", ss.info.Digest, n)
		}
	}
	ss.info = info
	ss.pick.SetKnown(len(info.Pieces))
	ss.last = time.Now()
	return nil
}

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
		ss.peers[ai.ID] = r
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

// watch connects to a peer and relays what it holds to the loop.
func (ss *session) watch(ctx context.Context, r *remote, ai peer.AddrInfo) {
	err := ss.s.tp.Connect(ctx, ai)
	var bits *piece.Bitfield
	var haves <-chan int
	if err == nil {
		bits, haves, err = ss.s.tp.Watch(ctx, ai.ID, ss.src.Digest, ss.count)
	}
	if err != nil {
		if ctx.Err() == nil {
			ss.s.log.Debug("cannot follow peer", "peer", ai.ID, "digest", ss.src.Digest, "err", err)
		}
		ss.post(event{from: ai.ID, r: r, gone: true})
		return
	}
	ss.b.heard(ai.ID, bits, -1)
	ss.post(event{from: ai.ID, r: r, bits: bits})
	for n := range haves {
		ss.b.heard(ai.ID, nil, n)
		ss.post(event{from: ai.ID, r: r, have: n})
	}
	ss.post(event{from: ai.ID, r: r, ended: true})
}

// schedule fills free request slots (see fill). While slots stay free, it
// returns when the first peer left alone for now (a backoff, a skip of
// rationed pieces) may be asked again; zero if none is.
func (ss *session) schedule(bg *sync.WaitGroup) time.Time {
	ss.fill(bg)
	return ss.retryAt()
}

// retryAt is when the first peer left alone for now may be asked again,
// or zero if no slot is free or nobody is left alone.
func (ss *session) retryAt() time.Time {
	var at time.Time
	if len(ss.flight) >= ss.s.cfg.MaxInFlight {
		return at
	}
	now := time.Now()
	earliest := func(t time.Time) {
		if t.After(now) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	for _, r := range ss.peers {
		earliest(r.busyTill)
		if !r.skipped.IsZero() {
			earliest(r.skipped.Add(ss.s.cfg.SeedRelax))
		}
	}
	return at
}

// fill starts requests in free slots: first the seeder for what only it
// has, then agents, then the seeder for anything if nothing is in flight.
func (ss *session) fill(bg *sync.WaitGroup) {
	if len(ss.flight) >= ss.s.cfg.MaxInFlight {
		return
	}
	now := time.Now()
	order := make([]*remote, 0, len(ss.peers))
	for _, r := range ss.peers {
		order = append(order, r)
	}
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	agents := seedersLast(order)
	// First what only a seeder has: every new piece enters the swarm
	// through the seeder's link, which must never wait for requests.
	seeders := order[agents:]
	for _, r := range seeders {
		if !r.skipped.IsZero() && now.Sub(r.skipped) > ss.s.cfg.SeedRelax {
			ss.pick.ClearSkips(string(r.id)) // the seeder has relaxed its ration by now
			r.skipped = time.Time{}
		}
	}
	ss.pickFrom(seeders, now, bg, ss.pick.PickOnlyThere)
	// Then anything from agents. A seeder is asked for pieces agents also
	// hold only by a session that would otherwise have nothing in flight:
	// its link is the swarm's narrowest, and every byte it sends twice
	// delays a new piece, but a session must not sit idle while the agents
	// holding what it lacks are busy.
	ss.pickFrom(order[:agents], now, bg, ss.pick.Pick)
	if len(ss.flight) == 0 {
		ss.pickFrom(seeders, now, bg, ss.pick.Pick)
	}
}

// pickFrom fills the free request slots of rs with pick's choices.
func (ss *session) pickFrom(rs []*remote, now time.Time, bg *sync.WaitGroup, pick func(id string) (int, bool)) {
	for _, r := range rs {
		for r.inflight < ss.s.cfg.PerPeer && len(ss.flight) < ss.s.cfg.MaxInFlight && now.After(r.busyTill) {
			n, ok := pick(string(r.id))
			if !ok {
				break
			}
			ss.start(r, n, bg)
		}
	}
}

// seedersLast moves the seeders to the end of rs and returns how many
// remotes precede them.
func seedersLast(rs []*remote) int {
	i := 0
	for j, r := range rs {
		if !r.seeder {
			rs[i], rs[j] = rs[j], rs[i]
			i++
		}
	}
	return i
}

func (ss *session) start(r *remote, n int, bg *sync.WaitGroup) {
	ctx, cancel := context.WithTimeout(ss.ctx, ss.s.cfg.PieceTimeout)
	req := &request{n: n, r: r, cancel: cancel}
	ss.flight[req] = struct{}{}
	r.inflight++
	want := ss.info.Pieces[n]
	_, length := ss.info.Span(n)
	dgst := ss.info.Digest
	bg.Go(func() {
		defer cancel()
		buf := ss.s.buffer(length)
		data, err := ss.s.tp.Fetch(ctx, r.id, dgst, n, want, buf)
		if err != nil {
			ss.s.release(buf)
			data = nil
		}
		ss.post(event{fetch: true, req: req, data: data, err: err})
	})
}

// fetched takes a fetch result: a verified piece goes to the store and to
// our watchers; duplicates in flight elsewhere are cancelled.
func (ss *session) fetched(ev event) {
	req, r := ev.req, ev.req.r
	req.cancel()
	delete(ss.flight, req)
	r.inflight--
	followed := ss.peers[r.id] == r // not dropped since the request
	if ev.err != nil {
		if followed {
			ss.failed(req, ev.err)
		}
		return
	}
	defer ss.s.release(ev.data)
	if ss.b.have.Has(req.n) { // a duplicate from the endgame
		return
	}
	off, _ := ss.info.Span(req.n)
	if _, err := ss.w.WriteAt(ev.data, off); err != nil {
		ss.s.log.Warn("writing piece", "digest", ss.info.Digest, "piece", req.n, "err", err)
		if followed {
			ss.pick.Cancel(req.n, string(r.id))
		}
		return
	}
	ss.pick.Have(req.n)
	ss.b.markHave(req.n)
	ss.last = time.Now()
	ss.s.m.pieces.WithLabelValues("verified").Inc()
	source := FromPeer
	if r.seeder {
		source = FromSeeder
	}
	ss.s.count(source, int64(len(ev.data)))
	for other := range ss.flight {
		if other.n == req.n {
			other.cancel() // its result comes back as an error and is ignored
		}
	}
	r.failures, r.busy = 0, 0
}

// failed handles a failed request to a peer still followed.
func (ss *session) failed(req *request, err error) {
	r := req.r
	ss.pick.Cancel(req.n, string(r.id))
	if ss.b.have.Has(req.n) {
		return // a cancelled duplicate
	}
	switch {
	case errors.Is(err, p2p.ErrBadPiece):
		ss.s.m.pieces.WithLabelValues("rejected").Inc()
		ss.s.m.peersDropped.Inc()
		ss.s.log.Warn("peer sent a corrupt piece, dropped", "peer", r.id, "digest", ss.info.Digest, "piece", req.n)
		ss.banned[r.id] = true
		ss.drop(r.id)
	case errors.Is(err, p2p.ErrRationed):
		// Only this piece: the seeder gives it to others first, and gives
		// other pieces still.
		ss.pick.Skip(req.n, string(r.id))
		if r.skipped.IsZero() {
			r.skipped = time.Now()
		}
	case errors.Is(err, p2p.ErrBusy):
		r.busy++
		r.busyTill = time.Now().Add(r.backoff())
	default:
		ss.s.m.pieces.WithLabelValues("failed").Inc()
		r.failures++
		r.busyTill = time.Now().Add(busyBackoff)
		if r.failures >= maxFailures && !r.seeder {
			ss.s.log.Debug("peer keeps failing, dropped", "peer", r.id, "digest", ss.info.Digest, "err", err)
			ss.drop(r.id)
		}
	}
}

// denseHandout is the handout size from which an unchanged handout makes
// a session ask the tracker less often.
const denseHandout = 8

const (
	busyBackoff = 100 * time.Millisecond
	maxFailures = 3
	// seederBackoff is the first pause after the seeder answered Busy:
	// it keeps requests waiting for a slot, so Busy means its line is full
	// or the wait ran out, and asking again soon earns another refusal.
	seederBackoff = 250 * time.Millisecond
	maxBackoff    = time.Second
)

// backoff is how long to leave r alone after its r.busy-th refusal in a
// row: doubling from busyBackoff (seederBackoff for the seeder) up to
// maxBackoff. Every refusal costs both sides a stream; a peer whose slots
// stay full is asked less and less often, while the many other agents that
// ask it keep its slots in use.
func (r *remote) backoff() time.Duration {
	d := busyBackoff
	if r.seeder {
		d = seederBackoff
	}
	for i := 1; i < r.busy && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// drop forgets a peer; a later handout may bring it back unless banned.
func (ss *session) drop(id peer.ID) {
	if ss.peers[id] == nil {
		return
	}
	r := ss.peers[id]
	for req := range ss.flight {
		if req.r == r {
			req.cancel()
		}
	}
	r.stop()
	ss.pick.PeerGone(string(id))
	delete(ss.peers, id)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
