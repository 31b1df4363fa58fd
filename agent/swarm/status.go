package swarm

import (
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Download is one blob the swarm is downloading (or, on a seeder, seeding)
// now, as Snapshot reports it.
type Download struct {
	Digest digest.Digest
	Size   int64 // bytes
	Pieces int   // pieces of the blob
	Have   int   // pieces verified and stored
	Peers  int   // peers a session follows for it
}

// Snapshot lists the blobs the swarm is downloading, by digest. Blobs the
// store has committed are not in it: the store is their record. It only
// reads; the downloads go on.
func (s *Swarm) Snapshot() []Download {
	s.mu.Lock()
	blobs := make(map[digest.Digest]*blob, len(s.blobs))
	for d, b := range s.blobs {
		blobs[d] = b
	}
	s.mu.Unlock()
	out := make([]Download, 0, len(blobs))
	for d, b := range blobs {
		b.mu.Lock()
		out = append(out, Download{Digest: d, Size: b.size, Pieces: b.pieces, Have: b.have.Count(), Peers: len(b.followed)})
		b.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Download) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	return out
}
