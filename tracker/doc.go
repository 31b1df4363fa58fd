// Package tracker is the API of Shoal's control plane: the types agents and
// the tracker exchange, their checks, the error codes, and the Client the
// agents use. The tracker server is package tracker/server; agents link
// only this package.
//
// An in-memory tracker hands out peers for a blob and serves the blob's
// metainfo; a cluster runs one, or several replicas that share nothing:
// Replicas (replica.go) sends each digest's questions to the replica that
// ranks first for it by rendezvous hashing, and moves them to the next when
// that one stops answering. A tracker keeps no database: restarting it loses nothing
// the agents do not re-announce within one interval. It is seeded by the
// origin: the first demand for a digest's metainfo starts one seeding by its
// seeder (an agent in seed mode, in the tracker's process), which reports
// the metainfo as it grows, piece by piece, while the origin download is
// still running, so agents exchange pieces before the seeder holds the
// whole blob.
//
//	agent ──announce──▶ Server ◀──progress(Info)── Seeder ──fetch──▶ origin
//	agent ◀──peers───── Server                       │
//	agent ◀─metainfo─── Server ──Seed(first demand)──┘
//	agent ◀═════════ pieces from peers and the seeder ═════════▶ agent
//
// # HTTP API
//
// Every /v1 route requires "Authorization: Bearer <token>" (401 otherwise).
// Errors are JSON bodies {"code": "...", "message": "..."} with codes
// PENDING (202), INVALID (400), UNAUTHORIZED (401), NOT_FOUND (404) and
// UNAVAILABLE (503); the client maps them back to the sentinel errors.
// Request bodies are bounded (1 MiB) and decoded strictly: unknown fields,
// trailing data and out-of-range values are rejected.
//
//	POST /v1/announce
//	    body {"peer": {"id", "addrs", "seeder"}, "blobs": [{"digest", "have", "complete"}], "pieces": 2}
//	    → 200 {"intervalMs": N}: announce again within N ms or be forgotten
//	    (N grows with the swarm past MaxAnnounceRate, tracker/server).
//	    The blobs are everything the peer holds: those it listed last time
//	    and leaves out now are withdrawn at once. "seeder": true is refused
//	    (401): the only seeder is the tracker's own, announcing in process.
//	    The request carries "Shoal-Signature: t=<unix seconds>,sig=<base64url>",
//	    the announcing peer's libp2p signature over the exact body and t
//	    (see SignatureHeader); unsigned, stale (more than 5 min off), forged
//	    or another peer's ID: 401. Malformed bodies are 400 first. With
//	    "Shoal-Session: new" the answer adds "session": {"key", "expires"},
//	    and later announces may carry "Shoal-Session: id=,e=,t=,mac=" in
//	    place of the signature (SessionHeader).
//	GET /v1/peers/{id}
//	    → 200 {"listed": bool}: whether id announced within the peer TTL (peer
//	    admission asks it); 503 for an unlisted ID in the first peer TTL after
//	    the tracker started, when it cannot tell yet.
//	GET /v1/blobs/{digest}/peers?self=ID&pieces=2
//	    → 200 {"peers": [{"id", "addrs", "seeder", "complete", "have"}]}
//	    Complete peers and seeders first (shuffled), then incomplete ones
//	    (shuffled); never self, never an agent of another piece policy.
//	GET /v1/blobs/{digest}/metainfo?registry=HOST[:PORT]&repo=NAME&have=N&pieces=2
//	    → 200 piece.Info as JSON once more than N pieces are known or the
//	    Info is complete; waits at most MetaInfoWait, then answers what is
//	    known, or 202 {"code": "PENDING"} if nothing is known yet. Without
//	    have (or have=-1) answers as soon as anything is known. An unknown
//	    digest starts seeding it from registry/repo (registry empty: the
//	    default upstream); a failed seeding answers 404 (the origin does not
//	    have it) or 503 (the origin could not be reached) for SeedErrorTTL.
//	    Beyond MaxSeeding seedings at once, a new one answers 503.
//	    With from=M (the asker holds the first M hashes) an answer that
//	    knows more than M carries only the hashes from piece M on and
//	    "from": M (MetaInfoDelta); a long poll would otherwise send every
//	    held hash again at each new piece, across the seeder's link.
//	GET /v1/status
//	    → 200 Status: the swarms (holders, complete, seeding), the live
//	    peers and the seed jobs, for operators (shoal status --tracker).
//	GET /status → the same as an HTML page that refreshes itself; the
//	    cluster token is the password of HTTP Basic authentication (a
//	    browser cannot send a bearer token), any user name.
//	POST /v1/seed (seed token)
//	    body {"images": [REF...], "platforms": ["os/arch"...], "replicas": K,
//	          "shard": {"of": [NAME...], "self": NAME}}: with a shard, only
//	          the blobs self owns among the tracker replicas of (SeedShard)
//	    → 202 SeedJob: the tracker resolves the images and its seeder fetches
//	    every blob, verified, pinned for SeedPinTTL; with K, K agents get
//	    each blob in their announce answers ("preheat"). The same request as
//	    a live job answers that job; a full queue 429 {"code": "BUSY"}. A
//	    cluster token gets 403 {"code": "FORBIDDEN"}, as does a seed token
//	    on every route but the seed API and the webhooks.
//	GET /v1/seed/{id} (seed or cluster token)
//	    → 200 SeedJob {"state", "blobs": [{"digest", "size", "state",
//	    "bytes", "holders"}], "pinnedUntil"}; 404 once the tracker forgot it
//	    (jobs live in memory).
//	POST /v1/webhooks/distribution, POST /v1/webhooks/harbor (seed token)
//	    → 202 {"jobs": [ID...], "ignored": N}; 400 with the reason for a
//	    malformed envelope or payload.
//	GET /healthz → 200, no token (for liveness probes).
//
// Piece policy: the peers and metainfo requests name the asker's piece
// policy (pieces=N, piece.Policy; absent means 1) and are answered only
// for this tracker's own, with the header "Shoal-Pieces: N"; another
// policy is 409 {"code": "PIECE_POLICY"}, a metainfo request before any
// seeding. An announce names it as "pieces": N; one of another policy is
// taken (the peer stays listed) with its blobs left out, so no agent is
// handed a peer whose piece n is not its own. The client takes no answer
// to those two requests without the header (a tracker older than policy
// 2 sends none): ErrPolicy.
package tracker
