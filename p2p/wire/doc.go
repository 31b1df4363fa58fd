// Package wire encodes and decodes the messages of Shoal's two peer
// protocols. It is pure: no I/O beyond the reader it is handed, no state,
// nothing of libp2p, so it can be fuzzed on its own.
//
// A message is a frame:
//
//	uvarint length | type byte | payload (length-1 bytes)
//
// Every uvarint must be minimally encoded, so each message has exactly one
// encoding. Digests travel as 32 raw sha256 bytes. Lengths are checked
// before anything is allocated: a frame is at most MaxMessage bytes, except a
// Bitfield, which may reach MaxBitfieldMessage.
//
// Messages:
//
//	PieceRequest  1  digest[32] index:uvarint
//	PieceHeader   2  status:byte length:uvarint      (then length raw bytes, unframed)
//	WatchRequest  3  digest[32] pieces:uvarint
//	Bitfield      4  status:byte bits[...]           (bits only with StatusOK)
//	Have          5  index:uvarint
//	Done          6  (empty)
package wire
