package picker

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
)

// Defaults for Options fields left at zero.
const (
	DefaultWindow = 8
	DefaultMaxDup = 2

	// tieCap is how many equally rarest pieces rarest collects before it
	// may stop scanning.
	tieCap = 64
)

// ErrInvalidOptions is wrapped by Options.Validate.
var ErrInvalidOptions = errors.New("picker: invalid options")

// Options tune a Picker. Zero fields take their defaults.
type Options struct {
	// Window is the number of pieces, from the first missing one on, that
	// are preferred so that a reader of the blob in order gets bytes soon.
	Window int
	// MaxDup is how many peers may be asked for the same piece at once in
	// endgame. 1 disables duplicate requests.
	MaxDup int
	// Rand breaks ties; nil means a randomly seeded source. Tests pass a
	// fixed seed.
	Rand *rand.Rand
}

// DefaultOptions returns the options New uses for zero fields.
func DefaultOptions() Options {
	return Options{Window: DefaultWindow, MaxDup: DefaultMaxDup}
}

// Validate rejects negative fields. New never fails: it replaces such
// values by the defaults, so callers that build Options from user
// configuration should call Validate first.
func (o Options) Validate() error {
	if o.Window < 0 {
		return fmt.Errorf("%w: window %d is negative", ErrInvalidOptions, o.Window)
	}
	if o.MaxDup < 0 {
		return fmt.Errorf("%w: max dup %d is negative", ErrInvalidOptions, o.MaxDup)
	}
	return nil
}

// Picker holds the piece-selection state of one blob download.
//
// Invariants: a piece in flight is known and not held; dups[i] > 0 exactly
// when busy has bit i; idle counts the known pieces neither held nor busy.
type Picker struct {
	n      int
	known  int
	first  int // first missing piece; n when done
	held   int
	window int
	maxDup int
	rng    *rand.Rand

	have  bitset  // pieces we hold
	busy  bitset  // pieces in flight to at least one peer
	dups  []int32 // number of peers each piece is in flight to
	avail []int32 // number of partial peers that have each piece
	full  int     // peers that have every piece
	idle  int

	peers []*peer // in arrival order, for deterministic iteration
	byID  map[string]*peer
	seq   uint64  // request counter: orders requests without a clock
	ties  []int32 // scratch for Pick, reused so that Pick does not allocate
}

type peer struct {
	id   string
	pos  int    // index in Picker.peers
	all  bool   // a complete peer: has is nil
	has  bitset // pieces the peer announced
	skip bitset // pieces the peer refused for now; nil: none
	reqs []request
}

type request struct {
	piece int
	seq   uint64
}

// New returns a Picker for a blob of the given number of pieces (negative
// means none), with no piece known, held or available yet.
func New(pieces int, opts Options) *Picker {
	pieces = max(pieces, 0)
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.MaxDup <= 0 {
		opts.MaxDup = DefaultMaxDup
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &Picker{
		n:      pieces,
		window: opts.Window,
		maxDup: opts.MaxDup,
		rng:    opts.Rand,
		have:   newBitset(pieces),
		busy:   newBitset(pieces),
		dups:   make([]int32, pieces),
		avail:  make([]int32, pieces),
		byID:   make(map[string]*peer),
	}
}

// Pieces is the number of pieces of the blob.
func (p *Picker) Pieces() int { return p.n }

// Known is the number of pieces whose hash is known.
func (p *Picker) Known() int { return p.known }

// FirstMissing is the lowest piece not held, or Pieces() when done.
func (p *Picker) FirstMissing() int { return p.first }

// Missing is the number of pieces not held.
func (p *Picker) Missing() int { return p.n - p.held }

// Done reports whether every piece is held.
func (p *Picker) Done() bool { return p.held == p.n }

// Has reports whether we hold piece i.
func (p *Picker) Has(i int) bool { return p.valid(i) && p.have.get(i) }

// SetKnown records that the hashes of pieces [0, k) are known. k only
// grows: a smaller k is ignored, a larger one is capped at Pieces().
func (p *Picker) SetKnown(k int) {
	k = min(k, p.n)
	for i := p.known; i < k; i++ {
		if !p.have.get(i) {
			p.idle++
		}
	}
	p.known = max(p.known, k)
}

// Have records that we hold piece i, verified. Its requests stop counting
// as in flight: call InFlight before Have to learn whom to cancel.
func (p *Picker) Have(i int) {
	if !p.valid(i) || p.have.get(i) {
		return
	}
	if p.dups[i] > 0 {
		for _, q := range p.peers {
			q.drop(i)
		}
		p.dups[i] = 0
		p.busy.clear(i)
	} else if i < p.known {
		p.idle--
	}
	p.have.set(i)
	p.held++
	for p.first < p.n && p.have.get(p.first) {
		p.first++
	}
}

// PeerHas records that peer announced piece i.
func (p *Picker) PeerHas(id string, i int) {
	if !p.valid(i) {
		return
	}
	q := p.peer(id)
	if q.all || q.has.get(i) {
		return
	}
	if q.has == nil {
		q.has = newBitset(p.n)
	}
	q.has.set(i)
	p.avail[i]++
}

// PeerHasAll records that peer holds the whole blob.
func (p *Picker) PeerHasAll(id string) {
	q := p.peer(id)
	if q.all {
		return
	}
	q.has.each(func(i int) { p.avail[i]-- })
	q.has = nil
	q.all = true
	p.full++
}

// PeerGone forgets peer: its availability and its requests in flight.
func (p *Picker) PeerGone(id string) {
	q := p.byID[id]
	if q == nil {
		return
	}
	for _, r := range q.reqs {
		p.release(r.piece)
	}
	if q.all {
		p.full--
	} else {
		q.has.each(func(i int) { p.avail[i]-- })
	}
	last := p.peers[len(p.peers)-1]
	p.peers[q.pos], last.pos = last, q.pos
	p.peers[len(p.peers)-1] = nil
	p.peers = p.peers[:len(p.peers)-1]
	delete(p.byID, id)
}

// Skip records that peer refused piece i for now (a seeder rationing it):
// Pick does not choose i for peer again until ClearSkips.
func (p *Picker) Skip(i int, id string) {
	q := p.byID[id]
	if q == nil || !p.valid(i) {
		return
	}
	if q.skip == nil {
		q.skip = newBitset(p.n)
	}
	q.skip.set(i)
}

// ClearSkips forgets every piece peer refused.
func (p *Picker) ClearSkips(id string) {
	if q := p.byID[id]; q != nil {
		q.skip = nil
	}
}

// Availability is the number of peers that have piece i.
func (p *Picker) Availability(i int) int {
	if !p.valid(i) {
		return 0
	}
	return int(p.avail[i]) + p.full
}

// Pick chooses a piece to request from peer and records it as in flight to
// peer. It reports false when there is nothing worth asking peer for.
func (p *Picker) Pick(id string) (int, bool) {
	q := p.byID[id]
	if q == nil || p.Done() {
		return -1, false
	}
	i := -1
	if p.idle > 0 {
		i = p.pickIdle(q)
	} else if p.known == p.n {
		// Endgame waits for the complete metainfo: while the seeder is still
		// publishing, the newest pieces are all in flight most of the time,
		// and duplicating them would double the load on the seeder, which is
		// the bottleneck then.
		i = p.pickDup(q)
	}
	if i < 0 {
		return -1, false
	}
	p.request(q, i)
	return i, true
}

// request records piece i as in flight to q.
func (p *Picker) request(q *peer, i int) {
	q.reqs = append(q.reqs, request{piece: i, seq: p.seq})
	p.seq++
	if p.dups[i] == 0 {
		p.busy.set(i)
		p.idle--
	}
	p.dups[i]++
}

// PickOnlyThere is Pick restricted to pieces that peer alone has (no other
// peer announced them): what a swarm can get nowhere else, such as the
// pieces a seeder has just received from the origin.
func (p *Picker) PickOnlyThere(id string) (int, bool) {
	q := p.byID[id]
	if q == nil || q.all || p.Done() || p.idle == 0 || p.full > 0 {
		return -1, false
	}
	i := p.rarest(q, p.first, p.known)
	if i < 0 || p.avail[i] != 1 {
		return -1, false
	}
	p.request(q, i)
	return i, true
}

// Cancel records that the request for piece i from peer failed, timed out,
// was refused or was cancelled: it is no longer in flight from peer.
func (p *Picker) Cancel(i int, id string) {
	q := p.byID[id]
	if q == nil || !p.valid(i) {
		return
	}
	if q.drop(i) {
		p.release(i)
	}
}

// InFlight returns the peers piece i is requested from, oldest request
// first, or nil.
func (p *Picker) InFlight(i int) []string {
	if !p.valid(i) || p.dups[i] == 0 {
		return nil
	}
	type entry struct {
		id  string
		seq uint64
	}
	var es []entry
	for _, q := range p.peers {
		for _, r := range q.reqs {
			if r.piece == i {
				es = append(es, entry{q.id, r.seq})
			}
		}
	}
	slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.seq, b.seq) })
	ids := make([]string, len(es))
	for k, e := range es {
		ids[k] = e.id
	}
	return ids
}

// Requests is the number of requests in flight to peer.
func (p *Picker) Requests(id string) int {
	if q := p.byID[id]; q != nil {
		return len(q.reqs)
	}
	return 0
}

func (p *Picker) valid(i int) bool { return i >= 0 && i < p.n }

func (p *Picker) peer(id string) *peer {
	q := p.byID[id]
	if q == nil {
		q = &peer{id: id, pos: len(p.peers)}
		p.peers = append(p.peers, q)
		p.byID[id] = q
	}
	return q
}

// release drops one request for piece i; the piece becomes idle again
// when it was the last one.
func (p *Picker) release(i int) {
	p.dups[i]--
	if p.dups[i] == 0 {
		p.busy.clear(i)
		p.idle++
	}
}

// pickIdle returns the rarest idle piece q has, preferring the in-order
// window, or -1.
func (p *Picker) pickIdle(q *peer) int {
	hi := p.known
	if p.window < p.known-p.first { // written so that a huge Window cannot overflow
		hi = p.first + p.window
	}
	if i := p.rarest(q, p.first, hi); i >= 0 {
		return i
	}
	// Pieces below first are all held, so the rest is [hi, known).
	return p.rarest(q, max(p.first, hi), p.known)
}

// rarest returns a random choice among the idle pieces in [lo, hi) that q
// has and that the fewest peers have, or -1.
//
// It scans 64 pieces at a time, so held and busy stretches cost almost
// nothing, from a random word on, wrapping around. Once tieCap pieces are
// found at the lowest availability possible for q (no piece can be rarer),
// it stops: on a large blob where most pieces are equally rare (a swarm
// starting together) a Pick then costs a few words, not a full scan, and the
// random start still spreads the agents over the blob.
func (p *Picker) rarest(q *peer, lo, hi int) int {
	if lo >= hi || (!q.all && q.has == nil) {
		return -1
	}
	floor := int32(1) // a partial peer counts in avail of its own pieces
	if q.all {
		floor = 0
	}
	best := int32(math.MaxInt32)
	p.ties = p.ties[:0]
	wlo, whi := lo/64, (hi-1)/64
	nw := whi - wlo + 1
	start := p.rng.IntN(nw)
	for k := range nw {
		w := wlo + (start+k)%nw
		m := ^(p.have[w] | p.busy[w])
		if !q.all {
			m &= q.has[w]
		}
		if q.skip != nil {
			m &^= q.skip[w]
		}
		if w == wlo {
			m &= ^uint64(0) << (lo % 64)
		}
		if w == whi {
			m &= ^uint64(0) >> (63 - (hi-1)%64)
		}
		for ; m != 0; m &= m - 1 {
			i := w*64 + bits.TrailingZeros64(m)
			switch a := p.avail[i]; {
			case a < best:
				best = a
				p.ties = append(p.ties[:0], int32(i))
			case a == best:
				p.ties = append(p.ties, int32(i))
			}
		}
		if best == floor && len(p.ties) >= tieCap {
			break
		}
	}
	if len(p.ties) == 0 {
		return -1
	}
	return int(p.ties[p.rng.IntN(len(p.ties))])
}

// pickDup returns a piece already in flight to others that q may fetch
// too, fewest copies first, then the oldest request, or -1.
func (p *Picker) pickDup(q *peer) int {
	best, bestDups, bestSeq := -1, int32(0), uint64(0)
	for _, o := range p.peers {
		if o == q {
			continue
		}
		for _, r := range o.reqs {
			d := p.dups[r.piece]
			if d >= int32(p.maxDup) || !q.hasPiece(r.piece) || q.skip.get(r.piece) || q.requested(r.piece) {
				continue
			}
			if best < 0 || d < bestDups || (d == bestDups && r.seq < bestSeq) {
				best, bestDups, bestSeq = r.piece, d, r.seq
			}
		}
	}
	return best
}

func (q *peer) hasPiece(i int) bool { return q.all || q.has.get(i) }

func (q *peer) requested(i int) bool {
	for _, r := range q.reqs {
		if r.piece == i {
			return true
		}
	}
	return false
}

// drop removes q's request for piece i and reports whether there was one.
func (q *peer) drop(i int) bool {
	for k, r := range q.reqs {
		if r.piece == i {
			last := len(q.reqs) - 1
			q.reqs[k] = q.reqs[last]
			q.reqs = q.reqs[:last]
			return true
		}
	}
	return false
}

// bitset is a fixed-size set of piece indexes; a nil bitset is empty.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) get(i int) bool { return b != nil && b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) clear(i int)    { b[i/64] &^= 1 << (i % 64) }

func (b bitset) each(f func(i int)) {
	for w, m := range b {
		for ; m != 0; m &= m - 1 {
			f(w*64 + bits.TrailingZeros64(m))
		}
	}
}
