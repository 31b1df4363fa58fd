package swarm

import (
	"testing"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
)

// TestSnapshot: the downloads under way, by digest, with the pieces held;
// a blob the store commits leaves the snapshot.
func TestSnapshot(t *testing.T) {
	t.Parallel()
	s := &Swarm{blobs: map[digest.Digest]*blob{}, clock: clock.New(), store: newMemStore()}
	if got := s.Snapshot(); len(got) != 0 {
		t.Fatalf("idle swarm: %+v", got)
	}
	a, b := digest.FromString("a"), digest.FromString("b")
	s.MarkPiece(a, 10<<20, 1<<20, 3)
	s.MarkPiece(a, 10<<20, 1<<20, 4)
	s.MarkPiece(b, 1<<20, 1<<20, 0)
	got := s.Snapshot()
	want := []Download{
		{Digest: a, Size: 10 << 20, Pieces: 10, Have: 2},
		{Digest: b, Size: 1 << 20, Pieces: 1, Have: 1},
	}
	if a > b {
		want[0], want[1] = want[1], want[0]
	}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Snapshot = %+v, want %+v", got, want)
	}
	s.blobs[a].follow(peer.AddrInfo{ID: peer.ID("followed")})
	if got := s.Snapshot(); got[indexOf(got, a)].Peers != 1 {
		t.Errorf("followed peers of a: %+v, want 1", got)
	}
	s.Changed(b, store.Gone)
	if got := s.Snapshot(); len(got) != 1 || got[0].Digest != a {
		t.Errorf("after b left: %+v", got)
	}
}

func indexOf(ds []Download, d digest.Digest) int {
	for i := range ds {
		if ds[i].Digest == d {
			return i
		}
	}
	return -1
}
