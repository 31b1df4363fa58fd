// Package p2p is Shoal's peer transport: a libp2p host that serves pieces of
// blobs to other agents out of a local Source, fetches pieces from them, and
// follows which pieces they hold. It decides nothing: which piece to ask of
// whom is the download scheduler's job.
//
//	scheduler ──Fetch(peer, digest, n, cid)──▶ Host ──/shoal/piece/2.0.0──▶ remote Host ──▶ Source.Piece
//	scheduler ◀──bitfield, HAVE n…, close─── Host ◀──/shoal/have/2.0.0──── remote Host ◀── Source.Watch
//	swarm ◀──metainfo, peers──Meta(peer, digest, known)── Host ◀──/shoal/meta/2.0.0── remote Host ◀── MetaSource.Meta
//
// A Host starts in two steps: New listens and can fetch at once; Serve hands
// it the Source it answers from. The swarm, which fetches through the host,
// is that Source, so the caller builds the host, then the swarm, then calls
// Serve.
//
// # Transport
//
// TCP only, TLS 1.3 (or Noise) and yamux; optionally a libp2p private network
// (PSK) that only cluster members can join, and a connection gater that
// admits only the peers Config.Admit admits, asked again on every piece,
// have and meta request: agents and the seeder pass Admission.Admit, which
// admits the peers the tracker lists (admit.go). Relay, hole punching,
// NAT services, QUIC, mDNS and any DHT are left out. The resource manager is
// given explicit limits: libp2p's defaults (8 connections per peer, a few
// dozen streams per protocol, small memory) starve a swarm and keep yamux
// windows at 256 KiB instead of letting them grow to 16 MiB.
//
// # Wire protocol (framing in package wire)
//
// /shoal/piece/2.0.0: one request at a time per stream, so yamux
// multiplexes many in flight, and a stream carries one request after another.
//
//	client → PieceRequest{digest, index}
//	server → PieceHeader{status, length}, then exactly length raw bytes
//	… the next request on the same stream, or the client closes it
//
// A client keeps the streams whose last exchange ended cleanly (up to 16
// per peer) and reuses them for later requests to that peer: a piece then
// costs no yamux open and close frames, no multistream negotiation and no
// window updates while the stream's receive window has grown. The server
// closes a stream that stays idle for 10 s; clients reuse only streams
// idle for less than half of that, and retry on a new stream when a reused
// one turns out closed before it answered. A stream whose transfer failed,
// or whose piece did not match its CID, is reset, never reused.
//
// A status other than OK carries no bytes: NoPiece (not held yet), Busy
// (MaxUploads uploads under way and no room or time left to wait in line
// for one: ask someone else), Rationed (a seeder gives this piece to a few
// peers only: get it from them, other pieces may still be asked for),
// UnknownBlob, BadRequest, Internal. The server consults its source before
// it takes an upload slot, so refusals never wait in line. The client checks the bytes against the
// piece CID it already knows from the metainfo, so a lying peer is caught
// (ErrBadPiece) and never trusted for the content.
//
// /shoal/have/2.0.0: a subscription per stream.
//
//	client → WatchRequest{digest, pieces}, then keeps its write side open
//	server → Bitfield{status, bits}                   pieces held now
//	server → Have{index} …                            each piece verified later, but those the client announced to the server
//	server → Done, then closes                        the server holds the whole blob
//
// The client ends a subscription early by closing or resetting the stream;
// anything it sends after the request is a protocol error.
//
// /shoal/meta/2.0.0: what a peer knows of a blob, so that a swarm goes on
// when its tracker stops answering. Requests follow one another on a stream,
// as on the piece protocol.
//
//	client → MetaRequest{digest, from}
//	server → Meta{status, size, pieceSize, from, CIDs of pieces from…, peers}
//	… the next request (from where a full answer stopped), or the client closes
//
// An answer carries at most 4096 CIDs and 32 peers (ID and up to 8
// multiaddrs each), never the asker or the server itself. The host speaks it
// only if its Source is also a MetaSource (found by type assertion), and
// answers 16 requests at once at most (Busy beyond). The client checks the
// answer's shape, that it starts where it asked and keeps its shape across
// answers, and that every peer ID and address parses; anything else is
// ErrProtocol. What a peer says is its word only: the caller compares the
// shape with what it knows, and every piece is still checked against its
// CID, the blob against its digest.
//
// Malformed or oversized messages reset the stream; the peer is logged and
// counted in shoal_p2p_protocol_errors_total. Servers bound the time to
// receive a request and to make progress on each write; clients bound the
// time without progress while receiving, and honour their context.
package p2p
