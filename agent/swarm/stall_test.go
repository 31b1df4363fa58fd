package swarm

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoal-dev/shoal/p2p/picker"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// A session waits the whole stall timeout while a seeder is followed or
// its peers hold every piece it lacks; a quarter of it once it follows no
// seeder and lacks a piece none of its peers holds (the seeder died with
// the tracker): nobody is left to bring that piece in.
func TestStallSoonerWithoutSeeder(t *testing.T) {
	t.Parallel()
	const pieces = 4
	cfg := DefaultConfig()
	info := &piece.Info{Size: pieces << 20, PieceSize: 1 << 20}
	for n := range pieces {
		info.Pieces = append(info.Pieces, piece.Sum([]byte{byte(n)}))
	}
	for _, tc := range []struct {
		name   string
		seeder bool
		holds  int // pieces the followed agent holds
		sooner bool
	}{
		{"agent holds every piece", false, pieces, false},
		{"seeder followed, a piece nobody holds", true, pieces - 1, false},
		{"no seeder, a piece nobody holds", false, pieces - 1, true},
	} {
		ss := &session{
			s:     &Swarm{cfg: cfg, self: tracker.Peer{ID: "self"}},
			src:   tracker.Source{Digest: "sha256:" + "ab"},
			count: pieces,
			info:  info,
			pick:  picker.New(pieces, picker.DefaultOptions()),
			peers: make(map[peer.ID]*remote),
		}
		ss.peers["agent"] = &remote{id: "agent"}
		for n := range tc.holds {
			ss.pick.PeerHas("agent", n)
		}
		if tc.seeder {
			ss.peers["seeder"] = &remote{id: "seeder", seeder: true}
		}
		got := ss.stallAfter()
		if sooner := got < cfg.StallTimeout; sooner != tc.sooner {
			t.Errorf("%s: stalls after %s (stall timeout %s), want sooner %v", tc.name, got, cfg.StallTimeout, tc.sooner)
		}
	}
}
