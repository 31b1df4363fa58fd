// Package server is the tracker: peer handouts, metainfo long-polls and the
// seeding of each blob from the origin, behind the HTTP API that package
// tracker describes and its Client speaks.
//
//	HTTP handlers ─┐
//	               ├─▶ Announce / Peers / MetaInfo ─▶ swarm (who holds what, lazy expiry)
//	seeder, in ────┘                               └─▶ entries (metainfo per digest, LRU) ─Seed─▶ Seeder
//	process
//
// The same three methods serve HTTP requests and, in process, the swarm of
// the tracker's own seeder, so *Server is a swarm.Tracker as a
// tracker.Client is. The seeder needs the server and the server needs the
// seeder: New builds the server, the caller builds the seeder over it, and
// Start hands the seeder in, before the server is used.
//
// An announce over HTTP counts only when signed by the key of its peer ID
// (tracker.VerifyAnnounce); the seeder's, in process, is trusted as it is.
// Listed (GET /v1/peers/{id}) tells agents and the seeder which peer IDs
// to admit (admit.go).
//
// The first demand for a digest's metainfo starts one Seed, deduplicated
// across askers, in a goroutine owned by the server (an impatient first
// asker does not cancel it). Its progress replaces the entry's Info only
// when consistent with what is known; a failure is remembered for
// SeedErrorTTL so a storm of askers does not hammer the origin.
//
// Seed jobs (job.go; EnableSeedJobs, after Start, gives them a Resolver
// and a Pinner, the seeder's upstream client and store) resolve images to
// blobs and run each blob through the same entries as a first demand, one
// task per digest however many jobs want it, then pin it in the seeder's
// store. Webhooks (webhook.go) turn a registry's push into a job. A job
// with replicas K places each blob on the K live agents ranking highest by
// rendezvous hashing (preheat.go); the answer to an announce carries the
// agent's share. Jobs live in memory like everything else.
//
// State is in memory and bounded: (peer, blob) pairs expire after PeerTTL
// without an announce, metainfos beyond MaxInfos are dropped least recently
// asked first, and at most MaxSeeding seedings run at once. Time comes from
// an injected Clock. Metrics are registered on the injected
// prometheus.Registerer; the caller mounts them.
package server
