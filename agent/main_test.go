package agent_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it started: agents, trackers, libp2p hosts, fills.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// httptest and net/http keep idle client connections' readers
		// until the transport closes them.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}
