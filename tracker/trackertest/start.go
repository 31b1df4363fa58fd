package trackertest

import (
	"net/http/httptest"
	"testing"

	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

// Tracker is a real tracker served on loopback for one test.
type Tracker struct {
	*server.Server
	URL   string
	Token string
}

// Token is the cluster token Start uses when cfg has none.
const Token = "trackertest-token"

// Start serves a tracker with cfg (Token defaulted to the package's Token)
// and seeder on a loopback httptest server, closed when the test ends.
func Start(t testing.TB, cfg server.Config, seeder server.Seeder, opts ...server.Option) *Tracker {
	t.Helper()
	if len(cfg.Tokens) == 0 {
		cfg.Tokens = []string{Token}
	}
	s, err := server.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(seeder); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	// Closing the tracker first ends its long-polls, which the httptest
	// server would otherwise wait for.
	t.Cleanup(func() {
		s.Close()
		hs.Close()
	})
	return &Tracker{Server: s, URL: hs.URL, Token: cfg.Tokens[0]}
}

// Client returns a client of tr with tr's token.
func (tr *Tracker) Client(t testing.TB, opts ...tracker.Option) *tracker.Client {
	t.Helper()
	c, err := tracker.NewClient(tr.URL, tr.Token, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
