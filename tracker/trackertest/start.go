package trackertest

import (
	"net/http/httptest"
	"testing"

	"github.com/shoal-dev/shoal/tracker"
)

// Tracker is a real tracker served on loopback for one test.
type Tracker struct {
	*tracker.Server
	URL   string
	Token string
}

// Token is the cluster token Start uses when cfg has none.
const Token = "trackertest-token"

// Start serves a tracker with cfg (Token defaulted to the package's Token)
// and seeder on a loopback httptest server, closed when the test ends.
func Start(t testing.TB, cfg tracker.Config, seeder tracker.Seeder, opts ...tracker.Option) *Tracker {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = Token
	}
	s, err := tracker.NewServer(cfg, seeder, opts...)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	// Closing the tracker first ends its long-polls, which the httptest
	// server would otherwise wait for.
	t.Cleanup(func() {
		s.Close()
		hs.Close()
	})
	return &Tracker{Server: s, URL: hs.URL, Token: cfg.Token}
}

// Client returns a client of tr with tr's token.
func (tr *Tracker) Client(t testing.TB, opts ...tracker.ClientOption) *tracker.Client {
	t.Helper()
	c, err := tracker.NewClient(tr.URL, tr.Token, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
