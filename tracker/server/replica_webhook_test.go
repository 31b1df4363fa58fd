package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

// clientReplicas is a replica set of real trackers reached over HTTP:
// names[0] is the tracker it is given to.
type clientReplicas struct {
	names   []string
	clients map[string]*tracker.Client
}

func (r *clientReplicas) Live(context.Context) (tracker.SeedShard, error) {
	return tracker.SeedShard{Of: r.names, Self: r.names[0]}, nil
}

func (r *clientReplicas) Forward(ctx context.Context, name, route, contentType string, body []byte, shard tracker.SeedShard) error {
	c := r.clients[name]
	if c == nil {
		return errors.New("no such replica")
	}
	return c.ForwardWebhook(ctx, route, contentType, body, shard)
}

// TestWebhookShardsOverReplicas: a registry notifies one of three tracker
// replicas; it passes the event on to the two others, and each seeds only
// the blobs it owns, so every blob is fetched once, by its owner. A
// replica that cannot be reached fails the delivery (the registry sends it
// again), and a forged shard header is refused.
func TestWebhookShardsOverReplicas(t *testing.T) {
	t.Parallel()
	b, c := newSeedFixture(t, nil), newSeedFixture(t, nil)
	reps := &clientReplicas{names: []string{"replica-a", b.tr.URL, c.tr.URL}, clients: map[string]*tracker.Client{b.tr.URL: b.seed, c.tr.URL: c.seed}}
	a := newSeedFixtureWith(t, nil, server.WithReplicas(reps))
	man, blobs := a.image(t, "team/app", "v1", 8)
	// The registry names itself registry.test; every replica's resolver
	// serves the manifest, every replica's origin the blobs.
	_, _, raw, _ := a.res.Manifest(t.Context(), "", "team/app", "v1")
	for _, f := range []*seedFixture{a, b, c} {
		f.res.put("registry.test", "team/app", "v1", "application/vnd.oci.image.manifest.v1+json", raw)
		for d, data := range a.seeder.blobs {
			f.seeder.blobs[d] = data
		}
	}
	env := distributionEnvelope(man, "application/vnd.oci.image.manifest.v1+json", "team/app", "v1")
	code, body := a.post(t, "/v1/webhooks/distribution", server.EventsV1MediaType, env, "Bearer "+seedToken)
	var resp server.WebhookResponse
	json.Unmarshal([]byte(body), &resp)
	if code != http.StatusAccepted || len(resp.Jobs) != 1 {
		t.Fatalf("webhook: %d %s", code, body)
	}
	if job := a.wait(t, resp.Jobs[0]); job.State != tracker.JobDone {
		t.Fatalf("job on the first replica: %+v", job)
	}
	owners := map[string]*seedFixture{"replica-a": a, b.tr.URL: b, c.tr.URL: c}
	ownerOf := func(d digest.Digest) string { return reps.names[tracker.Rank(reps.names, d.String())[0]] }
	for _, d := range blobs {
		waitSeeded(t, owners[ownerOf(d)], d, 1)
	}
	for _, d := range blobs {
		owner := ownerOf(d)
		for name, f := range owners {
			want := 0
			if name == owner {
				want = 1
			}
			if n := f.seeder.callsOf(d); n != want {
				t.Errorf("blob %s seeded %d times by %s (owner %s), want %d", d, n, name, owner, want)
			}
		}
	}

	// Redelivered while a replica is gone: the delivery fails, to be
	// retried, rather than leave that replica's blobs to nobody.
	reps.names = append(reps.names, "replica-gone")
	if code, body := a.post(t, "/v1/webhooks/distribution", server.EventsV1MediaType, env, "Bearer "+seedToken); code != http.StatusServiceUnavailable || !strings.Contains(body, "replica-gone") {
		t.Errorf("webhook with a replica unreachable: %d %s, want 503 naming it", code, body)
	}

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, b.tr.URL+"/v1/webhooks/distribution", strings.NewReader(env))
	req.Header.Set("Content-Type", server.EventsV1MediaType)
	req.Header.Set("Authorization", "Bearer "+seedToken)
	req.Header.Set(tracker.ShardHeader, "self=x&of=y")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Errorf("a shard not naming its self: %d, want 400", resp2.StatusCode)
	}
}

// waitSeeded waits until f's seeder was asked for d want times at least:
// a job passed on to a replica runs there on its own.
func waitSeeded(t *testing.T, f *seedFixture, d digest.Digest, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for f.seeder.callsOf(d) < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}
