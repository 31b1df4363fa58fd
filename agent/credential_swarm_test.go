package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/tracker"
)

// A private image the seeder cannot fetch (it has no credentials for the
// origin): the first agent whose requester is authorised fetches it from
// the origin with the requester's credentials, and the next agent gets it
// from that one, not from the origin. Every agent still authorises its own
// requesters: an anonymous pull through the second agent, which now holds
// every blob, is refused.
func TestRequesterPrivateBlobSharedInSwarm(t *testing.T) {
	t.Parallel()
	o := newPrivateOrigin(t, false)
	img, err := random.Image(2<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	o.push(t, "private/app:v1", img)
	tn, _ := startTracker(t, o.auth.URL)
	start := func() *node {
		return startAgent(t, t.TempDir(), func(c *nodeConfig) {
			swarmConfig(tn, o.auth.URL)(c)
			c.Upstream.Credentials = upstream.ModeRequester
			c.Swarm.StallTimeout = 2 * time.Minute // counts of the protocol, not of the machine's speed
		})
	}
	tenant := &authn.Basic{Username: tenantUser, Password: tenantPass}
	a := start()
	if err := pullWith(t, a, "private/app:v1", tenant); err != nil {
		t.Fatalf("first agent: %v", err)
	}
	size := imageBytes(t, img)
	if st := a.Stats(); st.Origin == 0 {
		t.Fatalf("first agent: %+v, want the blobs from the origin", st)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		waitForAnyPeer(t, tn.client, digest.Digest(d.String()))
	}

	b := start()
	if err := pullWith(t, b, "private/app:v1", authn.Anonymous); err == nil {
		t.Fatal("anonymous pull through the second agent succeeded")
	}
	if err := pullWith(t, b, "private/app:v1", tenant); err != nil {
		t.Fatalf("second agent: %v", err)
	}
	st := b.Stats()
	t.Logf("second agent: peer %d, seeder %d, origin %d; image %d bytes", st.Peer, st.Seeder, st.Origin, size)
	if st.Peer == 0 {
		t.Errorf("second agent received nothing from the first: %+v", st)
	}
	if err := pullWith(t, b, "private/app:v1", authn.Anonymous); err == nil {
		t.Fatal("anonymous pull through the second agent, which holds the image, succeeded")
	}
	if err := pullWith(t, b, "private/app:v1", &authn.Basic{Username: tenantUser, Password: "wrong"}); err == nil {
		t.Fatal("a pull with a wrong password through the second agent succeeded")
	}
}

// waitForAnyPeer waits until the tracker hands out some peer for d.
func waitForAnyPeer(t *testing.T, tc *tracker.Client, d digest.Digest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		peers, err := tc.Peers(ctx, d, "")
		if len(peers) > 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("tracker hands out no peer for %s after 10 s (%v)", d, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
