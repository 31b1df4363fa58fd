// Package agenttest holds helpers for tests that exercise Shoal against real
// software: an origin registry (Debian's docker-registry, CNCF distribution
// 2.8) with optional basic or bearer-token auth, generated images and
// indexes, and the real pull clients (skopeo, crane, containerd's ctr).
//
// Import it only from tests. Every helper takes a testing.TB, ties what it
// starts to t.Cleanup and fails the test with the tool's output when a tool
// fails. A missing binary skips the test, except under CI=true where it is
// fatal: CI must have everything deploy/deps.sh installs.
//
// A typical end-to-end test:
//
//	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
//	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 3, LayerSize: 1 << 20})
//	ref := origin.Push(t, img, "app:v1")
//	dir := agenttest.CranePull(t, ref, nil)
//	agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, dir), img)
//
// The origin is reached through a counting TCP proxy in the test process,
// so a test can assert how many bytes and which requests reached it.
package agenttest
