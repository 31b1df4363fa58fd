// Package swarm downloads blobs piece by piece from other agents and shares
// the pieces this node holds, including those of blobs still downloading.
//
//	store.Fetch ──Filler──▶ session (one event loop per blob)
//	                          ├─ tracker: metainfo (long-poll, grows while the seeder fetches), peers
//	                          ├─ p2p.Host.Watch: which pieces each peer holds (bitfield, then HAVEs)
//	                          ├─ picker: which piece to ask of which peer
//	                          └─ p2p.Host.Fetch ─▶ verify CID ─▶ Writer.WriteAt ─▶ announce HAVE to watchers
//
// Only a session's loop touches its state; fetches and watches run in
// goroutines that post their results back to it. A piece reaches the store
// only after its bytes matched the CID from the metainfo, and the store
// checks the whole blob against its digest before the last byte is served.
// When the swarm makes no progress for a while, the session hands the rest
// of the blob to the origin fallback.
//
// Swarm also implements p2p.Source: it answers other peers from the store,
// for pieces it has verified. The caller builds the p2p host first, the
// swarm over it, then starts the host serving the swarm (p2p.Host.Serve),
// and runs the swarm's announce loop (Run). Its Tracker is a
// tracker.Client for an agent, or the tracker server itself, in process,
// for the tracker's seeder.
package swarm
