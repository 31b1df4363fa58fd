package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

// As the swarm grows past AnnounceInterval × MaxAnnounceRate peers, the
// interval told over HTTP and in process grows with it, and a peer stays
// listed for the paced TTL.
func TestAnnounceIntervalPaced(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *server.Config) { c.MaxAnnounceRate = 1000 }) // 3 s up to 3,000 peers
	ctx := context.Background()
	blob := []tracker.BlobState{{Digest: digest.FromString("layer"), Have: 1}}
	var interval time.Duration
	for i := range 5000 {
		var err error
		p := tracker.Peer{ID: fmt.Sprintf("agent%d", i), Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}}
		if interval, err = f.tr.Announce(ctx, tracker.Announce{Peer: p, Blobs: blob}); err != nil {
			t.Fatal(err)
		}
		if i == 2000 && interval != 3*time.Second {
			t.Fatalf("at 2,001 peers: interval %s, want the configured 3s", interval)
		}
	}
	if interval != 5*time.Second {
		t.Fatalf("at 5,000 peers: interval %s, want 5s", interval)
	}
	got, err := f.as(t, "http").Announce(ctx, tracker.Announce{Peer: peer("http", false), Blobs: blob})
	if err != nil || got != 5100*time.Millisecond {
		t.Fatalf("over HTTP at 5,001 peers: %s, %v; want 5.1s", got, err)
	}
	f.clock.Advance(12 * time.Second) // past the configured 9 s TTL, within the paced 15 s
	if ok, err := f.tr.Listed(ctx, "agent0"); !ok || err != nil {
		t.Fatalf("12 s after its announce, in a swarm told 5 s: listed %v, %v", ok, err)
	}
	f.clock.Advance(4 * time.Second)
	if ok, err := f.tr.Listed(ctx, "agent0"); ok || err != nil {
		t.Fatalf("16 s after its announce: listed %v, %v; want not listed", ok, err)
	}
}
