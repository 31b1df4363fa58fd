// Package wire encodes and decodes the messages of Shoal's peer protocols
// (piece, have, meta). It is pure: no I/O beyond the reader it is handed,
// no state, nothing of libp2p (peer IDs and multiaddrs travel as opaque
// bytes for the caller to parse), so it can be fuzzed on its own.
//
// A message is a frame:
//
//	uvarint length | type byte | payload (length-1 bytes)
//
// Every uvarint must be minimally encoded, so each message has exactly one
// encoding. Digests and piece CIDs travel as 32 raw sha256 bytes. Lengths
// are checked before anything is allocated: a frame is at most MaxMessage
// bytes, except a Bitfield, which may reach MaxBitfieldMessage, and a Meta,
// which may reach MaxMetaMessage (about 195 KiB).
//
// Messages:
//
//	PieceRequest  1  digest[32] index:uvarint
//	PieceHeader   2  status:byte length:uvarint      (then length raw bytes, unframed)
//	WatchRequest  3  digest[32] pieces:uvarint
//	Bitfield      4  status:byte bits[...]           (bits only with StatusOK)
//	Have          5  index:uvarint
//	Done          6  (empty)
//	MetaRequest   7  digest[32] from:uvarint
//	Meta          8  status:byte                     (the rest only with StatusOK:)
//	                 size:uvarint pieceSize:uvarint from:uvarint
//	                 count:uvarint sha256[32]×count  (CIDs of pieces from … from+count-1)
//	                 peers:uvarint ( idLen:uvarint id naddrs:uvarint ( len:uvarint addr )×naddrs )×peers
//
// A Meta's shape is checked as it is decoded: size ≥ 1, piece size in
// [1, piece.MaxSize], at most piece.MaxPieces pieces, from + count within
// them, count ≤ MaxMetaPieces, at most MaxMetaPeers peers of at most
// MaxPeerAddrs addresses, every ID and address 1 to MaxPeerID or MaxAddr
// bytes.
package wire
