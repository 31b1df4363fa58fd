package swarm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/p2p"
)

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
	full := ss.toAgents() >= ss.window()
	now := ss.s.clock.Now()
	earliest := func(t time.Time) {
		if t.After(now) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	for _, r := range ss.peers {
		if full && (!r.seeder || r.inflight >= seederAsks) {
			continue // no slot it could take
		}
		earliest(r.busyTill)
		if !r.skipped.IsZero() {
			earliest(r.skipped.Add(ss.s.cfg.SeedRelax))
		}
	}
	if len(ss.flight) == 0 && !ss.idleSince.IsZero() {
		earliest(ss.idleSince.Add(seederFallback))
	}
	return at
}

// fill starts requests in free slots: first one to each seeder for what
// only it has (outside the window, seederAsks), then agents, then seeders
// again for what only they have in what agents left of the window, then
// the seeder for anything if nothing is in flight.
func (ss *session) fill(bg *sync.WaitGroup) {
	now := ss.s.clock.Now()
	// Sorted first, so that a seeded session (WithSeed) asks in the same
	// order every run: map order is random by itself.
	order := append(ss.order[:0], ss.byID()...)
	ss.order = order
	ss.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	agents := seedersLast(order)
	// First what only a seeder has: every new piece enters the swarm
	// through the seeder's link, which must never wait for requests.
	seeders := order[agents:]
	for _, r := range seeders {
		if !r.skipped.IsZero() && now.Sub(r.skipped) >= ss.s.cfg.SeedRelax {
			ss.pick.ClearSkips(string(r.id)) // the seeder has relaxed its ration by now
			r.skipped = time.Time{}
		}
	}
	ss.askSeeders(seeders, now, bg, seederAsks)
	// Then anything from agents: of this node's zone first, then of
	// others what none of its zone holds (zone.go; without a zone every
	// agent is of its zone). A seeder is asked for pieces agents also hold
	// only by a session that would otherwise have nothing in flight: its
	// link is the swarm's narrowest, and every byte it sends twice delays
	// a new piece, but a session must not sit idle while the agents
	// holding what it lacks are busy. Nor, for as long, while those of its
	// zone are: then it asks agents of other zones for anything first.
	local := ss.byZone(order[:agents])
	ss.pickFrom(order[:local], now, bg, ss.pick.Pick)
	ss.pickAcross(order[local:agents], order[:local], now, bg)
	ss.askSeeders(seeders, now, bg, ss.s.cfg.PerPeer) // what agents left of the window
	switch {
	case len(ss.flight) > 0:
		ss.idleSince = time.Time{}
	case ss.idleSince.IsZero():
		ss.idleSince = now
	}
	if len(ss.flight) == 0 && now.Sub(ss.idleSince) >= seederFallback {
		ss.pickFrom(order[local:agents], now, bg, ss.pick.Pick)
		ss.pickFrom(seeders, now, bg, ss.pick.Pick)
	}
}

// byID returns the followed peers sorted by ID, sorting them again only
// when they changed (add, drop).
func (ss *session) byID() []*remote {
	if !ss.stale {
		return ss.sorted
	}
	ss.sorted = ss.sorted[:0]
	for _, r := range ss.peers {
		ss.sorted = append(ss.sorted, r)
	}
	slices.SortFunc(ss.sorted, func(a, b *remote) int { return strings.Compare(string(a.id), string(b.id)) })
	ss.stale = false
	return ss.sorted
}

// seederFallback is how long a session sits with nothing in flight before
// it asks the seeder for pieces agents hold: by then every busy agent's
// backoff has run out once (maxBackoff). Asking at once, as soon as the
// agents holding what it lacks are all busy, made the seeder send a tenth
// more copies of the image and the rollout take 1.4 times longer in
// simulation (deploy/sim, 20 agents at the seeder's bandwidth): every
// byte the seeder sends twice delays a new piece.
const seederFallback = maxBackoff

// askSeeders asks seeders for pieces only they hold, up to upTo in flight
// to each: the first seederAsks outside the window, the others in it.
func (ss *session) askSeeders(seeders []*remote, now time.Time, bg *sync.WaitGroup, upTo int) {
	for _, r := range seeders {
		for r.inflight < upTo && (r.inflight < seederAsks || ss.toAgents() < ss.window()) && !now.Before(r.busyTill) {
			n, ok := ss.pick.PickOnlyThere(string(r.id))
			if !ok {
				break
			}
			ss.start(r, n, bg)
		}
	}
}

// pickFrom fills the free request slots of rs with pick's choices.
func (ss *session) pickFrom(rs []*remote, now time.Time, bg *sync.WaitGroup, pick func(id string) (int, bool)) {
	window := ss.window()
	for _, r := range rs {
		for r.inflight < ss.perPeer(r) && ss.toAgents() < window && !now.Before(r.busyTill) {
			n, ok := pick(string(r.id))
			if !ok {
				break
			}
			ss.start(r, n, bg)
		}
	}
}

// seederAsks is how many requests to a seeder a session has in flight
// outside its window; more count against it. Most are answered
// Rationed (each new piece goes to one agent first), and each answer waits
// behind the piece data the seeder sends on the same connection: on the
// testbed (10 hosts at 5 MB/s) half took over 0.25 s and a tenth over
// 0.9 s, and sessions whose whole window sat in such requests received
// nothing for seconds.
const seederAsks = 1

// toAgents is how many of the session's requests in flight count against
// its window: all but the seederAsks first ones to each seeder.
func (ss *session) toAgents() int { return len(ss.flight) - ss.asks }

// window is how many requests the session may have in flight: its share
// of NodeInFlight among the node's downloads under way, at most
// MaxInFlight.
func (ss *session) window() int {
	c := ss.s.cfg
	if c.NodeInFlight == 0 {
		return c.MaxInFlight
	}
	n := max(ss.s.active.Load(), 1)
	return int(min(max((int64(c.NodeInFlight)+n-1)/n, 1), int64(c.MaxInFlight)))
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
	ctx, cancel := ss.s.clock.WithTimeout(ss.ctx, pieceTimeout(r.seeder, ss.pieceTime, ss.s.cfg.PieceTimeout))
	req := &request{n: n, r: r, at: ss.s.clock.Now(), ask: r.seeder && r.inflight < seederAsks, cancel: cancel}
	ss.flight[req] = struct{}{}
	r.inflight++
	if req.ask {
		ss.asks++
	}
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

// errWrite marks a download that cannot write to the store (a full disk):
// asking anyone for more bytes, peers or the origin, cannot help.
var errWrite = errors.New("swarm: cannot write to the store")

// fetched takes a fetch result: a verified piece goes to the store and to
// our watchers; duplicates in flight elsewhere are cancelled. A piece the
// store cannot take ends the download.
func (ss *session) fetched(ev event) error {
	req, r := ev.req, ev.req.r
	req.cancel()
	ss.s.log.Debug("piece fetched", "peer", r.id, "seeder", r.seeder, "digest", ss.info.Digest, "piece", req.n,
		"took", ss.s.clock.Since(req.at), "err", ev.err)
	delete(ss.flight, req)
	r.inflight--
	if req.ask {
		ss.asks--
	}
	followed := ss.peers[r.id] == r // not dropped since the request
	if ev.err != nil {
		if followed {
			ss.failed(req, ev.err)
		}
		return nil
	}
	defer ss.s.release(ev.data)
	if ss.b.have.Has(req.n) { // a duplicate from the endgame
		return nil
	}
	off, _ := ss.info.Span(req.n)
	if _, err := ss.w.WriteAt(ev.data, off); err != nil {
		return fmt.Errorf("%w: piece %d of %s: %w", errWrite, req.n, ss.info.Digest, err)
	}
	ss.pick.Have(req.n)
	ss.b.markHave(req.n)
	ss.last = ss.s.clock.Now()
	ss.s.m.pieces.WithLabelValues("verified").Inc()
	source := FromPeer
	if r.seeder {
		source = FromSeeder
	} else {
		ss.measured(ss.s.clock.Since(req.at))
	}
	ss.s.count(source, int64(len(ev.data)))
	for other := range ss.flight {
		if other.n == req.n {
			other.cancel() // its result comes back as an error and is ignored
		}
	}
	r.failures, r.busy = 0, 0
	return nil
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
	case errors.Is(err, p2p.ErrUnknownBlob):
		// It no longer holds the blob (evicted): stop following it here;
		// a later handout brings it back if it fetches the blob again.
		ss.drop(r.id)
	case errors.Is(err, p2p.ErrRationed):
		r.answered(ss.s.clock.Since(req.at))
		// Only this piece: the seeder gives it to others first, and gives
		// other pieces still.
		ss.pick.Skip(req.n, string(r.id))
		if r.skipped.IsZero() {
			r.skipped = ss.s.clock.Now()
		}
	case errors.Is(err, p2p.ErrBusy):
		r.answered(ss.s.clock.Since(req.at))
		r.busy++
		r.busyTill = ss.s.clock.Now().Add(r.backoff(ss.pieceTime))
	default:
		ss.s.m.pieces.WithLabelValues("failed").Inc()
		r.failures++
		r.busyTill = ss.s.clock.Now().Add(busyBackoff)
		if r.failures >= maxFailures && !r.seeder {
			ss.s.log.Debug("peer keeps failing, dropped", "peer", r.id, "digest", ss.info.Digest, "err", err)
			ss.drop(r.id)
		}
	}
}

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
//
// For an agent, once the session measured how long a piece from agents
// takes (pieceTime, 0: not yet), the pause starts at a busyShare of that
// and doubles up to twice it, within those bounds: a peer with every slot
// taken frees one about every piece time over its slots, and the piece it
// holds that this node lacks is often one it got just now, which spreads
// only as fast as its holders are asked again. In simulation (100 agents
// at 20 MB/s, 256 KiB pieces: pieces from agents took 0.1 s) the fixed
// doubling to a second left a new piece's holders unasked by most of
// their followers for up to that long.
func (r *remote) backoff(pieceTime time.Duration) time.Duration {
	d, ceil := busyBackoff, maxBackoff
	switch {
	case r.seeder:
		d = seederBackoff
	case pieceTime > 0:
		d = min(max(pieceTime/busyShare, time.Millisecond), busyBackoff)
		ceil = min(max(2*pieceTime, d), maxBackoff)
	}
	for i := 1; i < r.busy && d < ceil; i++ {
		d *= 2
	}
	return min(d, ceil)
}

// busyShare is the part of the measured piece time an agent's first Busy
// pause lasts.
const busyShare = 4

// measured takes the time a piece from an agent took, request to answer,
// into the session's average (pieceTime): a moving average over about
// pieceSamples pieces.
func (ss *session) measured(d time.Duration) {
	if ss.pieceTime == 0 {
		ss.pieceTime = d
		return
	}
	ss.pieceTime += (d - ss.pieceTime) / pieceSamples
}

const pieceSamples = 8

// perPeer is how many requests the session keeps in flight to agent r:
// Config.PerPeer while a second one hides a round trip that is a part of
// a piece's time worth hiding, one once r's refusals (answers without
// bytes, so about a round trip: rtt) came in under 1/rttShare of the
// session's average piece time (pieceTime). A second request to a peer
// whose slots are shared with other askers only adds to its line, and
// each request spread to another peer puts one more upload link to use:
// in simulation (20 agents at 20 MB/s, 1 ms links) one request per peer
// took the rollout from 1.080-1.085 to 1.073-1.077 times the bound.
func (ss *session) perPeer(r *remote) int {
	c := ss.s.cfg.PerPeer
	if c > 1 && r.rtt > 0 && ss.pieceTime > 0 && r.rtt*rttShare < ss.pieceTime {
		return 1
	}
	return c
}

const rttShare = 8

// answered takes the time a refusal of r took, request to answer, into
// r's round trip (rtt): a moving average over about pieceSamples.
func (r *remote) answered(d time.Duration) {
	if r.rtt == 0 {
		r.rtt = max(d, time.Nanosecond)
		return
	}
	r.rtt += (d - r.rtt) / pieceSamples
}

// pieceTimeout bounds a request to an agent by what pieces from agents
// took (pieceTime, the session's average): timeoutPieces of those, at
// least minPieceTimeout, at most limit (Config.PieceTimeout), which alone
// bounds requests before any piece came and those to a seeder (they may
// wait in its line for a slot). A fixed bound either cuts slow links'
// pieces short or, as the fixed 60 s did, leaves a request to a peer that
// stopped sending hanging for dozens of piece times.
func pieceTimeout(seeder bool, pieceTime, limit time.Duration) time.Duration {
	if seeder || pieceTime <= 0 {
		return limit
	}
	return min(max(timeoutPieces*pieceTime, minPieceTimeout), limit)
}

const (
	timeoutPieces   = 16
	minPieceTimeout = 5 * time.Second
)
