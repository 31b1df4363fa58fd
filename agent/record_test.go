package agent_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/p2ptest"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// The store is the one record of what a node holds: a blob it commits
// outside any swarm download (a plain pull, an origin fallback) is
// announced complete and served to peers at once, and a blob it drops is
// withdrawn from the tracker and refused to peers.
func TestStoreIsTheRecord(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	tn, _ := startTracker(t, o.URL)
	a := startAgent(t, t.TempDir(), swarmConfig(tn, o.URL))
	ctx := t.Context()

	data := make([]byte, 3<<20+123)
	rand.Read(data)
	d := digest.FromBytes(data)
	r, err := a.store.Fetch(ctx, d, int64(len(data)), func(_ context.Context, w store.Writer) error {
		_, err := w.WriteAt(data, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()

	holder := waitForHandout(t, tn.client, d, func(ps []tracker.Peer) bool { return len(ps) == 1 && ps[0].Complete })
	psize := piece.SizeFor(int64(len(data)))
	if want := piece.Count(int64(len(data)), psize); holder.Have != want {
		t.Errorf("announced %d pieces, want %d", holder.Have, want)
	}

	// A peer fetches a piece from it.
	client, err := p2p.New(p2p.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if err := client.Serve(p2ptest.NewMemorySource()); err != nil {
		t.Fatal(err)
	}
	ai := addrInfo(t, holder)
	if err := client.Connect(ctx, ai); err != nil {
		t.Fatal(err)
	}
	last := piece.Count(int64(len(data)), psize) - 1
	want := data[int64(last)*psize:]
	got, err := client.Fetch(ctx, ai.ID, d, last, piece.Sum(want), make([]byte, len(want)))
	if err != nil || string(got) != string(want) {
		t.Fatalf("fetch of the last piece: %v", err)
	}

	// Evicted (here: deleted): withdrawn and refused.
	if err := a.store.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitForHandout(t, tn.client, d, func(ps []tracker.Peer) bool { return len(ps) == 0 })
	if _, err := client.Fetch(ctx, ai.ID, d, 0, piece.Sum(data[:psize]), make([]byte, psize)); !errors.Is(err, p2p.ErrUnknownBlob) {
		t.Errorf("fetch from a node that dropped the blob: %v, want ErrUnknownBlob", err)
	}
}

// waitForHandout polls the tracker's handout of d until ok holds (bounded)
// and returns its first peer, if any.
func waitForHandout(t *testing.T, c *tracker.Client, d digest.Digest, ok func([]tracker.Peer) bool) tracker.Peer {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps, err := c.Peers(t.Context(), d, "")
		if err == nil && ok(ps) {
			if len(ps) > 0 {
				return ps[0]
			}
			return tracker.Peer{}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracker hands out %+v (err %v) after 10 s", ps, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a remote state, bounded
	}
}

func addrInfo(t *testing.T, p tracker.Peer) peer.AddrInfo {
	t.Helper()
	id, err := peer.Decode(p.ID)
	if err != nil {
		t.Fatal(err)
	}
	ai := peer.AddrInfo{ID: id}
	for _, a := range p.Addrs {
		ma, err := multiaddr.NewMultiaddr(a)
		if err != nil {
			t.Fatal(err)
		}
		ai.Addrs = append(ai.Addrs, ma)
	}
	return ai
}
