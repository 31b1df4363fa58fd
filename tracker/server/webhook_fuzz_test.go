package server_test

import (
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim/grammar"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

// checkPushed holds what a parser promises of every push it returns.
func checkPushed(t *testing.T, pushed []server.PushedImage) {
	for _, p := range pushed {
		if tracker.ValidateDigest(p.Digest) != nil || !grammar.Repository(p.Repo) || !grammar.Registry(p.Registry) ||
			(p.Tag != "" && !grammar.Tag(p.Tag)) || len(p.Blobs) != len(p.Sizes) {
			t.Fatalf("invalid push returned: %+v", p)
		}
		for _, b := range p.Blobs {
			if b.Validate() != nil {
				t.Fatalf("invalid blob returned: %+v", b)
			}
		}
	}
}

func FuzzParseDistribution(f *testing.F) {
	man := digest.FromString("manifest")
	f.Add([]byte(distributionEnvelope(man, "application/vnd.oci.image.manifest.v1+json", "team/app", "v1", digest.FromString("c"))))
	f.Add([]byte(distributionEnvelope(man, "application/vnd.docker.distribution.manifest.list.v2+json", "a", "")))
	f.Add([]byte(`{"events":[]}`))
	f.Add([]byte(`{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.index.v1+json"}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		pushed, ignored, err := server.ParseDistribution(body)
		if err != nil && (pushed != nil || ignored != 0) {
			t.Fatalf("error %v with results %v, %d", err, pushed, ignored)
		}
		checkPushed(t, pushed)
	})
}

func FuzzParseHarbor(f *testing.F) {
	f.Add([]byte(harborDefault))
	f.Add([]byte(harborCloudEvents))
	f.Add([]byte(`{"type":"PUSH_ARTIFACT","event_data":{"resources":[],"repository":{}}}`))
	f.Add([]byte(`{"specversion":"1.0","type":"harbor.artifact.pushed","data":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		pushed, _, err := server.ParseHarbor(body)
		if err != nil && pushed != nil {
			t.Fatalf("error %v with results %v", err, pushed)
		}
		checkPushed(t, pushed)
	})
}
