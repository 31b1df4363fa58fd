// Package e2e holds end-to-end tests that run real software: Debian's
// docker-registry as the origin (anonymous, basic auth, token auth), and the
// real clients skopeo, crane and containerd's ctr. Install what they need
// with deploy/deps.sh. Without it the tests skip, except under CI=true where
// they fail; containerd tests also need root.
//
// For now the tests check the harness (agent/agenttest) against the origin
// directly; tests that pull through a Shoal agent build on the same helpers.
package e2e

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
