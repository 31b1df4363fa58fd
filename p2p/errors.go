package p2p

import "errors"

var (
	// ErrNoPiece: the peer does not hold the piece (yet). A Source returns it too.
	ErrNoPiece = errors.New("p2p: piece not held")
	// ErrUnknownBlob: the peer has nothing of the blob. A Source returns it too.
	ErrUnknownBlob = errors.New("p2p: unknown blob")
	// ErrBusy: the peer is serving as many uploads as it allows.
	ErrBusy = errors.New("p2p: peer busy")
	// ErrRationed: the peer gives this piece to a few peers only (a seeder
	// spreading new pieces); get it from them. A Source returns it too.
	ErrRationed = errors.New("p2p: piece rationed")
	// ErrBadPiece: the bytes received do not match the piece's CID. Drop the
	// peer for this blob.
	ErrBadPiece = errors.New("p2p: piece does not match its CID")
	// ErrProtocol: the peer broke the wire protocol.
	ErrProtocol = errors.New("p2p: protocol error")
	// ErrRemote: the peer failed to serve the request for its own reasons.
	ErrRemote = errors.New("p2p: remote error")
	// ErrClosed: the Host is closed.
	ErrClosed = errors.New("p2p: host closed")
	// ErrInvalidConfig wraps every Config.Validate failure.
	ErrInvalidConfig = errors.New("p2p: invalid config")
)
