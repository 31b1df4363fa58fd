package swarm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// rig is one node's swarm over fakes, on a mock clock: the timing logic
// runs in virtual time, and nothing sleeps.
type rig struct {
	clk  *clock.Mock
	st   *memStore
	tp   *scripted
	s    *Swarm
	data []byte
	info *piece.Info
	src  tracker.Source
}

// testPiece is the piece size the default policy gives these small blobs,
// as a store's blob is served with.
const testPiece = piece.MinSize

func newRig(t *testing.T, pieces int, peers []tracker.Peer, answer func(peer.ID, int) error, edit func(*Config)) *rig {
	t.Helper()
	data := make([]byte, pieces*testPiece-100)
	rand.Read(data)
	info := trackertest.InfoFor(data, testPiece)
	clk := clock.NewMock()
	cfg := DefaultConfig()
	if edit != nil {
		edit(&cfg)
	}
	r := &rig{clk: clk, st: newMemStore(), data: data, info: info,
		src: tracker.Source{Repo: "app", Digest: info.Digest}}
	r.tp = &scripted{clk: clk, data: data, info: info, answer: answer}
	s, err := New(cfg, &fakeTracker{info: info, peers: peers}, r.tp, r.st, randomPeer(t, false), WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
	return r
}

// fill runs the blob's download into a fresh writer, with fallback for the
// rest, until ctx ends; the result arrives on the channel.
func (r *rig) fill(ctx context.Context, fallback store.Filler) (*memWriter, <-chan error) {
	w := newMemWriter(len(r.data))
	done := make(chan error, 1)
	go func() { done <- r.s.Filler(r.src, r.info, fallback)(ctx, w) }()
	return w, done
}

// advanceUntil moves the clock by step until cond holds, and reports
// whether it came to hold. It gives up only after steps steps and 20 s of
// real time both: on a loaded machine the swarm's goroutines run late, so
// virtual time may run well past what a quiet run needs (the tests assert
// lower bounds on it only).
func (r *rig) advanceUntil(step time.Duration, steps int, cond func() bool) bool {
	return advanceUntil(r.clk, step, steps, cond)
}

func advanceUntil(clk *clock.Mock, step time.Duration, steps int, cond func() bool) bool {
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < steps || time.Now().Before(deadline); i++ {
		if cond() {
			return true
		}
		clk.Add(step)
	}
	return cond()
}

// wait returns the download's result, failing the test if it never comes
// (a guard, not a synchronisation: a correct run returns at once).
func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the download did not end")
		return nil
	}
}

// A swarm that sends nothing for StallTimeout hands the rest to the origin,
// and not before. Once the store commits the blob, the node announces and
// serves it whole, whatever path brought it; once it is gone, neither.
func TestStallFallsBackToOrigin(t *testing.T) {
	t.Parallel()
	r := newRig(t, 4, []tracker.Peer{randomPeer(t, false)}, func(peer.ID, int) error { return errHang }, nil)
	start := r.clk.Now()
	var mu sync.Mutex
	var fellBack time.Time
	fallback := func(_ context.Context, w store.Writer) error {
		mu.Lock()
		fellBack = r.clk.Now()
		mu.Unlock()
		_, err := w.WriteAt(r.data, 0)
		return err
	}
	w, done := r.fill(t.Context(), fallback)
	called := func() bool { mu.Lock(); defer mu.Unlock(); return !fellBack.IsZero() }
	if !r.advanceUntil(time.Second, 120, called) {
		t.Fatal("no fallback to the origin after 120 s of virtual time")
	}
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if took := fellBack.Sub(start); took <= r.s.cfg.StallTimeout {
		t.Errorf("fell back after %s, before the stall timeout %s", took, r.s.cfg.StallTimeout)
	}
	if !bytes.Equal(w.bytes(), r.data) {
		t.Error("the blob's bytes are wrong")
	}

	// The store commits the blob the origin finished: the one record.
	ctx := t.Context()
	r.st.put(r.data)
	r.s.Changed(r.info.Digest, store.Committed)
	if got := announced(r.s, r.info.Digest); got == nil || !got.Complete || got.Have != r.info.Count() {
		t.Errorf("announced %+v, want complete with %d pieces", got, r.info.Count())
	}
	bits, ch, err := r.s.Watch(ctx, "watcher", r.info.Digest)
	if err != nil || !bits.Full() {
		t.Fatalf("Watch = %v, %v; want every piece", bits, err)
	}
	if _, open := <-ch; open {
		t.Error("the watch of a committed blob is not done")
	}
	for n := range r.info.Count() {
		rc, length, err := r.s.Piece(ctx, r.info.Digest, n)
		if err != nil {
			t.Fatalf("Piece %d of the committed blob: %v", n, err)
		}
		got := make([]byte, length)
		if _, err := rc.Read(got); err != nil || piece.Verify(r.info.Pieces[n], got) != nil {
			t.Errorf("piece %d served wrong: %v", n, err)
		}
		rc.Close()
	}

	// Evicted: no longer announced or served.
	r.st.remove(r.info.Digest)
	r.s.Changed(r.info.Digest, store.Gone)
	if got := announced(r.s, r.info.Digest); got != nil {
		t.Errorf("an evicted blob is still announced: %+v", got)
	}
	if _, _, err := r.s.Piece(ctx, r.info.Digest, 0); !errors.Is(err, p2p.ErrUnknownBlob) {
		t.Errorf("Piece of an evicted blob: %v, want ErrUnknownBlob", err)
	}
}

func announced(s *Swarm, d any) *tracker.BlobState {
	for _, b := range s.announcement(context.Background()).Blobs {
		if b.Digest == d {
			return &b
		}
	}
	return nil
}

// A peer that answers Busy is asked again only after its backoff, which
// doubles from 100 ms up to a second.
func TestBusyBackoff(t *testing.T) {
	t.Parallel()
	r := newRig(t, 4, []tracker.Peer{randomPeer(t, false)}, func(peer.ID, int) error { return p2p.ErrBusy },
		func(c *Config) { c.PerPeer, c.MaxInFlight = 1, 1 })
	ctx, cancel := context.WithCancel(t.Context())
	start := r.clk.Now()
	_, done := r.fill(ctx, func(context.Context, store.Writer) error { return errors.New("no origin here") })
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	if !r.advanceUntil(10*time.Millisecond, 1000, func() bool { return len(r.tp.asked()) > len(want) }) {
		var at []string
		for _, a := range r.tp.asked() {
			at = append(at, a.at.Sub(start).String())
		}
		t.Fatalf("asked %d times in 10 s of virtual time, want %d: at %v", len(at), len(want)+1, at)
	}
	cancel()
	wait(t, done)
	asks := r.tp.asked()
	for i, w := range want {
		if gap := asks[i+1].at.Sub(asks[i].at); gap < w {
			t.Errorf("ask %d came %s after the refusal before it, want at least %s", i+1, gap, w)
		}
	}
}

// The seeder gives each new piece to SeedCopies peers, then only SeedRelax
// after that upload ended, before and after it holds the whole blob.
func TestSeederRations(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3, nil, nil, func(c *Config) { c.SeedCopies, c.SeedRelax = 1, time.Second })
	r.s.seed = true
	ctx := t.Context()
	d := r.st.ingest(r.data)
	r.s.MarkPiece(d, int64(len(r.data)), testPiece, 0)
	r.s.MarkPiece(d, int64(len(r.data)), testPiece, 1)
	get := func(n int) error {
		rc, _, err := r.s.Piece(ctx, d, n)
		if err == nil {
			rc.Close() // the upload ends now
		}
		return err
	}
	steps := []struct {
		advance time.Duration
		n       int
		want    error
	}{
		{0, 0, nil},
		{0, 0, p2p.ErrRationed},
		{0, 1, nil}, // another piece has its own ration
		{500 * time.Millisecond, 0, p2p.ErrRationed},
		{600 * time.Millisecond, 0, p2p.ErrRationed}, // SeedRelax after the first upload ended: still 1
		{3 * time.Second, 0, nil},                    // 4 SeedRelax: 2 copies
		{0, 0, p2p.ErrRationed},
		{4 * time.Second, 0, nil}, // 8 SeedRelax: 4 copies
		{0, 0, nil},
		{0, 0, p2p.ErrRationed},
	}
	for i, st := range steps {
		r.clk.Add(st.advance)
		if err := get(st.n); !errors.Is(err, st.want) {
			t.Errorf("step %d, piece %d: %v, want %v", i, st.n, err, st.want)
		}
	}
	// Once the seeder holds the blob, the ration goes on for pieces whose
	// first upload is recent: every agent lacks the last pieces to arrive
	// from the origin, and a copy each would cost the seeder's link.
	// While a piece it holds has gone to nobody, no piece gets a copy
	// more: its link is the only way in for that one.
	r.s.MarkPiece(d, int64(len(r.data)), testPiece, 2)
	r.st.put(r.data)
	r.s.Changed(d, store.Committed)
	if err := get(1); !errors.Is(err, p2p.ErrRationed) {
		t.Errorf("a second copy of piece 1 while piece 2 has gone to nobody: %v, want rationed", err)
	}
	if err := get(2); err != nil {
		t.Errorf("the first copy of a piece of a committed blob: %v", err)
	}
	if err := get(1); err != nil {
		t.Errorf("a relaxed piece of a committed blob, every piece sent: %v", err)
	}
	if err := get(2); !errors.Is(err, p2p.ErrRationed) {
		t.Errorf("the second copy of a new piece of a committed blob at once: %v, want rationed", err)
	}
	r.clk.Add(4100 * time.Millisecond)
	if err := get(2); err != nil {
		t.Errorf("a committed blob's piece 4 SeedRelax after its first upload: %v", err)
	}
	// Every piece unbounded: the record is gone.
	r.clk.Add(relaxSteps * seedDoubling * time.Second)
	if r.s.rationFor(d) != nil {
		t.Error("the ration of a blob whose pieces are all relaxed is kept")
	}
}

// In the endgame the last piece, in flight to a peer that does not answer,
// is asked of another: the download ends without waiting out the piece
// timeout, and with no time passing at all.
func TestEndgame(t *testing.T) {
	t.Parallel()
	a, b := randomPeer(t, false), randomPeer(t, false)
	aAsked := make(chan struct{})
	var once sync.Once
	answer := func(p peer.ID, _ int) error {
		if p.String() == a.ID {
			once.Do(func() { close(aAsked) })
			return errHang
		}
		return nil
	}
	r := newRig(t, 1, []tracker.Peer{a, b}, answer, nil)
	// b is known only once a holds the piece's request.
	r.tp.watched = func(p peer.ID) {
		if p.String() == b.ID {
			<-aAsked
		}
	}
	w, done := r.fill(t.Context(), func(context.Context, store.Writer) error { return errors.New("fell back") })
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w.bytes(), r.data) {
		t.Error("the blob's bytes are wrong")
	}
	var who []string
	for _, ask := range r.tp.asked() {
		who = append(who, ask.p.String())
	}
	if !slices.Equal(who, []string{a.ID, b.ID}) {
		t.Errorf("asked %v, want a then b", who)
	}
}

// Pieces an earlier run wrote are checked against their CIDs: good ones are
// not fetched again, a corrupt one discards the partial blob instead of
// being announced, served or finished from the origin.
func TestResumeVerifies(t *testing.T) {
	t.Parallel()
	for _, corrupt := range []bool{false, true} {
		r := newRig(t, 4, []tracker.Peer{randomPeer(t, false)}, func(peer.ID, int) error { return nil }, nil)
		w := newMemWriter(len(r.data))
		w.pre(0, r.data[:2*testPiece])
		if corrupt {
			w.data[testPiece+7] ^= 0xff
		}
		fellBack := false
		err := r.s.Filler(r.src, r.info, func(context.Context, store.Writer) error { fellBack = true; return nil })(t.Context(), w)
		if corrupt {
			if !errors.Is(err, store.ErrDigestMismatch) || fellBack {
				t.Errorf("corrupt resumed piece: %v (fell back %v), want a digest mismatch", err, fellBack)
			}
			if len(r.tp.asked()) != 0 {
				t.Errorf("a peer was asked before the resumed pieces were checked: %v", r.tp.asked())
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, ask := range r.tp.asked() {
			if ask.n < 2 {
				t.Errorf("piece %d, written by the earlier run, was fetched again", ask.n)
			}
		}
		if !bytes.Equal(w.bytes(), r.data) {
			t.Error("the blob's bytes are wrong")
		}
	}
}

// fullWriter is a store that cannot take another byte.
type fullWriter struct{ *memWriter }

func (fullWriter) WriteAt([]byte, int64) (int, error) { return 0, syscall.ENOSPC }

// A download whose store cannot take a piece ends at once, asks nobody
// else for it and does not hand the rest to the origin: no peer or origin
// byte can help a full disk.
func TestFullDiskEndsTheDownload(t *testing.T) {
	t.Parallel()
	r := newRig(t, 4, []tracker.Peer{randomPeer(t, false)}, func(peer.ID, int) error { return nil },
		func(c *Config) { c.PerPeer, c.MaxInFlight = 1, 1 })
	fellBack := false
	err := r.s.Filler(r.src, r.info, func(context.Context, store.Writer) error { fellBack = true; return nil })(t.Context(), fullWriter{newMemWriter(len(r.data))})
	if !errors.Is(err, syscall.ENOSPC) || fellBack {
		t.Fatalf("download into a full store: %v (fell back %v), want ENOSPC and no fallback", err, fellBack)
	}
	if n := len(r.tp.asked()); n != 1 {
		t.Errorf("peers were asked %d times, want once", n)
	}
}

// The seeder pauses its origin fetch while seedAhead pieces it holds went
// to nobody and agents ask for the blob; an upload of one of them, or a
// second of silence, lets it go on. A blob nobody asks for is not paced.
func TestSeederPaces(t *testing.T) {
	t.Parallel()
	const pieces = seedAhead + 4
	r := newRig(t, pieces, nil, nil, func(c *Config) { c.SeedCopies, c.SeedRelax = 1, time.Second })
	r.s.seed = true
	ctx := t.Context()
	d := r.st.ingest(r.data)
	for n := range seedAhead + 2 {
		r.s.MarkPiece(d, int64(len(r.data)), testPiece, n)
	}
	if err := r.s.Pace(ctx, d); err != nil {
		t.Fatalf("a blob nobody asked for: %v", err)
	}
	get := func(n int) {
		t.Helper()
		rc, _, err := r.s.Piece(ctx, d, n)
		if err != nil {
			t.Fatalf("piece %d: %v", n, err)
		}
		rc.Close()
	}
	paced := func() <-chan error {
		done := make(chan error, 1)
		go func() { done <- r.s.Pace(ctx, d) }()
		return done
	}
	returned := func(done <-chan error) bool {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Pace: %v", err)
			}
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}
	get(0) // seedAhead+1 unsent, asked now
	done := paced()
	if returned(done) {
		t.Fatal("Pace returned with more than seedAhead pieces unsent while agents ask")
	}
	get(1) // seedAhead unsent: still paused
	if returned(done) {
		t.Fatal("Pace returned with seedAhead pieces unsent")
	}
	get(2)
	if !returned(done) {
		t.Fatal("Pace still waits after an upload left fewer than seedAhead unsent")
	}
	r.s.MarkPiece(d, int64(len(r.data)), testPiece, seedAhead+2)
	done = paced()
	if returned(done) {
		t.Fatal("Pace returned with seedAhead pieces unsent")
	}
	if !r.advanceUntil(100*time.Millisecond, 20, func() bool { return returned(done) }) {
		t.Fatal("Pace still waits a second after the last request")
	}
}

// A blob the seeder holds whole before anyone asks (a seed job's) is
// rationed as one it fetches: each piece to one agent first, the others
// from that one; the record goes once nobody asks, and a later wave is
// rationed afresh.
func TestSeederRationsStoredBlob(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3, nil, nil, func(c *Config) { c.SeedCopies, c.SeedRelax = 1, time.Second })
	r.s.seed = true
	ctx := t.Context()
	r.st.put(r.data)
	d := r.info.Digest
	get := func(n int) error {
		rc, _, err := r.s.Piece(ctx, d, n)
		if err == nil {
			rc.Close()
		}
		return err
	}
	for i, want := range []error{nil, p2p.ErrRationed} {
		if err := get(0); !errors.Is(err, want) {
			t.Errorf("ask %d for piece 0 of a stored blob: %v, want %v", i, err, want)
		}
	}
	if err := get(1); err != nil {
		t.Errorf("the first copy of another piece: %v", err)
	}
	r.clk.Add(4100 * time.Millisecond)
	if err := get(0); err != nil {
		t.Errorf("piece 0, 4 SeedRelax after its first upload: %v", err)
	}
	r.clk.Add(relaxSteps*seedDoubling*time.Second + time.Second)
	if err := get(0); err != nil {
		t.Errorf("a new wave's first ask: %v", err)
	}
	if err := get(0); !errors.Is(err, p2p.ErrRationed) {
		t.Errorf("a new wave's second copy at once: %v, want rationed (a fresh record)", err)
	}
}
