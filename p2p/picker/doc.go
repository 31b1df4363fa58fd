// Package picker chooses which piece of a blob to request from which peer.
//
// The download session of one blob owns a Picker and asks it, each time a
// peer has a free request slot, which piece to ask that peer for. The policy:
//
//   - Only pieces whose hash is known (SetKnown), that we do not hold, that
//     the peer announced, and that are not already requested from the peer
//     are candidates.
//   - Pieces in flight to nobody come first. Within the in-order window (the
//     Window pieces from the first missing one on), so that a runtime
//     reading the blob in order gets its bytes soon, the rarest wins;
//     otherwise the rarest piece overall wins. Ties are broken at random,
//     never by index: agents that start together must not all ask for the
//     same piece.
//   - Endgame: once the metainfo is complete and every missing piece is in
//     flight, a piece may be requested from up to MaxDup peers at once
//     (fewest copies first, then the oldest request). When one copy arrives
//     the session cancels the others, found with InFlight.
//
// The package does no I/O, starts no goroutines, reads no clock and imports
// nothing else of Shoal. A Picker is not safe for concurrent use: only the
// session's event loop touches it.
package picker
