package swarm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/p2p/picker"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// ErrNoMetaInfo means the tracker gave no metainfo for a blob.
var ErrNoMetaInfo = errors.New("swarm: no metainfo")

// MetaInfo asks the tracker for a blob's metainfo, waiting until at least
// its size and piece size are known. The first ask of a digest makes the
// tracker start seeding it from the origin. When the tracker cannot answer
// (any failure but ErrNotFound), the peers this node met recently are asked
// instead (see pex.go); if none knows the blob, the tracker's error is
// returned.
func (s *Swarm) MetaInfo(ctx context.Context, src tracker.Source) (*piece.Info, error) {
	for {
		tctx, cancel := s.clock.WithTimeout(ctx, trackerTimeout)
		info, err := s.tr.MetaInfo(tctx, src, -1)
		answered := tctx.Err() == nil
		cancel()
		switch {
		case errors.Is(err, tracker.ErrPending):
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		case err == nil || errors.Is(err, tracker.ErrNotFound) || ctx.Err() != nil:
			return info, err
		}
		if answered {
			s.holdersFromTracker(ctx, src.Digest)
		}
		if info := s.metaFromPeers(ctx, src.Digest); info != nil {
			return info, nil
		}
		return nil, err
	}
}

// holdersFromTracker notes in the book, for metaFromPeers, the peers the
// tracker lists for dgst. It names them even when its seeder could not
// fetch the blob: a private one, that an agent fetched from the origin
// with its requester's credentials (requester mode, agent/credential.go).
func (s *Swarm) holdersFromTracker(ctx context.Context, dgst digest.Digest) {
	tctx, cancel := s.clock.WithTimeout(ctx, trackerTimeout)
	defer cancel()
	peers, err := s.tr.Peers(tctx, dgst, s.self.ID)
	if err != nil {
		return
	}
	now := s.clock.Now()
	for _, p := range peers {
		if ai, err := addrInfo(p); err == nil {
			s.remember(ai, dgst, false, now)
		}
	}
}

// Filler returns a store.Filler that downloads src from the swarm, starting
// from info. When the swarm stalls, the origin is asked first only for the
// pieces no followed peer holds or whose CIDs nobody knows, and the node
// names, checks and announces each as it lands (standIn), standing in for a
// seeder that is gone; then the download goes back to the swarm. After
// three such rounds, or when nothing is lacking, fallback gets the rest.
func (s *Swarm) Filler(src tracker.Source, info *piece.Info, fallback store.Filler) store.Filler {
	return func(ctx context.Context, w store.Writer) error {
		for round := 0; ; round++ {
			err := s.download(ctx, src, info, w, nil)
			if err == nil || ctx.Err() != nil || errors.Is(err, store.ErrDigestMismatch) || errors.Is(err, errWrite) {
				return err // a corrupt partial blob is discarded, a full disk not filled further
			}
			s.m.fallbacks.Inc()
			var se *stallError
			if errors.As(err, &se) && len(se.only) > 0 && round < 3 {
				s.log.Warn("swarm download stalled, the pieces no peer has from the origin", "digest", src.Digest, "err", err, "ranges", len(se.only))
				if err := fallback(ctx, s.standIn(src.Digest, onlyWriter{w, se.only})); err != nil {
					return err
				}
				if b := s.lookup(src.Digest); b != nil {
					if latest, _ := b.known(); latest != nil && len(latest.Pieces) > len(info.Pieces) {
						info = latest
					}
				}
				if len(w.Missing()) == 0 {
					return nil
				}
				continue
			}
			s.log.Warn("swarm download stalled, finishing from the origin", "digest", src.Digest, "err", err)
			return fallback(ctx, s.standIn(src.Digest, w))
		}
	}
}

// stallError ends a download that made no progress; only are the ranges
// of the pieces it lacks that no peer it follows holds or can be asked for.
type stallError struct {
	msg  string
	only []store.Range
}

func (e *stallError) Error() string { return e.msg }

// onlyWriter shows a fallback only some of the missing ranges.
type onlyWriter struct {
	store.Writer
	only []store.Range
}

func (o onlyWriter) Missing() []store.Range {
	var out []store.Range
	for _, m := range o.Writer.Missing() {
		for _, r := range o.only {
			lo, hi := max(m.Off, r.Off), min(m.Off+m.Len, r.Off+r.Len)
			if lo < hi {
				out = append(out, store.Range{Off: lo, Len: hi - lo})
			}
		}
	}
	return out
}

// lacking lists the ranges of the pieces missing that no followed peer
// holds, or whose CIDs are not known, merged.
func (ss *session) lacking() []store.Range {
	var out []store.Range
	for n := range ss.count {
		if ss.pick.Has(n) || (n < len(ss.info.Pieces) && ss.pick.Availability(n) > 0) {
			continue
		}
		off, length := ss.info.Span(n)
		if k := len(out); k > 0 && out[k-1].Off+out[k-1].Len == off {
			out[k-1].Len += length
			continue
		}
		out = append(out, store.Range{Off: off, Len: length})
	}
	return out
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
	asks   int                   // of them, to seeders (request.ask)
	rng    *rand.Rand            // the order peers are asked in (fill)
	// idleSince is when the session last found nothing to ask agents for
	// with nothing in flight; zero while something is (see fill).
	idleSince time.Time
	last      time.Time
	// pieceTime is the moving average of how long a piece from an agent
	// took, request to answer; zero until one came (measured).
	pieceTime time.Duration
	// pending are pieces an earlier run wrote whose CID is not known yet:
	// held for the picker, not announced or served until verified.
	pending map[int]bool
	zone    zoneState // same-zone preference (zone.go)
	// sorted are the followed peers by ID, rebuilt by fill when stale
	// (add and drop set it); order is fill's scratch.
	sorted []*remote
	stale  bool
	order  []*remote
}

type remote struct {
	id       peer.ID
	seeder   bool
	has      int                // pieces it announced
	stop     context.CancelFunc // ends its watch
	inflight int
	busyTill time.Time
	busy     int           // refusals in a row
	skipped  time.Time     // when the first piece it rationed was skipped
	rtt      time.Duration // average time of its refusals (answered); 0: none yet
	failures int
}

// request is one piece fetch in flight. Results are matched to their
// request, not to (piece, peer): a peer dropped and followed again may be
// asked for the same piece while the old fetch is still being cancelled.
type request struct {
	n      int
	r      *remote
	at     time.Time // sent
	ask    bool      // one of the first seederAsks to a seeder: outside the window
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

// download fetches the pieces of src that w lacks: all of them, or with
// want only those that cover it.
func (s *Swarm) download(ctx context.Context, src tracker.Source, info *piece.Info, w store.Writer, want *store.Range) error {
	ctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() { cancel(); bg.Wait() }()

	rng := s.rng(src.Digest)
	popts := picker.DefaultOptions()
	popts.Rand = rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	ss := &session{
		s: s, src: src, count: info.Count(), info: info, w: w, ctx: ctx,
		b:       s.track(src.Digest, info.Size, info.PieceSize),
		pick:    picker.New(info.Count(), popts),
		rng:     rng,
		events:  make(chan event, 64),
		peers:   make(map[peer.ID]*remote),
		banned:  make(map[peer.ID]bool),
		flight:  make(map[*request]struct{}),
		last:    s.clock.Now(),
		pending: make(map[int]bool),
	}
	if ss.b == nil {
		return fmt.Errorf("swarm: %s is committed already", src.Digest)
	}
	ss.pick.SetKnown(len(info.Pieces))
	if want != nil {
		for n := range ss.count {
			if !covers(info, *want, n) {
				ss.pick.Have(n) // not wanted: never picked
			}
		}
	}
	if err := ss.resume(); err != nil {
		return err
	}
	if ss.done() {
		return nil
	}
	s.active.Add(1) // the node's downloads share NodeInFlight (window)
	defer s.active.Add(-1)
	bg.Go(func() { ss.followMetaInfo(ctx, info) })
	bg.Go(func() { ss.followPeers(ctx) })

	stall := s.clock.Ticker(s.cfg.StallTimeout / 8)
	defer stall.Stop()
	// retry wakes the loop when a peer's backoff or a seeder's ration skip
	// runs out while request slots are free: in a quiet swarm no event may
	// come to do it.
	retry := s.clock.Timer(time.Hour)
	defer retry.Stop()
	for !ss.done() {
		if at := ss.schedule(&bg); !at.IsZero() {
			retry.Reset(s.clock.Until(at))
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
			if s.clock.Since(ss.last) > ss.stallAfter() {
				return &stallError{msg: fmt.Sprintf("no progress for %s with %d peers", s.clock.Since(ss.last).Round(time.Second), len(ss.peers)), only: ss.lacking()}
			}
		}
	}
	s.kickAnnounce()
	return nil
}

// done tells whether every piece is written and verified.
func (ss *session) done() bool { return ss.pick.Done() && len(ss.pending) == 0 }

// resume takes the pieces an earlier run already wrote. Each is read back
// and checked against its CID before it counts as held, so the node never
// announces or serves a byte it has not verified; pieces whose CID the
// metainfo does not carry yet wait in pending. A written piece that does
// not match its CID was corrupted on disk: the partial blob is discarded,
// as for a digest mismatch, and the next pull starts over.
func (ss *session) resume() error {
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
			ss.pending[n] = true
		}
	}
	return ss.verifyPending()
}

// verifyPending checks the pending pieces whose CID is known now.
func (ss *session) verifyPending() error {
	for n := range ss.pending {
		if n >= len(ss.info.Pieces) {
			continue
		}
		off, length := ss.info.Span(n)
		buf := ss.s.buffer(length)
		_, err := ss.w.ReadAt(buf, off)
		if err == nil {
			err = piece.Verify(ss.info.Pieces[n], buf)
		}
		ss.s.release(buf)
		if err != nil {
			return fmt.Errorf("%w: %s piece %d written by an earlier run: %w", store.ErrDigestMismatch, ss.info.Digest, n, err)
		}
		delete(ss.pending, n)
		ss.b.markHave(n)
	}
	return nil
}

func (ss *session) post(ev event) {
	select {
	case ss.events <- ev:
	case <-ss.ctx.Done():
	}
}

func (ss *session) handle(ev event, bg *sync.WaitGroup) error {
	switch {
	case ev.info != nil:
		if err := ss.grow(ev.info); err != nil {
			return err
		}
	case ev.peers != nil:
		ss.zone.learn(ss, ev.peers)
		ss.meet(ev.peers, bg)
	case ev.fetch:
		return ss.fetched(ev)
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
	ss.last = ss.s.clock.Now()
	return ss.verifyPending()
}

// add follows r.
func (ss *session) add(r *remote) {
	ss.peers[r.id] = r
	ss.stale = true
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
	ss.stale = true
}
