// Package piece cuts a blob into fixed-size pieces and names every piece by
// its content: a CIDv1 with the raw codec and a sha2-256 multihash, so a
// piece's name is its hash and any holder can be checked byte for byte.
//
// An Info (the blob's metainfo) lists the digest, the size, the piece size
// and the piece CIDs. While the seeder is still fetching a blob from the
// origin, an Info may hold only a prefix of the pieces; it is Complete once
// every piece is known. A complete Info is itself content-addressed (Info.CID).
//
// The package does no I/O and imports nothing else of Shoal, so the tracker,
// the peer transport and the agent can all share it.
package piece
