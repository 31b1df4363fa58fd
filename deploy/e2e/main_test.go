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

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// shoalBin is the shoal binary built once for all tests of the package;
// TestMain sets it before any test runs and nothing changes it after.
var shoalBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shoal-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	shoalBin, err = agenttest.BuildShoal(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = os.RemoveAll(dir) }))
}
