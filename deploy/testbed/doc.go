// Package testbed runs a Shoal swarm on one Linux machine: every host is a
// network namespace, all of them plugged into a bridge that lives in a
// namespace of its own, so nothing is added to the root namespace. Each
// host's link is capped in both directions with tc HTB: upload on the
// host's own veth end, download on the bridge-side port. Every host knows
// every other one's hardware address from the start (permanent neighbor
// entries): the kernel's ARP table is shared by all namespaces and too small
// for a big bed.
//
//	     ┌──────────── <prefix>br: br0 ────────────┐
//	     │ p-origin   p-tracker   p-h001 … p-hNNN  │  (download caps)
//	     └────┬───────────┬──────────┬─────────────┘
//	   eth0 ──┘     eth0 ─┘    eth0 ─┘                (upload caps)
//	<prefix>origin  <prefix>tracker  <prefix>h001 …
//	docker-registry shoal tracker    shoal agent on its own 127.0.0.1:5050,
//	                                 crane pulls through it
//
// A Bed owns the namespaces and the processes it starts in them and removes
// all of it on Close; Start first removes what an earlier run with the same
// prefix left behind. Run plays the rollout scenario on a Bed: one image,
// every host pulls it at the same instant through its agent, then the same
// rollout straight from the origin as the no-P2P baseline, and returns a
// Report (table, JSON, SVG chart). With Scenario.Preseed (SEED=1) it
// also starts a fresh swarm, runs `shoal seed IMAGE --wait` with a seed
// token from the tracker's namespace as a CI job would, and rolls that
// image out, reporting the seed's time and what the origin sent during
// the rollout against the cold one. RunFault plays one scenario of the fault
// suite (faults.go, faultinject.go) on a bed of its own: the same rollout
// with one fault injected (a corrupt peer, peers or the tracker killed, the
// origin stopped, an agent restarted, a full disk, a slow peer), checking
// that the survivors got the right bytes and that no stored blob is
// corrupt; cmd/faults is `make bench-faults`.
//
// Everything here needs root, iproute2 (ip, tc) with HTB, Debian's
// docker-registry, crane and a shoal binary; cmd/testbed is the command
// behind `make bench-swarm`.
package testbed
