package swarm

import (
	"testing"

	"github.com/ipfs/go-cid"

	"github.com/shoal-dev/shoal/p2p/piece"
)

// Metainfo handed over with Hashed answers peers as is, without hashing
// the blob again; metainfo of another shape, or of a blob the store does
// not hold, is ignored.
func TestHashed(t *testing.T) {
	r := newRig(t, 3, nil, nil, nil)
	r.st.put(r.data)
	marked := *r.info
	marked.Pieces = append([]cid.Cid(nil), r.info.Pieces...)
	marked.Pieces[0] = piece.Sum([]byte("not the first piece")) // a hash of its own would not say this

	wrongShape := marked
	wrongShape.PieceSize *= 2
	r.s.Hashed(&wrongShape)
	r.s.Hashed(nil)
	r.s.Hashed(&marked)
	got, _, err := r.s.Meta(t.Context(), r.info.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Pieces[0].Equals(marked.Pieces[0]) {
		t.Error("Meta hashed the blob instead of answering the metainfo handed over")
	}

	other := newRig(t, 2, nil, nil, nil) // its store does not hold the blob
	other.s.Hashed(other.info)
	if _, _, err := other.s.Meta(t.Context(), other.info.Digest); err == nil {
		t.Error("metainfo of a blob the store does not hold was kept")
	}
}
