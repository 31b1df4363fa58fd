package swarm

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// A ranged read asks peers for the pieces that cover it and no others, and
// ends the fill partial.
func TestRangeFillerFetchesOnlyTheRange(t *testing.T) {
	t.Parallel()
	r := newRig(t, 8, []tracker.Peer{randomPeer(t, false)}, func(peer.ID, int) error { return nil }, nil)
	size := int64(len(r.data))
	footer := store.Range{Off: size - 51, Len: 51}
	w := newMemWriter(len(r.data))
	err := r.s.RangeFiller(r.src, r.info, footer, func(context.Context, store.Writer, *piece.Info, []int) error {
		return errors.New("no origin here")
	})(t.Context(), w)
	if !errors.Is(err, store.ErrPartial) {
		t.Fatalf("ranged fill: %v, want ErrPartial", err)
	}
	var asked []int
	for _, a := range r.tp.asked() {
		asked = append(asked, a.n)
	}
	if last := r.info.Count() - 1; !slices.Equal(asked, []int{last}) {
		t.Errorf("asked for pieces %v, want only the last one (%d)", asked, last)
	}
	if got := w.bytes()[footer.Off:]; !bytes.Equal(got, r.data[footer.Off:]) {
		t.Error("the footer's bytes are wrong")
	}
}

// When the swarm stalls, the fallback gets exactly the wanted pieces still
// missing.
func TestRangeFillerFallsBack(t *testing.T) {
	t.Parallel()
	r := newRig(t, 8, []tracker.Peer{randomPeer(t, false)}, func(peer.ID, int) error { return errHang }, nil)
	want := store.Range{Off: 2*testPiece + 10, Len: testPiece} // pieces 2 and 3
	var mu sync.Mutex
	var got []int
	fallback := func(_ context.Context, w store.Writer, info *piece.Info, pieces []int) error {
		mu.Lock()
		got = pieces
		mu.Unlock()
		for _, n := range pieces {
			off, length := info.Span(n)
			if _, err := w.WriteAt(r.data[off:off+length], off); err != nil {
				return err
			}
		}
		return nil
	}
	w := newMemWriter(len(r.data))
	done := make(chan error, 1)
	go func() { done <- r.s.RangeFiller(r.src, r.info, want, fallback)(t.Context(), w) }()
	called := func() bool { mu.Lock(); defer mu.Unlock(); return got != nil }
	if !r.advanceUntil(time.Second, 120, called) {
		t.Fatal("no fallback after 120 s of virtual time")
	}
	if err := wait(t, done); !errors.Is(err, store.ErrPartial) {
		t.Fatalf("ranged fill: %v, want ErrPartial", err)
	}
	if !slices.Equal(got, []int{2, 3}) {
		t.Errorf("fallback got pieces %v, want [2 3]", got)
	}
}
