package swarm

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// Tracker is what the swarm asks of the tracker.
type Tracker interface {
	MetaInfo(ctx context.Context, src tracker.Source, have int) (*piece.Info, error)
	// MetaInfoAfter long-polls as MetaInfo does with have the pieces of
	// known, and returns known grown by the hashes that came.
	MetaInfoAfter(ctx context.Context, src tracker.Source, known *piece.Info) (*piece.Info, error)
	Peers(ctx context.Context, dgst digest.Digest, self string) ([]tracker.Peer, error)
	Announce(ctx context.Context, a tracker.Announce) (time.Duration, error)
}

// Transport is what the swarm asks of the peer transport (*p2p.Host).
type Transport interface {
	Connect(ctx context.Context, ai peer.AddrInfo) error
	Fetch(ctx context.Context, p peer.ID, dgst digest.Digest, n int, want cid.Cid, buf []byte) ([]byte, error)
	// Follow subscribes w to p's pieces of dgst (see p2p.Host.Follow): w
	// hears the pieces p holds before Follow returns nil, then each piece
	// p announces and the end, without a goroutine of the caller's.
	Follow(ctx context.Context, p peer.ID, dgst digest.Digest, pieces int, w p2p.Watcher) error
}

// Store is what the swarm serves from and what it learns this node holds:
// a blob the store has committed is complete, whatever path brought it.
// OpenWritten reads a blob being downloaded as far as it is written, its
// last piece too: the swarm serves only pieces it verified.
type Store interface {
	OpenWritten(ctx context.Context, dgst digest.Digest) (store.Reader, error)
	Stat(ctx context.Context, dgst digest.Digest) (store.Info, error)
	Walk(ctx context.Context, fn func(store.Info) error) error
}

// Config tunes downloads.
type Config struct {
	// PerPeer is the number of piece requests in flight to one peer.
	PerPeer int
	// MaxInFlight bounds the piece requests in flight for one blob. An
	// image's layers download at once, so a node has this many times its
	// layers in flight; more than its link needs only splits it into
	// smaller transfers, each costing its own packets and wakeups.
	MaxInFlight int
	// NodeInFlight bounds the piece requests in flight for all the blobs
	// the node downloads at once: each download's share is NodeInFlight
	// over the downloads under way, rounded up, between 1 and MaxInFlight
	// (0: MaxInFlight each). A piece is relayed only once it is whole, and
	// the transfers into a node share its download link, so each one in
	// flight beyond what fills the link only delays the pieces the others
	// wait for.
	NodeInFlight int
	// MaxPeers bounds the peers one download follows.
	MaxPeers int
	// PeersRefresh is how often a download asks the tracker for peers.
	PeersRefresh time.Duration
	// StallTimeout: a download that verifies no piece and learns no new
	// piece hash for this long hands the rest to the origin.
	StallTimeout time.Duration
	// PieceTimeout bounds one piece request (the transport also resets
	// transfers that make no progress); once pieces from agents came, a
	// request to an agent is bounded by 16 times their average time, at
	// least 5 s (pieceTimeout).
	PieceTimeout time.Duration
	// SeedCopies, on a seeder, is how many peers get a piece straight from
	// it; the others are refused (rationed) and fetch it from those peers,
	// (an asker refused skips that piece at the seeder for SeedRelax),
	// until 4 SeedRelax after the first of those uploads finished, and
	// from then on twice as many every 4 SeedRelax; no second copy while
	// a piece it holds has gone to nobody; whether or not it holds the
	// whole blob yet (see ration.go).
	SeedCopies int
	SeedRelax  time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		PerPeer:      2,
		MaxInFlight:  8,
		NodeInFlight: 6,
		MaxPeers:     32,
		PeersRefresh: 2 * time.Second,
		StallTimeout: 20 * time.Second,
		PieceTimeout: 60 * time.Second,
		SeedCopies:   1,
		SeedRelax:    time.Second,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.PerPeer < 1 || c.MaxInFlight < 1 || c.MaxPeers < 1 || c.NodeInFlight < 0 {
		return fmt.Errorf("swarm: per-peer %d, max-in-flight %d and max-peers %d must be positive, node-in-flight %d not negative", c.PerPeer, c.MaxInFlight, c.MaxPeers, c.NodeInFlight)
	}
	if c.PeersRefresh <= 0 || c.StallTimeout <= 0 || c.PieceTimeout <= 0 {
		return errors.New("swarm: peers-refresh, stall-timeout and piece-timeout must be positive")
	}
	if c.SeedCopies < 0 || c.SeedRelax < 0 {
		return errors.New("swarm: seed-copies and seed-relax must not be negative")
	}
	return nil
}

// Source of bytes, for the stats and metrics.
const (
	FromPeer   = "peer"
	FromSeeder = "seeder"
	FromOrigin = "origin"
)

// Stats counts the blob bytes this node received, by source.
type Stats struct{ Peer, Seeder, Origin int64 }

// Swarm is one node's membership in the swarm.
type Swarm struct {
	cfg    Config
	log    *slog.Logger
	clock  clock.Clock // every timer and timestamp of the swarm
	tr     Tracker
	tp     Transport
	store  Store
	self   tracker.Peer
	seed   bool
	m      *metrics
	bufs   buffers
	bytes  [3]atomic.Int64 // by source: peer, seeder, origin
	active atomic.Int64    // downloads under way (window)
	kick   chan struct{}   // asks the announce loop to announce now
	pex    *pex            // what keeps downloads going without the tracker
	seed0  *uint64         // set: every session's randomness derives from it
	pool   Buffers         // nil: bufs

	mu      sync.Mutex
	blobs   map[digest.Digest]*blob
	rations map[digest.Digest]*ration // seeder: the copies of each piece uploaded (ration.go)
	firsts  firsts                    // seeder: the first copies each peer got (firsts.go)
}

var _ p2p.Source = (*Swarm)(nil)

// Option configures a Swarm.
type Option func(*Swarm)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Swarm) { s.log = l } }

// WithRegisterer registers the swarm's metrics with r.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(s *Swarm) { s.m, s.pex = newMetrics(r), newPex(r) }
}

// WithClock sets the clock every timeout, backoff and ration of the swarm
// runs on (default: the system clock); tests and the simulator pass a
// clock.Mock.
func WithClock(c clock.Clock) Option { return func(s *Swarm) { s.clock = c } }

// WithSeed makes the swarm's random choices (the order peers are asked in,
// the picker's ties) derive from seed and the blob's digest, so that a run
// on a simulated clock and network is repeated exactly. By default they are
// randomly seeded.
func WithSeed(seed uint64) Option { return func(s *Swarm) { s.seed0 = &seed } }

// AsSeeder makes the node announce itself as the seeder and ration the
// copies of each piece it uploads.
func AsSeeder() Option { return func(s *Swarm) { s.seed = true } }

// New returns a Swarm; self is how the tracker hands this node out.
func New(cfg Config, tr Tracker, tp Transport, st Store, self tracker.Peer, opts ...Option) (*Swarm, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Swarm{
		cfg: cfg, log: slog.New(slog.DiscardHandler), clock: clock.New(), tr: tr, tp: tp, store: st, self: self,
		kick:  make(chan struct{}, 1),
		blobs: make(map[digest.Digest]*blob), rations: make(map[digest.Digest]*ration),
	}
	for _, o := range opts {
		o(s)
	}
	if s.m == nil {
		r := prometheus.NewRegistry()
		s.m, s.pex = newMetrics(r), newPex(r)
	}
	s.self.Seeder = s.seed
	return s, nil
}

// Stats returns the bytes received so far, by source.
func (s *Swarm) Stats() Stats {
	return Stats{Peer: s.bytes[0].Load(), Seeder: s.bytes[1].Load(), Origin: s.bytes[2].Load()}
}

// CountOrigin records bytes this node fetched from the origin outside a
// swarm download (the seeder's fetches, direct pulls).
func (s *Swarm) CountOrigin(n int64) { s.count(FromOrigin, n) }

func (s *Swarm) count(source string, n int64) {
	switch source {
	case FromPeer:
		s.bytes[0].Add(n)
	case FromSeeder:
		s.bytes[1].Add(n)
	default:
		s.bytes[2].Add(n)
	}
	s.m.bytes.WithLabelValues(source).Add(float64(n))
}

// blob is what this node holds of a blob it is still downloading (or
// seeding), shared by the session and the piece server. Blobs the store has
// committed have no blob: the store is their one record (see Changed).
type blob struct {
	mu       sync.Mutex
	size     int64
	pieces   int
	psize    int64
	have     *piece.Bitfield
	subs     map[chan int]peer.ID        // watchers and who they are
	theirs   map[peer.ID]*piece.Bitfield // what peers announced to us
	complete bool
	info     *piece.Info               // the longest metainfo a session knows (see pex.go)
	followed map[peer.ID]*followedPeer // the peers sessions follow now (see pex.go)
}

// track returns the state of dgst, created for a blob of size, or nil if
// the store has committed it: then the store is its record. The check runs
// under mu, and the store commits before it tells Changed (which takes mu),
// so no state outlives a commit.
func (s *Swarm) track(dgst digest.Digest, size, psize int64) *blob {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.blobs[dgst]; ok {
		return b
	}
	if _, err := s.store.Stat(context.Background(), dgst); err == nil {
		return nil
	}
	n := piece.Count(size, psize)
	b := &blob{size: size, pieces: n, psize: psize, have: piece.NewBitfield(n), subs: make(map[chan int]peer.ID), theirs: make(map[peer.ID]*piece.Bitfield)}
	if s.seed && s.rations[dgst] == nil {
		s.rations[dgst] = newRation(n)
	}
	s.blobs[dgst] = b
	s.kickAnnounce()
	return b
}

func (s *Swarm) lookup(dgst digest.Digest) *blob {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blobs[dgst]
}

// markHave records a verified piece and tells the watchers, but those that
// announced it to us: they hold it, and every message costs each side a
// wakeup.
func (b *blob) markHave(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.have.Set(n) {
		return
	}
	for ch, p := range b.subs {
		if bf := b.theirs[p]; bf != nil && bf.Has(n) {
			continue
		}
		ch <- n // never blocks: each channel has room for every piece
	}
	if b.have.Full() {
		b.complete = true
		b.theirs = nil // no more HAVEs to leave out
		for ch := range b.subs {
			close(ch)
			delete(b.subs, ch)
		}
	}
}

// heard records pieces p announced to us for this blob: its bitfield, or
// one piece (n >= 0).
func (b *blob) heard(p peer.ID, bits *piece.Bitfield, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.complete {
		return
	}
	bf := b.theirs[p]
	if bf == nil {
		bf = piece.NewBitfield(b.pieces)
		b.theirs[p] = bf
	}
	if bits != nil {
		for i := range min(bits.Len(), b.pieces) {
			if bits.Has(i) {
				bf.Set(i)
			}
		}
	}
	if n >= 0 && n < b.pieces {
		bf.Set(n)
	}
}

// MarkPiece records that piece n of dgst (a blob of size, cut in pieces of
// psize) is verified and in the store. The seeder calls it as pieces arrive
// from the origin.
func (s *Swarm) MarkPiece(dgst digest.Digest, size, psize int64, n int) {
	if b := s.track(dgst, size, psize); b != nil {
		b.markHave(n)
	}
	if s.seed {
		if r := s.rationFor(dgst); r != nil {
			r.hold(n)
		}
	}
}

// Watch implements p2p.Source.
func (s *Swarm) Watch(ctx context.Context, p peer.ID, dgst digest.Digest) (*piece.Bitfield, <-chan int, error) {
	b := s.lookup(dgst)
	if b == nil {
		count, err := s.stored(ctx, dgst)
		if err != nil {
			return nil, nil, err
		}
		have := piece.NewBitfield(count)
		for n := range count {
			have.Set(n)
		}
		ch := make(chan int)
		close(ch)
		return have, ch, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	have, _ := piece.ParseBitfield(b.have.Bytes(), b.pieces)
	ch := make(chan int, b.pieces)
	if b.complete {
		close(ch)
		return have, ch, nil
	}
	b.subs[ch] = p
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	})
	return have, ch, nil
}

// stored returns the piece count of a blob the store has committed (pieces
// cut by the default policy, as the seeder cuts them), or ErrUnknownBlob.
func (s *Swarm) stored(ctx context.Context, dgst digest.Digest) (int, error) {
	info, err := s.store.Stat(ctx, dgst)
	if err != nil {
		return 0, p2p.ErrUnknownBlob
	}
	return piece.Count(info.Size, piece.SizeFor(info.Size)), nil
}

// Piece implements p2p.Source.
func (s *Swarm) Piece(ctx context.Context, dgst digest.Digest, n int) (io.ReadCloser, int64, error) {
	var size, psize int64
	var done func()
	count := 0 // of a stored blob
	b := s.lookup(dgst)
	if b != nil {
		b.mu.Lock()
		switch {
		case !b.have.Has(n):
			b.mu.Unlock()
			return nil, 0, p2p.ErrNoPiece
		}
		size, psize = b.size, b.psize
		b.mu.Unlock()
	} else {
		var err error
		if count, err = s.stored(ctx, dgst); err != nil {
			return nil, 0, err
		}
		if n < 0 || n >= count {
			return nil, 0, p2p.ErrNoPiece
		}
	}
	if s.seed {
		rat := s.rationFor(dgst)
		if rat == nil && b == nil {
			rat = s.storedRation(dgst, count)
		}
		var first func() bool
		if p, ok := p2p.Requester(ctx); ok {
			s.firsts.note(p, s.clock.Now())
			first = func() bool { return s.firsts.grant(p, s.clock.Now()) }
		}
		if rat != nil && !rat.ok(n, s.cfg, s.clock.Now(), first) {
			return nil, 0, p2p.ErrRationed
		}
		if rat != nil {
			done = func() { rat.ended(n, s.clock.Now()) }
		}
	}
	r, err := s.store.OpenWritten(ctx, dgst)
	if err != nil {
		if b == nil {
			return nil, 0, p2p.ErrUnknownBlob // evicted since
		}
		return nil, 0, fmt.Errorf("swarm: piece %d of %s: %w", n, dgst, err)
	}
	if b == nil {
		size = r.Size()
		psize = piece.SizeFor(size)
	}
	off := int64(n) * psize
	length := min(psize, size-off)
	return readCloser{Reader: io.NewSectionReader(r, off, length), r: r, done: done}, length, nil
}

type readCloser struct {
	io.Reader
	r    store.Reader
	done func()
}

func (rc readCloser) Close() error {
	if rc.done != nil {
		rc.done()
	}
	return rc.r.Close()
}

// Run announces this node's blobs to the tracker until ctx ends, at the
// interval the tracker asks for, and at once when a download starts.
func (s *Swarm) Run(ctx context.Context) {
	interval := time.Second
	t := s.clock.Timer(interval)
	defer t.Stop()
	// The first announce goes out at once; after it, the loop waits for
	// the interval or a kick, only one of which is ready when it looks
	// (so that a simulated run does not hinge on select's random choice).
	failing := 0 // announces failed in a row: the first is a warning, the rest are counted
	for ctx.Err() == nil {
		next, err := s.tr.Announce(ctx, s.announcement(ctx))
		switch {
		case err != nil && ctx.Err() == nil:
			s.m.announceErrors.Inc()
			if failing++; failing == 1 {
				s.log.Warn("announce failed; retrying, further failures logged at debug level", "err", err)
			} else {
				s.log.Debug("announce failed", "err", err, "in_a_row", failing)
			}
		case err == nil:
			if failing > 0 {
				s.log.Info("announce works again", "failed_in_a_row", failing)
			}
			failing = 0
			if next > 0 {
				interval = next * 2 / 3 // re-announce well within the tracker's TTL
			}
		}
		t.Reset(interval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

func (s *Swarm) kickAnnounce() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// announcement lists the blobs this node downloads, then those its store
// holds, up to what one announce may carry. An announce is the whole list:
// the tracker forgets what it leaves out.
func (s *Swarm) announcement(ctx context.Context) tracker.Announce {
	a := tracker.Announce{Peer: s.self}
	listed := make(map[digest.Digest]bool)
	s.mu.Lock()
	for d, b := range s.blobs {
		b.mu.Lock()
		a.Blobs = append(a.Blobs, tracker.BlobState{Digest: d, Have: b.have.Count(), Complete: b.complete})
		b.mu.Unlock()
		listed[d] = true
	}
	s.mu.Unlock()
	errFull := errors.New("announce full")
	err := s.store.Walk(ctx, func(info store.Info) error {
		if len(a.Blobs) >= tracker.MaxAnnounceBlobs {
			return errFull
		}
		if !listed[info.Digest] && info.Digest.Algorithm() == digest.SHA256 {
			a.Blobs = append(a.Blobs, tracker.BlobState{Digest: info.Digest, Have: piece.Count(info.Size, piece.SizeFor(info.Size)), Complete: true})
		}
		return nil
	})
	if errors.Is(err, errFull) {
		s.log.Debug("store holds more blobs than one announce carries", "announced", len(a.Blobs))
	}
	return a
}

// Changed takes the store's news (store.Disk.OnChange): a blob committed by
// any path (the swarm, the seeder, the origin fallback, a plain pull) is
// complete, served and announced from the store from now on; a blob gone
// from the store is no longer announced. Either way the download state of
// the blob, if any, is dropped: the store is the record.
func (s *Swarm) Changed(dgst digest.Digest, c store.Change) {
	s.mu.Lock()
	b := s.blobs[dgst]
	delete(s.blobs, dgst)
	if c != store.Committed {
		delete(s.rations, dgst)
	}
	s.mu.Unlock()
	if b != nil && c == store.Committed {
		s.committed(b) // its metainfo, for peers that ask
		// Watchers hear Done: the node holds every piece now. Those of a
		// blob that is gone hear nothing more; a piece they ask for is
		// answered UnknownBlob, and they stop following this node.
		b.mu.Lock()
		b.complete = true
		for ch := range b.subs {
			close(ch)
			delete(b.subs, ch)
		}
		b.mu.Unlock()
	}
	s.kickAnnounce()
}

// rng returns the randomness of one session of dgst: seeded from WithSeed
// and the digest, or at random. Each session has its own, touched only by
// its loop.
func (s *Swarm) rng(dgst digest.Digest) *rand.Rand {
	if s.seed0 == nil {
		return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	h := fnv.New64a()
	h.Write([]byte(dgst))
	h.Write([]byte(s.self.ID))
	return rand.New(rand.NewPCG(*s.seed0, h.Sum64()))
}
