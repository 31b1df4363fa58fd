// Package sim is a deterministic rollout simulator that runs Shoal's own
// scheduling code: every node is a real swarm.Swarm (sessions, the picker,
// backoffs, timeouts, the seeder's rationing), every piece upload goes
// through the real p2p.UploadGate (slots and queue), and the tracker is the
// real tracker/server.Server (announces, the handout, metainfo long-polls,
// the seeding it starts). Only the clock and the bytes are simulated.
//
// Time is virtual: the simulation runs inside a testing/synctest bubble, so
// the clocks of the code under test are the bubble's fake clock, which moves
// only when every goroutine is blocked. Everything that crosses a node's
// boundary (piece requests and answers, HAVEs, tracker calls, the seeder's
// origin fetch) is an event in one queue, ordered by virtual time and a key
// made of what the event is (kind, nodes, blob, piece), and the driver
// delivers one event at a time and waits (synctest.Wait) until the code it
// woke is blocked again. With every random choice seeded (swarm.WithSeed,
// server.WithSeed), the same configuration and seed give the same run.
//
// Transfers are flows over a network model (net.go): each host has an upload
// and a download capacity, shared max-min fairly among the flows that cross
// it (progressive filling), and a one-way latency to every other host. The
// capacities are resources a flow crosses, so per-zone uplinks are one more
// resource on a cross-zone flow. A message (a refusal, a HAVE, a watch's
// end or bitfield) waits behind up to Config.Window bytes of each piece its
// sender is sending the same host, as on their one connection (hol.go),
// at the rates of the flows the instant it leaves ends with.
// No byte is moved or hashed: pieces carry
// CIDs of their names, the simulated transport hands the swarm a shared
// buffer, and a blob all of whose pieces are written is committed as is.
//
//	driver ──event──▶ node transport / tracker calls / seeder ──▶ real code
//	   ▲                                                              │
//	   └──── push(at, key) ◀── net flows, latencies, replies ◀────────┘
//
// synctest runs only in a test binary: `make sim` runs TestSim with flags
// (see sim_test.go), and TestSimSmall checks determinism in `make test`.
package sim
