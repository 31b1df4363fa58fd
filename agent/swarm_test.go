package agent_test

import (
	"context"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/p2ptest"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

func swarmConfig(tn *trackerNode, originURL string) func(*nodeConfig) {
	return func(c *nodeConfig) {
		c.Upstream.Default = originURL
		c.Tracker = tn.client
		c.Swarm.PeersRefresh = 300 * time.Millisecond
	}
}

func imageBytes(t *testing.T, img v1.Image) int64 {
	t.Helper()
	layers, _ := img.Layers()
	var total int64
	for _, l := range layers {
		n, _ := l.Size()
		total += n
	}
	raw, _ := img.RawConfigFile()
	return total + int64(len(raw))
}

// Ten agents pull one image at the same instant: the origin sends it about
// once, and every agent gets bytes from the others.
func TestSwarmRolloutOriginSendsOnce(t *testing.T) {
	o := newOrigin(t)
	img, _ := random.Image(6<<20, 3)
	push(t, o, "app/rollout", "v1", img)
	tn, _ := startTracker(t, o.URL)

	const n = 10
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = startAgent(t, t.TempDir(), swarmConfig(tn, o.URL))
	}
	pullAll(t, nodes, "app/rollout", ":v1")

	size := imageBytes(t, img)
	sent := o.blobBytes.Load()
	t.Logf("origin sent %d blob bytes for an image of %d (%.2f copies)", sent, size, float64(sent)/float64(size))
	if float64(sent) > 1.2*float64(size) {
		t.Errorf("origin sent %.2f copies of the image, want ≤ 1.2", float64(sent)/float64(size))
	}
	for i, nd := range nodes {
		st := nd.Stats()
		t.Logf("agent %d: peer %d, seeder %d, origin %d", i, st.Peer, st.Seeder, st.Origin)
		if st.Peer == 0 {
			t.Errorf("agent %d received nothing from other agents", i)
		}
		if st.Origin != 0 {
			t.Errorf("agent %d fetched %d bytes from the origin", i, st.Origin)
		}
	}
}

// A peer that serves corrupt pieces is dropped; nobody stores or serves its
// bytes, and every pull completes with verified digests.
func TestSwarmCorruptPeerIsDropped(t *testing.T) {
	o := newOrigin(t)
	img, _ := random.Image(3<<20, 2)
	push(t, o, "app/corrupt", "v1", img)
	tn, _ := startTracker(t, o.URL)

	// The liar: a libp2p host that claims every layer and serves garbage.
	src := p2ptest.NewMemorySource()
	src.SetCorrupt(true)
	layers, _ := img.Layers()
	var blobs []tracker.BlobState
	for _, l := range layers {
		rc, _ := l.Compressed()
		data, _ := io.ReadAll(rc)
		rc.Close()
		info := src.AddBlob(data, piece.SizeFor(int64(len(data))))
		blobs = append(blobs, tracker.BlobState{Digest: info.Digest, Have: info.Count(), Complete: true})
	}
	liar, err := p2p.New(p2p.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { liar.Close() })
	if err := liar.Serve(src); err != nil {
		t.Fatal(err)
	}
	self := tracker.Peer{ID: liar.ID().String()}
	for _, a := range liar.Addrs() {
		self.Addrs = append(self.Addrs, a.String())
	}
	tc := tn.client
	ctx, cancel := context.WithCancel(context.Background())
	var announcing sync.WaitGroup
	announcing.Go(func() {
		for ctx.Err() == nil {
			tc.Announce(ctx, tracker.Announce{Peer: self, Blobs: blobs})
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
	t.Cleanup(func() { cancel(); announcing.Wait() })
	// The liar is handed out for every layer before anyone asks.
	for _, b := range blobs {
		waitForPeer(t, tc, b.Digest, self.ID)
	}

	nodes := []*node{startAgent(t, t.TempDir(), swarmConfig(tn, o.URL)), startAgent(t, t.TempDir(), swarmConfig(tn, o.URL))}
	pullAll(t, nodes, "app/corrupt", ":v1")
	// Every pulled byte was verified by pullAll; the liar's pieces were
	// refused, so it was asked at least once and dropped.
	dropped := 0.0
	for _, nd := range nodes {
		dropped += metricValue(t, nd, "shoal_swarm_peers_dropped_total")
	}
	if dropped == 0 {
		t.Error("no agent dropped the peer serving corrupt pieces")
	}
}

// An agent that dies in the middle of a rollout costs the others nothing
// but its in-flight pieces.
func TestSwarmPeerKilledMidway(t *testing.T) {
	o := newOrigin(t)
	o.slow.Store(int64(time.Millisecond)) // ~30 MB/s: the rollout lasts a moment
	img, _ := random.Image(8<<20, 2)
	push(t, o, "app/kill", "v1", img)
	tn, _ := startTracker(t, o.URL)
	nodes := make([]*node, 4)
	for i := range nodes {
		nodes[i] = startAgent(t, t.TempDir(), swarmConfig(tn, o.URL))
	}
	var wg sync.WaitGroup
	for _, nd := range nodes[1:] {
		wg.Go(func() {
			if _, err := fetchImage(t.Context(), nd, "app/kill", ":v1"); err != nil {
				t.Errorf("survivor: %v", err)
			}
		})
	}
	victim := nodes[0]
	wg.Go(func() {
		r, _ := name.ParseReference(victim.host()+"/app/kill:v1", name.Insecure)
		if img, err := remote.Image(r); err == nil {
			layers, _ := img.Layers()
			for _, l := range layers {
				if rc, err := l.Compressed(); err == nil {
					io.Copy(io.Discard, rc) // fails once the victim is gone
					rc.Close()
				}
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for victim.Stats().Peer+victim.Stats().Seeder < 1<<20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	victim.srv.CloseClientConnections()
	victim.srv.Close()
	victim.Close()
	wg.Wait()
}

// With the tracker gone, agents pull straight from the upstream.
func TestSwarmTrackerDownFallsBackToUpstream(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	img, _ := random.Image(1<<20, 2)
	push(t, o, "app/notracker", "v1", img)
	tn, stop := startTracker(t, o.URL)
	a := startAgent(t, t.TempDir(), swarmConfig(tn, o.URL))
	stop()
	pull(t, a, "app/notracker", ":v1")
	if st := a.Stats(); st.Origin == 0 || st.Peer+st.Seeder != 0 {
		t.Errorf("stats %+v: want every byte from the origin", st)
	}
	if v := metricValue(t, a, "shoal_agent_tracker_unavailable_total"); v == 0 {
		t.Error("tracker outage not counted")
	}
}

// pullAll pulls ref through every node at once and checks every pull.
func pullAll(t *testing.T, nodes []*node, repo, ref string) {
	t.Helper()
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Go(func() {
			if _, err := fetchImage(t.Context(), nd, repo, ref); err != nil {
				t.Errorf("agent %d: %v", i, err)
			}
		})
	}
	wg.Wait()
}

// waitForPeer waits until the tracker hands out id for d.
func waitForPeer(t *testing.T, tc *tracker.Client, d digest.Digest, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		peers, err := tc.Peers(ctx, d, "")
		if slices.ContainsFunc(peers, func(p tracker.Peer) bool { return p.ID == id }) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("tracker does not hand out %s for %s after 10 s (last answer %v, %v)", id, d, peers, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// metricValue sums a metric's samples from the agent's registerer.
func metricValue(t *testing.T, n *node, metric string) float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
