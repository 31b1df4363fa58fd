package agent_test

import (
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/tracker"
)

const clusterToken = "test-cluster-token"

// startTracker runs a tracker with its seeder in front of the origin.
func startTracker(t *testing.T, originURL string) *agent.TrackerNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcfg := tracker.DefaultConfig()
	tcfg.Token = clusterToken
	tcfg.AnnounceInterval = 500 * time.Millisecond
	tcfg.PeerTTL = 5 * time.Second
	seed := agent.DefaultConfig()
	seed.DataDir = t.TempDir()
	seed.Upstream.Default = originURL
	tn, err := agent.NewTrackerNode(agent.ListenURL(ln), tcfg, seed)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: tn.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); tn.Close() })
	return tn
}

func swarmConfig(tn *agent.TrackerNode, originURL string) func(*agent.Config) {
	return func(c *agent.Config) {
		c.Upstream.Default = originURL
		c.Tracker = tn.URL
		c.TrackerToken = clusterToken
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
	tn := startTracker(t, o.URL)

	const n = 10
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = startAgent(t, t.TempDir(), swarmConfig(tn, o.URL))
	}
	var wg sync.WaitGroup
	for _, nd := range nodes {
		wg.Go(func() { pull(t, nd, "app/rollout", ":v1") })
	}
	wg.Wait()

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
