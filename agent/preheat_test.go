package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/tracker"
)

// upstreamResolver is the tracker's Resolver over an upstream client, as
// cmd/shoal wires it (without its error mapping: tests expect success).
type upstreamResolver struct{ up *upstream.Client }

func (r upstreamResolver) Manifest(ctx context.Context, registry, repo, ref string) (string, digest.Digest, []byte, error) {
	d, body, err := r.up.Manifest(ctx, registry, repo, ref)
	return d.MediaType, d.Digest, body, err
}

func (upstreamResolver) Knows(string) bool { return true }

// TestPreheatFetchesPlacedBlobsFromTheSwarm: a seed job with replicas 2
// over two agents ends with both holding every blob, fetched through the
// swarm from the seeder, not from the origin, before any pull.
func TestPreheatFetchesPlacedBlobsFromTheSwarm(t *testing.T) {
	o := newOrigin(t)
	img, _ := random.Image(1<<20, 3)
	push(t, o, "app/preheat", "v1", img)
	tn, _ := startTracker(t, o.URL)
	ucfg := upstream.DefaultConfig()
	ucfg.Default = o.URL
	up, err := upstream.New(ucfg)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	if err := tn.srv.EnableSeedJobs(upstreamResolver{up}, tn.seeder.store); err != nil {
		t.Fatal(err)
	}
	var nodes []*node
	for range 2 {
		pre, err := agent.NewPreheater(agent.DefaultPreheatConfig(), testLogger(), nil)
		if err != nil {
			t.Fatal(err)
		}
		n := startAgent(t, t.TempDir(), func(c *nodeConfig) {
			swarmConfig(tn, o.URL)(c)
			c.Tracker = tn.client.Preheating(pre.Offer)
		})
		pre.Start(n.Agent)
		t.Cleanup(pre.Close)
		nodes = append(nodes, n)
	}
	job, err := tn.srv.CreateSeedJob(tracker.SeedRequest{Images: []string{"app/preheat:v1"}, Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !job.Complete() {
		if job.State == tracker.JobFailed || time.Now().After(deadline) {
			t.Fatalf("job: %+v", job)
		}
		time.Sleep(20 * time.Millisecond)
		if job, err = tn.srv.SeedJob(job.ID); err != nil {
			t.Fatal(err)
		}
	}
	if job.State != tracker.JobDone {
		t.Errorf("complete job in state %s", job.State)
	}
	// An agent announces a blob whole once its last piece is verified; the
	// store commits it right after the digest check.
	for i, n := range nodes {
		for _, b := range job.Blobs {
			for {
				_, err := n.store.Stat(t.Context(), b.Digest)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("agent %d lacks %s after preheat: %v", i, b.Digest, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		if st := n.Stats(); st.Origin != 0 || st.Peer+st.Seeder == 0 {
			t.Errorf("agent %d received %+v: want everything from the swarm", i, st)
		}
	}
	if sent, size := o.blobBytes.Load(), imageBytes(t, img); sent != size {
		t.Errorf("the origin sent %d blob bytes for an image of %d: want one copy, the seeder's", sent, size)
	}
}
