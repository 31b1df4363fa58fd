package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// newHandler returns a tracker's handler for requests served in-process.
func newHandler(t testing.TB) http.Handler {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Tokens = []string{trackertest.Token}
	s, err := server.New(cfg)
	if err == nil {
		err = s.Start(trackertest.NewSeeder())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Handler()
}

// serve serves one request with the cluster token. An announce for a peer
// whose ID trackertest.ID made is signed with that peer's key, now; any
// other is sent unsigned.
func serve(h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+trackertest.Token)
	if target == "/v1/announce" {
		if name, ok := signer(body); ok {
			sig, _ := tracker.SignAnnounce(trackertest.Key(name), []byte(body), time.Now())
			req.Header.Set(tracker.SignatureHeader, sig)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// signer returns the name of the announcing peer of body, if it has one.
func signer(body string) (string, bool) {
	var a struct{ Peer struct{ ID string } }
	if json.Unmarshal([]byte(body), &a) != nil {
		return "", false
	}
	name := trackertest.Name(a.Peer.ID)
	return name, name != a.Peer.ID
}

func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	h := newHandler(t)
	d := digest.FromString("x").String()
	sha512 := digest.SHA512.FromString("x").String()
	announce := func(peer, blobs string) string {
		return `{"peer":` + peer + `,"blobs":` + blobs + `}`
	}
	p1 := trackertest.ID("p1")
	goodPeer := `{"id":"` + p1 + `","addrs":["/ip4/10.0.0.1/tcp/4001"]}`
	goodBlobs := `[{"digest":"` + d + `","have":1,"complete":false}]`
	manyAddrs := `["/a"` + strings.Repeat(`,"/a"`, 16) + `]`

	for _, tc := range []struct {
		name, method, target, body string
	}{
		{"not json", "POST", "/v1/announce", `{`},
		{"empty body", "POST", "/v1/announce", ``},
		{"unknown field", "POST", "/v1/announce", `{"peer":` + goodPeer + `,"blobs":[],"extra":1}`},
		{"unknown peer field", "POST", "/v1/announce", announce(`{"id":"p1","addrs":["/a"],"have":3}`, `[]`)},
		{"trailing data", "POST", "/v1/announce", announce(goodPeer, goodBlobs) + `{}`},
		{"oversized", "POST", "/v1/announce", announce(goodPeer, `[`+strings.Repeat(`{"digest":"`+d+`"},`, 20000)+`]`)},
		{"no peer ID", "POST", "/v1/announce", announce(`{"addrs":["/a"]}`, goodBlobs)},
		{"bad peer ID", "POST", "/v1/announce", announce(`{"id":"p 1","addrs":["/a"]}`, goodBlobs)},
		{"long peer ID", "POST", "/v1/announce", announce(`{"id":"`+strings.Repeat("p", 129)+`","addrs":["/a"]}`, goodBlobs)},
		{"no addrs", "POST", "/v1/announce", announce(`{"id":"p1","addrs":[]}`, goodBlobs)},
		{"too many addrs", "POST", "/v1/announce", announce(`{"id":"p1","addrs":`+manyAddrs+`}`, goodBlobs)},
		{"addr not multiaddr", "POST", "/v1/announce", announce(`{"id":"p1","addrs":["10.0.0.1:4001"]}`, goodBlobs)},
		{"addr with newline", "POST", "/v1/announce", announce(`{"id":"p1","addrs":["/ip4\n"]}`, goodBlobs)},
		{"bad blob digest", "POST", "/v1/announce", announce(goodPeer, `[{"digest":"sha256:abc"}]`)},
		{"sha512 blob", "POST", "/v1/announce", announce(goodPeer, `[{"digest":"`+sha512+`"}]`)},
		{"negative have", "POST", "/v1/announce", announce(goodPeer, `[{"digest":"`+d+`","have":-1}]`)},
		{"have as string", "POST", "/v1/announce", announce(goodPeer, `[{"digest":"`+d+`","have":"1"}]`)},
		{"peers bad digest", "GET", "/v1/blobs/sha256:zz/peers", ``},
		{"peers sha512", "GET", "/v1/blobs/" + sha512 + "/peers", ``},
		{"peers bad self", "GET", "/v1/blobs/" + d + "/peers?self=a%20b", ``},
		{"metainfo bad digest", "GET", "/v1/blobs/nodigest/metainfo?repo=a/b", ``},
		{"metainfo no repo", "GET", "/v1/blobs/" + d + "/metainfo", ``},
		{"metainfo bad repo", "GET", "/v1/blobs/" + d + "/metainfo?repo=Upper/Case", ``},
		{"metainfo bad registry", "GET", "/v1/blobs/" + d + "/metainfo?repo=a/b&registry=http://x", ``},
		{"metainfo bad have", "GET", "/v1/blobs/" + d + "/metainfo?repo=a/b&have=many", ``},
		{"metainfo have below -1", "GET", "/v1/blobs/" + d + "/metainfo?repo=a/b&have=-2", ``},
		{"unknown route", "GET", "/v1/nothing", ``},
	} {
		rec := serve(h, tc.method, tc.target, tc.body)
		var body struct{ Code, Message string }
		err := json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != http.StatusBadRequest || err != nil || body.Code != "INVALID" || body.Message == "" {
			t.Errorf("%s: HTTP %d %q, want 400 with a JSON INVALID error", tc.name, rec.Code, rec.Body.String())
		}
	}

	// The good forms of the same requests pass.
	for _, tc := range []struct{ method, target, body string }{
		{"POST", "/v1/announce", announce(goodPeer, goodBlobs)},
		{"POST", "/v1/announce", announce(`{"id":"`+trackertest.ID("p2")+`","addrs":["/dns/seed/tcp/1"]}`, `[]`)},
		{"GET", "/v1/blobs/" + d + "/peers?pieces=2&self=" + p1, ``},
	} {
		if rec := serve(h, tc.method, tc.target, tc.body); rec.Code != http.StatusOK {
			t.Errorf("%s %s: HTTP %d %s", tc.method, tc.target, rec.Code, rec.Body.String())
		}
	}
}

// FuzzAnnounce feeds the announce route arbitrary bodies, signed by their
// peer when trackertest named it: every answer is a 200, a 400 with a JSON
// INVALID error or, for a claim to be a seeder or an unsigned announce, a
// 401; never a panic, and never a 200 for an unsigned announce.
func FuzzAnnounce(f *testing.F) {
	d := digest.FromString("x").String()
	p1 := trackertest.ID("p1")
	f.Add([]byte(`{"peer":{"id":"` + p1 + `","addrs":["/ip4/10.0.0.1/tcp/4001"],"seeder":true},"blobs":[{"digest":"` + d + `","have":1,"complete":true}]}`))
	f.Add([]byte(`{"peer":{"id":"` + p1 + `","addrs":["/a"]},"blobs":null}`))
	f.Add([]byte(`{"peer":{"id":"p1","addrs":["/a"]},"blobs":null}`))
	f.Add([]byte(`{"peer":{"id":"","addrs":null},"blobs":[{}]}`))
	f.Add([]byte(`{"peer":{"id":"` + p1 + `","addrs":["/a"]},"blobs":[{"digest":"sha256:","have":1e99}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	h := newHandler(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serve(h, "POST", "/v1/announce", string(body))
		_, signed := signer(string(body))
		switch rec.Code {
		case http.StatusOK:
			if !signed {
				t.Fatalf("200 for an unsigned announce: %q", body)
			}
		case http.StatusUnauthorized:
			var claim struct{ Peer struct{ Seeder bool } }
			if json.Unmarshal(body, &claim) != nil || signed && !claim.Peer.Seeder {
				t.Fatalf("401 for a signed announce that claims no seeder: %s", rec.Body.String())
			}
		case http.StatusBadRequest:
			var e struct{ Code string }
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code != "INVALID" {
				t.Fatalf("400 without a JSON INVALID error: %q", rec.Body.String())
			}
		default:
			t.Fatalf("HTTP %d: %s", rec.Code, rec.Body.String())
		}
	})
}
