package tracker

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// Rank orders names (of tracker replicas) for key (a digest or a peer ID)
// by rendezvous hashing: by the score sha256(name ‖ 0x00 ‖ key), its first
// 8 bytes big-endian, highest first; ties (never seen in practice) by name.
// The first is key's owner; when it leaves, the rest keep their order, so
// only the keys it owned move, each to the next in its own rank. Every
// agent computes the same order from the same names, with no coordination.
// It returns indexes into names.
func Rank(names []string, key string) []int {
	scores := make([]uint64, len(names))
	buf := make([]byte, 0, 256)
	for i, n := range names {
		buf = append(append(append(buf[:0], n...), 0), key...)
		sum := sha256.Sum256(buf)
		scores[i] = binary.BigEndian.Uint64(sum[:8])
	}
	idx := make([]int, len(names))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return cmpString(names[a], names[b])
	})
	return idx
}
