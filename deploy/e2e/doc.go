// Package e2e holds end-to-end tests that run real software: Debian's
// docker-registry as the origin (anonymous, basic auth, token auth), the
// real `shoal` binary (agents and a tracker, as separate processes), and
// the real clients skopeo, crane and containerd's ctr. Install what they
// need with deploy/deps.sh. Without it the tests skip, except under CI=true
// where they fail; containerd tests also need root.
//
// origin_test.go checks the harness (agent/agenttest) against the origin
// directly; agent_test.go pulls through agents; swarm_test.go runs a
// tracker and several agents; bench_test.go compares pulls through an
// agent with pulls from the origin (make bench-agent).
package e2e
