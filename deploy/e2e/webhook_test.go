package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/shoal-dev/shoal/agent/agenttest"
	"github.com/shoal-dev/shoal/tracker"
)

// TestDistributionWebhookSeeds: Debian's docker-registry sends its
// notifications to the tracker; crane pushes a new image; the seeder holds
// every blob of it without anyone asking, and a rollout afterwards takes no
// blob from the origin. A Harbor payload naming an image of the same
// registry seeds it too.
func TestDistributionWebhookSeeds(t *testing.T) {
	t.Parallel()
	trackerAddr := fmt.Sprintf("127.0.0.1:%d", agenttest.FreePort(t))
	notify := fmt.Sprintf(`notifications:
  endpoints:
    - name: shoal
      url: http://%s/v1/webhooks/distribution
      headers:
        Authorization: [Bearer %s]
      timeout: 2s
      threshold: 3
      backoff: 500ms
`, trackerAddr, seedSeedToken)
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{Extra: notify})
	tr := startSeedTracker(t, origin, "--listen", trackerAddr, "--webhook-repos", "hook/*")
	nodes := []*agenttest.Shoal{
		startAgent(t, origin, "--tracker", tr.URL, "--tracker-token", seedClusterToken),
		startAgent(t, origin, "--tracker", tr.URL, "--tracker-token", seedClusterToken),
	}

	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 3, LayerSize: 2 << 20, Seed: 1501})
	dir := writeLayout(t, img)
	ref := origin.Ref("hook/app:v1")
	agenttest.Crane(t, "push", "--insecure", dir, ref)

	blobs := blobsOf(t, img)
	job := waitSeedJob(t, tr, func(j tracker.SeedJobStatus) bool {
		return j.State == tracker.JobDone && j.BlobsDone == len(blobs)
	})
	t.Logf("webhook job %s: %s, %d/%d blobs", job.ID, job.Image, job.BlobsDone, job.BlobsTotal)
	for _, h := range blobs {
		if !holds(tr, h) {
			t.Errorf("the seeder lacks blob %s after the push notification", h)
		}
	}
	origin.ResetCounters()
	pullAll(t, nodes, ref, img)
	if n := origin.BlobGets(); n != 0 {
		t.Errorf("the rollout after the webhook asked the origin for %d blobs, want none", n)
	}

	// Harbor's payload, for an image the webhook filter lets in.
	next := agenttest.Image(t, agenttest.ImageOptions{Layers: 1, LayerSize: 1 << 20, Seed: 1502})
	origin.Push(t, next, "other/harbor:v1") // not in hook/*: the distribution event is ignored
	dg, err := next.Digest()
	if err != nil {
		t.Fatal(err)
	}
	payload := fmt.Sprintf(`{"type":"PUSH_ARTIFACT","occur_at":1,"operator":"ci","event_data":{
  "resources":[{"digest":%q,"tag":"v1","resource_url":"%s/hook/harbor:v1"}],
  "repository":{"name":"harbor","namespace":"hook","repo_full_name":"hook/harbor","repo_type":"private"}}}`, dg, origin.Addr)
	origin.Push(t, next, "hook/harbor:v1")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, tr.URL+"/v1/webhooks/harbor", strings.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", seedSeedToken) // Harbor sends its auth header as written
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("harbor webhook: %s", resp.Status)
	}
	waitSeedJob(t, tr, func(j tracker.SeedJobStatus) bool {
		return strings.Contains(j.Image, "hook/harbor@"+dg.String()) && j.State == tracker.JobDone
	})
	for _, h := range blobsOf(t, next) {
		if !holds(tr, h) {
			t.Errorf("the seeder lacks blob %s after the Harbor webhook", h)
		}
	}
}

// TestDistributionWebhookOverReplicas: three tracker replicas, each given
// the others (--replicas) and its own name (--replica-self);
// docker-registry notifies only the first. It passes the push on, and each
// replica's seeder fetches only the blobs it owns, as the agents rank
// them: every blob leaves the origin once, and the rollout after takes
// none from it.
func TestDistributionWebhookOverReplicas(t *testing.T) {
	t.Parallel()
	var urls []string
	for range 3 {
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", agenttest.FreePort(t)))
	}
	notify := fmt.Sprintf(`notifications:
  endpoints:
    - name: shoal
      url: %s/v1/webhooks/distribution
      headers:
        Authorization: [Bearer %s]
      timeout: 5s
      threshold: 3
      backoff: 500ms
`, urls[0], seedSeedToken)
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{Extra: notify})
	trackers := make([]*agenttest.Shoal, len(urls))
	for i, u := range urls {
		trackers[i] = startSeedTracker(t, origin, "--listen", strings.TrimPrefix(u, "http://"), "--webhook-repos", "hook/*",
			"--replicas", strings.Join(urls, ","), "--replica-self", u)
	}
	list := strings.Join(urls, ",")
	nodes := []*agenttest.Shoal{
		startAgent(t, origin, "--tracker", list, "--tracker-token", seedClusterToken),
		startAgent(t, origin, "--tracker", list, "--tracker-token", seedClusterToken),
	}

	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 6, LayerSize: 1 << 20, Seed: 1503})
	dir := writeLayout(t, img)
	// No reset after the push: the notification may start the seeders'
	// fetches before crane returns, and a push sends no blob GETs.
	origin.ResetCounters()
	ref := origin.Ref("hook/app:v1")
	agenttest.Crane(t, "push", "--insecure", dir, ref)

	blobs := blobsOf(t, img)
	owner := func(h v1.Hash) int { return tracker.Rank(urls, h.String())[0] }
	owned := make([]int, len(urls))
	for _, h := range blobs {
		owned[owner(h)]++
	}
	for i, tr := range trackers {
		if owned[i] == 0 {
			continue // the first replica's job may hold no blob: nothing to wait for elsewhere
		}
		job := waitSeedJob(t, tr, func(j tracker.SeedJobStatus) bool {
			return j.State == tracker.JobDone && j.BlobsDone == owned[i]
		})
		t.Logf("replica %d: job %s, %d blobs", i, job.ID, job.BlobsDone)
	}
	for _, h := range blobs {
		for i, tr := range trackers {
			if got, want := holds(tr, h), i == owner(h); got != want {
				t.Errorf("replica %d holds blob %s: %v, want %v (owner %d)", i, h, got, want, owner(h))
			}
		}
	}
	if n := origin.BlobGets(); n != len(blobs) {
		t.Errorf("the origin served %d blob GETs for the webhook's %d blobs, want each once", n, len(blobs))
	}
	origin.ResetCounters()
	pullAll(t, nodes, ref, img)
	if n := origin.BlobGets(); n != 0 {
		t.Errorf("the rollout after the webhook asked the origin for %d blobs, want none", n)
	}
}
