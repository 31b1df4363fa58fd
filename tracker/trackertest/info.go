package trackertest

import (
	"slices"

	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
)

// InfoFor returns the complete metainfo of blob cut into pieces of
// pieceSize, with real piece CIDs.
func InfoFor(blob []byte, pieceSize int64) *piece.Info {
	info := &piece.Info{Digest: digest.FromBytes(blob), Size: int64(len(blob)), PieceSize: pieceSize}
	h := piece.NewHasher(pieceSize, func(_ int, c cid.Cid) { info.Pieces = append(info.Pieces, c) })
	h.Write(blob)
	h.Close()
	return info
}

// Prefix returns a copy of info that knows only its first n pieces, as a
// seeder reports it mid-download.
func Prefix(info *piece.Info, n int) *piece.Info {
	p := *info
	p.Pieces = slices.Clone(info.Pieces[:n])
	return &p
}
