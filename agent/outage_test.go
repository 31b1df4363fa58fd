package agent_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
)

// The tracker and its seeder die in the middle of a rollout: every agent
// still completes with verified digests, from the peers it knows and those
// they tell it of, and from the origin for what no peer holds. The kill
// waits until every agent has received bytes from the swarm, and no agent
// can have finished before it.
//
//   - seeder still fetching: the origin holds its last quarter of the image
//     until the tracker is dead, so the piece hashes of the rest are known
//     to nobody at the kill; the first agents to fall back to the origin
//     tell the others the hashes of what they fetched once they hold it.
//   - seeder done: the seeder has the whole image and the agents the whole
//     metainfo, but their links are slow, so pieces only the seeder had
//     are lost with it.
//
// The origin copies are logged, not asserted: how much of the image only
// the seeder knew or held at the kill, and how many agents stall and fall
// back at once, depends on timing.
func TestSwarmTrackerKilledMidway(t *testing.T) {
	for _, tc := range []struct {
		name         string
		seederDone   bool
		downloadRate int64
	}{
		{name: "seeder still fetching"},
		{name: "seeder done", seederDone: true, downloadRate: 4 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t)
			img, _ := random.Image(8<<20, 2)
			push(t, o, "app/outage", "v1", img)
			size := imageBytes(t, img)
			release := func() {}
			if !tc.seederDone {
				o.slow.Store(int64(time.Millisecond)) // ~30 MB/s: the seeder is still fetching at the kill
				release = o.holdAfter(t, size*3/4)
			}
			tn, stop := startTracker(t, o.URL)
			nodes := make([]*node, 5)
			for i := range nodes {
				nodes[i] = startAgent(t, t.TempDir(), func(c *nodeConfig) {
					swarmConfig(tn, o.URL)(c)
					c.Swarm.StallTimeout = 3 * time.Second
					c.P2P.DownloadRate = tc.downloadRate
				})
			}

			var wg sync.WaitGroup
			var finished atomic.Int32
			for i, nd := range nodes {
				wg.Go(func() {
					if _, err := fetchImage(t.Context(), nd, "app/outage", ":v1"); err != nil {
						t.Errorf("agent %d: %v", i, err)
						return
					}
					finished.Add(1)
				})
			}
			received := func(n *node) int64 { st := n.Stats(); return st.Peer + st.Seeder }
			deadline := time.Now().Add(30 * time.Second)
			for _, nd := range nodes {
				for received(nd) < 1<<20 || (tc.seederDone && o.blobBytes.Load() < size) {
					if time.Now().After(deadline) {
						release()
						wg.Wait()
						t.Fatalf("an agent received only %d bytes from the swarm in 30 s; origin sent %d of %d", received(nd), o.blobBytes.Load(), size)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			atKill := o.blobBytes.Load()
			stop()
			if n := finished.Load(); n != 0 {
				t.Errorf("%d agents had finished before the tracker died: the kill was not mid-rollout", n)
			}
			release()
			start := time.Now()
			wg.Wait()
			t.Logf("tracker and seeder killed with %d of %d bytes from the origin; the agents finished %s later", atKill, size, time.Since(start).Round(time.Millisecond))

			if n := finished.Load(); n != int32(len(nodes)) {
				t.Fatalf("%d of %d agents completed the pull", n, len(nodes))
			}
			sent := o.blobBytes.Load()
			var exchanged, fromPeers, fallbacks float64
			for i, nd := range nodes {
				st := nd.Stats()
				exchanged += metricValue(t, nd, "shoal_swarm_peers_exchanged_total")
				fromPeers += metricValue(t, nd, "shoal_swarm_metainfo_from_peers_total")
				fallbacks += metricValue(t, nd, "shoal_swarm_origin_fallbacks_total")
				t.Logf("agent %d: peer %d, seeder %d, origin %d", i, st.Peer, st.Seeder, st.Origin)
			}
			t.Logf("origin sent %d blob bytes for an image of %d (%.2f copies); %v downloads fell back; %v peers exchanged, %v metainfos from peers",
				sent, size, float64(sent)/float64(size), fallbacks, exchanged, fromPeers)
		})
	}
}

// With the tracker gone, an agent that pulls an image others already hold
// gets its metainfo and its bytes from them: it asks the peers it met in an
// earlier pull, which name the others. Nothing comes from the origin.
func TestSwarmTrackerDownPullFromPeersMetEarlier(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	warm, _ := random.Image(1<<20, 1)
	push(t, o, "app/warm", "v1", warm)
	img, _ := random.Image(4<<20, 2)
	push(t, o, "app/main", "v1", img)
	tn, stop := startTracker(t, o.URL)
	nodes := make([]*node, 4)
	for i := range nodes {
		nodes[i] = startAgent(t, t.TempDir(), swarmConfig(tn, o.URL))
	}
	late := startAgent(t, t.TempDir(), swarmConfig(tn, o.URL))
	// The late agent meets the others in an earlier pull: after theirs, so
	// that its handout names them (pulling at once, it may meet only the
	// seeder, which goes with the tracker).
	pullAll(t, nodes, "app/warm", ":v1")
	pull(t, late, "app/warm", ":v1")
	pullAll(t, nodes, "app/main", ":v1")
	stop()

	before := late.Stats()
	pull(t, late, "app/main", ":v1")
	st := late.Stats()
	t.Logf("late agent, for the image: peer %d, seeder %d, origin %d", st.Peer-before.Peer, st.Seeder-before.Seeder, st.Origin-before.Origin)
	if st.Origin != before.Origin {
		t.Errorf("the late agent fetched %d bytes from the origin with peers holding the image", st.Origin-before.Origin)
	}
	if got := metricValue(t, late, "shoal_swarm_metainfo_from_peers_total"); got == 0 {
		t.Error("no metainfo came from peers")
	}
	if got := metricValue(t, late, "shoal_agent_tracker_unavailable_total"); got != 0 {
		t.Errorf("the agent fell back to the upstream %v times", got)
	}
}
