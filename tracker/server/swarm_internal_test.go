package server

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/shoal-dev/shoal/tracker"
)

// drawn hands out what a partial Fisher-Yates shuffle of a copy of the
// group without self would, with the same draws, and leaves the group as
// it was.
func TestDrawnIsTheShuffleOfACopy(t *testing.T) {
	t.Parallel()
	for size := range 12 {
		var g []*holding
		for i := range size {
			g = append(g, &holding{peer: &ident{id: fmt.Sprintf("p%02d", i)}})
		}
		for _, self := range []string{"none", "p00", "p05", "p11"} {
			for max := range size + 2 {
				seed := uint64(size*1000 + max)
				want := func() []tracker.Peer {
					var c []*holding
					for _, h := range g {
						if h.peer.id != self {
							c = append(c, h)
						}
					}
					draw := rand.New(rand.NewPCG(seed, 0)).IntN
					var out []tracker.Peer
					for i := 0; i < len(c) && len(out) < max; i++ {
						j := i + draw(len(c)-i)
						c[i], c[j] = c[j], c[i]
						out = append(out, c[i].handed(false))
					}
					return out
				}()
				before := slices.Clone(g)
				got := drawn(g, self, nil, max, rand.New(rand.NewPCG(seed, 0)).IntN)
				if !slices.EqualFunc(got, want, func(a, b tracker.Peer) bool { return a.ID == b.ID }) {
					t.Errorf("%d holders, self %s, max %d: drew %v, the shuffle %v", size, self, max, got, want)
				}
				if !slices.Equal(g, before) {
					t.Errorf("%d holders, self %s, max %d: the group changed", size, self, max)
				}
			}
		}
	}
}
