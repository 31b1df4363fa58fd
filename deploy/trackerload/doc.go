// Package trackerload is the tracker's load generator: `make bench-tracker`
// runs the real tracker (tracker/server's HTTP handler, a stub seeder) in a
// child process pinned to one core with GOMAXPROCS=1, and from another core
// simulates thousands of agents, each with its own Ed25519 key, announcing
// signed over real HTTP/1.1 keep-alive connections. It reports announces a
// second, announces per CPU-second of the tracker (its own user and system
// time over the run, so other load on the machine does not count against
// it), latency percentiles, and the tracker's heap per tracked (peer, blob)
// (runtime.MemStats after a forced GC, before and after every agent
// announced once).
//
// It runs as a test binary, like deploy/sim: the tracker server may be
// linked only by cmd, tests and test helpers (deploy/depcheck).
//
//	load (TestLoad, core 1) ──64 connections, pre-signed announces──▶ tracker (TestLoadServe, core 0)
//	        └──── GET /load/heap (GC, HeapAlloc) and /proc/PID/stat (CPU time) ◀──┘
package trackerload
