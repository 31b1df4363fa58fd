package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

// Harbor payloads in the two forms its webhook documentation shows for an
// artifact push: the default one and CloudEvents (data carries what the
// default form has under event_data). Values are this test's own.
const (
	harborDefault = `{
  "type": "PUSH_ARTIFACT",
  "occur_at": 1586922308,
  "operator": "admin",
  "event_data": {
    "resources": [{
      "digest": "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8",
      "tag": "latest",
      "resource_url": "registry.test/test-webhook/debian:latest"
    }],
    "repository": {
      "date_created": 1586922308,
      "name": "debian",
      "namespace": "test-webhook",
      "repo_full_name": "test-webhook/debian",
      "repo_type": "private"
    }
  }
}`
	harborCloudEvents = `{
  "specversion": "1.0",
  "requestid": "51c0b694-0168-4f3c-b0db-282565455d7b",
  "id": "66e18103-09c1-41f6-982f-37df223f3eeb",
  "source": "/projects/2/webhook/policies/15",
  "type": "harbor.artifact.pushed",
  "datacontenttype": "application/json",
  "time": "2026-04-03T06:04:46Z",
  "operator": "robot$ci",
  "data": {
    "resources": [{
      "digest": "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8",
      "tag": "stable",
      "resource_url": "registry.test/test-webhook/debian:stable"
    }],
    "repository": {
      "name": "debian",
      "namespace": "test-webhook",
      "repo_full_name": "test-webhook/debian",
      "repo_type": "private"
    }
  }
}`
)

// distributionEnvelope is a notification as CNCF distribution sends it:
// a layer push (ignored), a manifest push by tag, and a pull (ignored).
func distributionEnvelope(manifest digest.Digest, mediaType, repo, tag string, refs ...digest.Digest) string {
	var rs []string
	for _, r := range refs {
		rs = append(rs, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":10}`, r))
	}
	refsJSON := ""
	if len(rs) > 0 {
		refsJSON = `,"references":[` + strings.Join(rs, ",") + `]`
	}
	return fmt.Sprintf(`{"events":[
 {"id":"e1","timestamp":"2026-01-01T00:00:00Z","action":"push",
  "target":{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%[5]q,"size":10,"length":10,"repository":%[3]q,
   "url":"http://registry.test/v2/%[3]s/blobs/%[5]s"},
  "request":{"id":"r1","addr":"10.0.0.1:4000","host":"registry.test","method":"PUT","useragent":"crane"},
  "actor":{},"source":{"addr":"registry-0:5000","instanceID":"i1"}},
 {"id":"e2","timestamp":"2026-01-01T00:00:01Z","action":"push",
  "target":{"mediaType":%[2]q,"digest":%[1]q,"size":500,"length":500,"repository":%[3]q,
   "url":"http://registry.test/v2/%[3]s/manifests/%[1]s","tag":%[4]q%[6]s},
  "request":{"id":"r2","addr":"10.0.0.1:4000","host":"registry.test","method":"PUT","useragent":"crane"},
  "actor":{"name":"ci"},"source":{"addr":"registry-0:5000","instanceID":"i1"}},
 {"id":"e3","timestamp":"2026-01-01T00:00:02Z","action":"pull",
  "target":{"mediaType":%[2]q,"digest":%[1]q,"size":500,"repository":%[3]q},
  "request":{"host":"registry.test","method":"GET"}}
]}`, manifest, mediaType, repo, tag, digest.FromString("layer"), refsJSON)
}

func TestParseHarborDocumentedPayloads(t *testing.T) {
	t.Parallel()
	want := digest.Digest("sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8")
	for _, tc := range []struct{ name, body, tag string }{
		{"default", harborDefault, "latest"},
		{"CloudEvents", harborCloudEvents, "stable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ignored, err := server.ParseHarbor([]byte(tc.body))
			if err != nil || ignored != 0 || len(got) != 1 {
				t.Fatalf("ParseHarbor = %+v, %d, %v", got, ignored, err)
			}
			p := got[0]
			if p.Registry != "registry.test" || p.Repo != "test-webhook/debian" || p.Tag != tc.tag || p.Digest != want {
				t.Errorf("decoded %+v, want registry.test/test-webhook/debian:%s@%s", p, tc.tag, want)
			}
		})
	}
	for _, other := range []string{
		`{"type":"PULL_ARTIFACT","event_data":{}}`,
		`{"specversion":"1.0","type":"harbor.artifact.deleted","data":{}}`,
	} {
		if got, ignored, err := server.ParseHarbor([]byte(other)); err != nil || ignored != 1 || got != nil {
			t.Errorf("%s: %v %d %v, want ignored", other, got, ignored, err)
		}
	}
}

func TestParseDistributionEnvelope(t *testing.T) {
	t.Parallel()
	man := digest.FromString("manifest")
	got, ignored, err := server.ParseDistribution([]byte(distributionEnvelope(man, "application/vnd.oci.image.manifest.v1+json", "team/app", "v1", digest.FromString("c"), digest.FromString("l"))))
	if err != nil || ignored != 2 || len(got) != 1 {
		t.Fatalf("ParseDistribution = %+v, %d, %v; want one push, two ignored", got, ignored, err)
	}
	if p := got[0]; p.Registry != "registry.test" || p.Repo != "team/app" || p.Tag != "v1" || p.Digest != man || len(p.Blobs) != 2 {
		t.Errorf("decoded %+v", p)
	}
	// An index with references is still resolved: its references are manifests.
	got, _, _ = server.ParseDistribution([]byte(distributionEnvelope(man, "application/vnd.oci.image.index.v1+json", "team/app", "", digest.FromString("m"))))
	if len(got) != 1 || got[0].Blobs != nil {
		t.Errorf("index push: %+v, want one push to resolve", got)
	}
}

// post sends body to a webhook route with the seed token.
func (f *seedFixture) post(t *testing.T, route, contentType, body, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.tr.URL+route, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWebhooksSeedIdempotentlyAndRefuseGarbage(t *testing.T) {
	t.Parallel()
	f := newSeedFixture(t, func(c *server.Config) { c.WebhookRepos = []string{"team/*", "test-webhook/*"} })
	man, blobs := f.image(t, "team/app", "v1", 2)
	// The registry names itself registry.test; the resolver serves it.
	_, _, raw, _ := f.res.Manifest(t.Context(), "", "team/app", "v1")
	f.res.put("registry.test", "team/app", "v1", "application/vnd.oci.image.manifest.v1+json", raw)
	env := distributionEnvelope(man, "application/vnd.oci.image.manifest.v1+json", "team/app", "v1")
	bearer := "Bearer " + seedToken

	var first server.WebhookResponse
	for _, ct := range []string{server.EventsV1MediaType, server.EventsV2MediaType} {
		code, body := f.post(t, "/v1/webhooks/distribution", ct, env, bearer)
		var resp server.WebhookResponse
		json.Unmarshal([]byte(body), &resp)
		if code != http.StatusAccepted || len(resp.Jobs) != 1 {
			t.Fatalf("%s: %d %s", ct, code, body)
		}
		if first.Jobs == nil {
			first = resp
		} else if resp.Jobs[0] != first.Jobs[0] {
			t.Errorf("redelivery started job %s, want the first one, %s", resp.Jobs[0], first.Jobs[0])
		}
	}
	done := f.wait(t, first.Jobs[0])
	if done.State != tracker.JobDone || len(done.Blobs) != len(blobs) {
		t.Fatalf("webhook job: %+v", done)
	}
	for _, b := range blobs {
		if n := f.seeder.callsOf(b); n != 1 {
			t.Errorf("blob %s seeded %d times, want once", b, n)
		}
	}
	if n := f.metricOf(t, "shoal_tracker_webhook_events_total", "result", "duplicate"); n != 1 {
		t.Errorf("duplicate events counted %v, want 1", n)
	}

	// Harbor, with the auth header as Harbor sends it (no Bearer prefix):
	// the repository is let in, the manifest unknown to the resolver, so
	// the job starts and fails to resolve: what matters is the decoding.
	code, body := f.post(t, "/v1/webhooks/harbor", "application/json", harborDefault, seedToken)
	if code != http.StatusAccepted || !strings.Contains(body, `"jobs":["`) {
		t.Errorf("harbor: %d %s", code, body)
	}

	for _, tc := range []struct {
		name, route, ct, body, token string
		code                         int
		reason                       string
	}{
		{"not JSON", "/v1/webhooks/distribution", server.EventsV1MediaType, `{"events":[`, bearer, 400, "envelope"},
		{"no events", "/v1/webhooks/distribution", server.EventsV1MediaType, `{}`, bearer, 400, "no events"},
		{"bad digest", "/v1/webhooks/distribution", server.EventsV1MediaType, strings.Replace(env, man.String(), "sha256:nothex", 1), bearer, 400, "target.digest"},
		{"wrong content type", "/v1/webhooks/distribution", "text/plain", env, bearer, 400, "content type"},
		{"harbor without resources", "/v1/webhooks/harbor", "application/json", `{"type":"PUSH_ARTIFACT","event_data":{"repository":{"repo_full_name":"a/b"}}}`, bearer, 400, "without resources"},
		{"cluster token", "/v1/webhooks/distribution", server.EventsV1MediaType, env, "Bearer " + trackertestToken, 403, "cluster token"},
		{"no token", "/v1/webhooks/harbor", "application/json", harborDefault, "", 401, "seed token"},
	} {
		code, body := f.post(t, tc.route, tc.ct, tc.body, tc.token)
		if code != tc.code || !strings.Contains(body, tc.reason) {
			t.Errorf("%s: %d %s, want %d saying %q", tc.name, code, body, tc.code, tc.reason)
		}
	}
	if n := f.metricOf(t, "shoal_tracker_webhook_events_total", "result", "malformed"); n != 5 {
		t.Errorf("malformed counted %v, want 5", n)
	}

	// Filtered out, and a registry the tracker does not fetch from.
	for _, body := range []string{
		distributionEnvelope(man, "application/vnd.oci.image.manifest.v1+json", "other/app", "v1"),
		strings.ReplaceAll(env, "registry.test", "unknown.test"),
	} {
		code, resp := f.post(t, "/v1/webhooks/distribution", server.EventsV2MediaType, body, bearer)
		if code != http.StatusAccepted || !strings.Contains(resp, `"jobs":[]`) {
			t.Errorf("ignored push: %d %s", code, resp)
		}
	}
}

const trackertestToken = "trackertest-token"

// metricOf sums a counter over the samples with label=value.
func (f *seedFixture) metricOf(t *testing.T, name, label, value string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// TestWebhookReferencesSkipTheManifest: a push whose event carries the
// image manifest's references (distribution's includereferences) seeds
// them without reading the manifest; a tag filter leaves out pushes of
// other tags and pushes by digest.
func TestWebhookReferencesSkipTheManifest(t *testing.T) {
	t.Parallel()
	f := newSeedFixture(t, func(c *server.Config) { c.WebhookTags = []string{"release-*"} })
	a, b := randomBlob(t, 3000), randomBlob(t, 4000)
	da, db := f.seeder.add(a), f.seeder.add(b)
	man := digest.FromString("a manifest the resolver does not have")
	env := fmt.Sprintf(`{"events":[{"id":"x","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json",
  "digest":%q,"repository":"team/app","tag":"release-1","references":[
  {"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},
  {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":%d}]},
  "request":{"host":"registry.test"}}]}`, man, da, len(a), db, len(b))
	code, body := f.post(t, "/v1/webhooks/distribution", server.EventsV2MediaType, env, "Bearer "+seedToken)
	var resp server.WebhookResponse
	json.Unmarshal([]byte(body), &resp)
	if code != http.StatusAccepted || len(resp.Jobs) != 1 {
		t.Fatalf("%d %s", code, body)
	}
	done := f.wait(t, resp.Jobs[0])
	if done.State != tracker.JobDone || len(done.Blobs) != 2 || done.Blobs[0].Digest != da || done.Blobs[1].Digest != db {
		t.Fatalf("job from references: %+v", done)
	}
	for _, other := range []string{strings.Replace(env, "release-1", "dev", 1), strings.Replace(env, `"tag":"release-1",`, "", 1)} {
		code, body := f.post(t, "/v1/webhooks/distribution", server.EventsV2MediaType, other, "Bearer "+seedToken)
		if code != http.StatusAccepted || !strings.Contains(body, `"jobs":[]`) {
			t.Errorf("filtered push: %d %s", code, body)
		}
	}
}
