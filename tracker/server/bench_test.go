package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

func announceBody(b *testing.B, id string, d digest.Digest, complete bool) string {
	body, err := json.Marshal(map[string]any{
		"peer":   map[string]any{"id": id, "addrs": []string{"/ip4/10.0.0.1/tcp/4001", "/ip6/fd00::1/tcp/4001"}},
		"blobs":  []tracker.BlobState{{Digest: d, Have: 10, Complete: complete}},
		"pieces": piece.Policy,
	})
	if err != nil {
		b.Fatal(err)
	}
	return string(body)
}

// BenchmarkHandout: a peers request for a blob held by 1,000 peers.
func BenchmarkHandout(b *testing.B) {
	h := newHandler(b)
	d := digest.FromString("layer")
	for i := range 1000 {
		if rec := serve(h, "POST", "/v1/announce", announceBody(b, trackertest.ID(fmt.Sprintf("peer%d", i)), d, i%3 == 0)); rec.Code != http.StatusOK {
			b.Fatal(rec.Body.String())
		}
	}
	target := "/v1/blobs/" + d.String() + "/peers?pieces=2&self=" + trackertest.ID("peer7")
	b.ReportAllocs()
	for b.Loop() {
		if rec := serve(h, "GET", target, ""); rec.Code != http.StatusOK {
			b.Fatal(rec.Body.String())
		}
	}
}

// BenchmarkAnnounce: one agent's signed announce of one blob (the serve
// helper signs it: the benchmark counts signing and checking).
func BenchmarkAnnounce(b *testing.B) {
	h := newHandler(b)
	body := announceBody(b, trackertest.ID("peer1"), digest.FromString("layer"), false)
	b.ReportAllocs()
	for b.Loop() {
		if rec := serve(h, "POST", "/v1/announce", body); rec.Code != http.StatusOK {
			b.Fatal(rec.Body.String())
		}
	}
}
