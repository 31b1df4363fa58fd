package swarm

import (
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoal-dev/shoal/p2p"
)

// The seeder spreads the first copies of its pieces over the peers asking:
// one that got firstSlack more than the one that got the fewest is refused
// (Rationed) a piece nobody has, and gets it again once the others caught
// up; a peer silent for firstWindow no longer holds the others back.
func TestSeederSpreadsFirstCopies(t *testing.T) {
	t.Parallel()
	r := newRig(t, 8, nil, nil, func(c *Config) { c.SeedCopies, c.SeedRelax = 1, time.Second })
	r.s.seed = true
	d := r.st.ingest(r.data)
	for n := range 8 {
		r.s.MarkPiece(d, int64(len(r.data)), testPiece, n)
	}
	a, b := peer.ID("agent a"), peer.ID("agent b")
	get := func(p peer.ID, n int) error {
		rc, _, err := r.s.Piece(p2p.WithRequester(t.Context(), p), d, n)
		if err == nil {
			rc.Close()
		}
		return err
	}
	steps := []struct {
		p    peer.ID
		n    int
		want error
	}{
		{a, 0, nil},             // a: 1
		{b, 0, p2p.ErrRationed}, // piece 0 went to a; b joins the askers at a's 1
		{a, 1, nil},             // a 2, b 1
		{a, 2, nil},             // a 3: it had 2, within the slack of b's 1
		{a, 3, p2p.ErrRationed}, // a has 3, b 1: more than the slack ahead
		{b, 3, nil},             // b 2
		{a, 3, p2p.ErrRationed}, // that copy is b's
		{a, 4, nil},             // a 4, b 2
		{a, 5, p2p.ErrRationed},
	}
	for i, st := range steps {
		if err := get(st.p, st.n); !errors.Is(err, st.want) {
			t.Errorf("step %d, %s asks for piece %d: %v, want %v", i, st.p, st.n, err, st.want)
		}
	}
	// b falls silent: a alone takes every new piece.
	r.clk.Add(firstWindow + time.Millisecond)
	for n := 5; n < 8; n++ {
		if err := get(a, n); err != nil {
			t.Errorf("a alone asks for piece %d: %v", n, err)
		}
	}
}

// A peer new to the record starts at the fewest copies of those asking: it
// takes its share from then on, not every piece until it caught up.
func TestFirstsNewcomer(t *testing.T) {
	t.Parallel()
	var f firsts
	now := time.Unix(0, 0)
	a, b, c := peer.ID("a"), peer.ID("b"), peer.ID("c")
	for range 5 {
		f.note(a, now)
		f.grant(a, now)
		f.note(b, now)
		f.grant(b, now)
	}
	f.note(c, now)
	if !f.grant(c, now) || !f.grant(c, now) {
		t.Error("a newcomer is refused its share")
	}
	if f.grant(c, now) {
		t.Error("a newcomer at the others' count takes more than the slack ahead of them")
	}
	// Without a requester (a Source caller that names none) grant is not
	// asked; a peer never noted is granted.
	if !f.grant(peer.ID("never noted"), now) {
		t.Error("a peer never noted is refused")
	}
}
