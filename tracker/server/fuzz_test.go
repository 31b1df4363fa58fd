package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// checkingSeeder finds nothing at the origin, at once, so that a metainfo
// request that passes validation is answered 404 without a wait. It checks
// what reaches it, which is what a real seeder puts into its origin request:
// a repository or registry that could change that request's path or query
// is recorded as a violation.
type checkingSeeder struct {
	mu  sync.Mutex
	bad string
}

func (s *checkingSeeder) Seed(_ context.Context, src tracker.Source, _ func(*piece.Info)) error {
	if strings.ContainsAny(src.Repo, "?#% \\") || strings.Contains(src.Repo, "..") || strings.Contains(src.Repo, "//") ||
		strings.HasPrefix(src.Repo, "/") || strings.HasSuffix(src.Repo, "/") || src.Repo == "" ||
		strings.ContainsAny(src.Registry, "/?#@% \\") || src.Digest.Validate() != nil {
		s.mu.Lock()
		s.bad = fmt.Sprintf("seeder asked for %+v", src)
		s.mu.Unlock()
	}
	return fmt.Errorf("%w: fuzz origin has nothing", tracker.ErrNotFound)
}

func (s *checkingSeeder) violation() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad
}

// fuzzHandler is a tracker with s as its seeder that knows one peer, p1
// (trackertest.ID("p1")), holding known.
func fuzzHandler(f *testing.F, s server.Seeder, known digest.Digest) http.Handler {
	f.Helper()
	cfg := server.DefaultConfig()
	cfg.Tokens = []string{trackertest.Token}
	cfg.PeerTTL = time.Hour // p1 stays known however long the fuzzing runs
	cfg.MetaInfoWait = time.Second
	srv, err := server.New(cfg)
	if err == nil {
		err = srv.Start(s)
	}
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	h := srv.Handler()
	body := `{"peer":{"id":"` + trackertest.ID("p1") + `","addrs":["/ip4/10.0.0.1/tcp/4001"]},"blobs":[{"digest":"` + known.String() + `","have":1,"complete":true}],"pieces":2}`
	if rec := serve(h, "POST", "/v1/announce", body); rec.Code != http.StatusOK {
		f.Fatalf("announce: HTTP %d %s", rec.Code, rec.Body)
	}
	return h
}

// get serves GET /v1/blobs/{d}/route?rawQuery with the path and query set
// as a hostile client may send them, not parsed from a target first.
func get(h http.Handler, d, route, rawQuery string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/", nil)
	req.URL.Path, req.URL.RawQuery = "/v1/blobs/"+d+"/"+route, rawQuery
	req.RequestURI = req.URL.RequestURI()
	req.Header.Set("Authorization", "Bearer "+trackertest.Token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// oneSegment reports whether d routes as the {digest} path segment: the
// router redirects unclean paths before any handler parses them.
func oneSegment(d string) bool {
	return d != "" && d != "." && d != ".." && !strings.Contains(d, "/")
}

// requireInvalid fails unless rec is a 400 with a JSON INVALID error.
func requireInvalid(t *testing.T, rec *httptest.ResponseRecorder, why error) {
	t.Helper()
	var e tracker.ErrorBody
	if rec.Code != http.StatusBadRequest || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code != "INVALID" || e.Message == "" {
		t.Fatalf("%v: HTTP %d %q, want 400 with a JSON INVALID error", why, rec.Code, rec.Body.String())
	}
}

// requirePolicy checks the answer to a request valid but for its piece
// policy parameter, and reports whether that parameter decided it: a
// value that is not a number is a 400, another policy than ours a 409
// with a JSON PIECE_POLICY error.
func requirePolicy(t *testing.T, rec *httptest.ResponseRecorder, q url.Values) bool {
	t.Helper()
	err := tracker.CheckPolicy(q.Get(tracker.PiecesParam))
	switch {
	case err == nil:
		return false
	case errors.Is(err, tracker.ErrInvalid):
		requireInvalid(t, rec, err)
	default:
		var e tracker.ErrorBody
		if rec.Code != http.StatusConflict || json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Code != "PIECE_POLICY" {
			t.Fatalf("%v: HTTP %d %q, want 409 with a JSON PIECE_POLICY error", err, rec.Code, rec.Body.String())
		}
	}
	return true
}

// FuzzPeersQuery sends peers requests with hostile digests and query
// strings: the server refuses with 400 exactly what tracker.ValidateDigest
// and tracker.ValidatePeerID refuse, then what tracker.CheckPolicy
// refuses, and otherwise hands out peers, never the asker itself.
func FuzzPeersQuery(f *testing.F) {
	known := digest.FromString("known")
	p1 := trackertest.ID("p1")
	for _, s := range []struct{ d, q string }{
		{known.String(), ""},
		{known.String(), "pieces=2"},
		{known.String(), "pieces=1&self=" + p1},
		{known.String(), "pieces=two"},
		{known.String(), "pieces=2&self=" + p1},
		{known.String(), "pieces=2&self=p2&self=" + p1},
		{known.String(), "self=p1"},
		{known.String(), "self="},
		{known.String(), "self=a%20b"},
		{known.String(), "self=%zz;x"},
		{known.String(), "self=" + strings.Repeat("p", 129)},
		{known.String(), "self=p%00"},
		{digest.FromString("other").String(), "self=" + p1},
		{"sha256:zz", ""},
		{digest.SHA512.FromString("x").String(), ""},
		{"sha256:" + strings.Repeat("A", 64), ""},
	} {
		f.Add(s.d, s.q)
	}
	h := fuzzHandler(f, &checkingSeeder{}, known)
	f.Fuzz(func(t *testing.T, d, rawQuery string) {
		if !oneSegment(d) {
			return
		}
		rec := get(h, d, "peers", rawQuery)
		q, _ := url.ParseQuery(rawQuery) // as the server reads it: bad pairs dropped
		self := q.Get("self")
		err := tracker.ValidateDigest(digest.Digest(d))
		if err == nil && self != "" {
			err = tracker.ValidatePeerID(self)
		}
		if err != nil {
			requireInvalid(t, rec, err)
			return
		}
		if requirePolicy(t, rec, q) {
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("valid peers request (digest %q, self %q): HTTP %d %q", d, self, rec.Code, rec.Body.String())
		}
		var resp tracker.PeersResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("peers answer not JSON: %v: %q", err, rec.Body.String())
		}
		for _, p := range resp.Peers {
			if p.ID == self {
				t.Fatalf("handed the asker %q itself", self)
			}
		}
		if wantP1 := d == known.String() && self != p1; wantP1 != (len(resp.Peers) == 1) {
			t.Fatalf("digest %q, self %q: handed out %+v", d, self, resp.Peers)
		}
	})
}

// FuzzMetaInfoQuery sends metainfo requests with hostile digests and query
// strings: the server refuses with 400 exactly what tracker.ParseHave and
// tracker.Source.Validate refuse, then what tracker.CheckPolicy refuses
// (before any seeding); anything else reaches the seeder, and
// nothing that reaches it could change its origin request.
func FuzzMetaInfoQuery(f *testing.F) {
	d := digest.FromString("x").String()
	for _, s := range []struct{ d, q string }{
		{d, "repo=a/b"},
		{d, "repo=a/b&pieces=2"},
		{d, "repo=a/b&pieces=1"},
		{d, "repo=a/b&pieces=-2"},
		{d, "repo=library/alpine&registry=registry.example:5000&have=3&pieces=2"},
		{d, "repo=a/b&have=-1"},
		{d, "repo=a/b&have=-2"},
		{d, "repo=a/b&have=+7"},
		{d, "repo=a/b&have=99999999999999999999"},
		{d, "repo=a/b&have=0x10"},
		{d, "repo=a/b&have="},
		{d, "repo=a/../b"},
		{d, "repo=a%2F%2Fb"},
		{d, "repo=a/b%3Fx=1"},
		{d, "repo=a/b&registry=http://x"},
		{d, "repo=a/b&registry=user@host"},
		{d, "repo=a/b&registry=host:99999"},
		{d, "repo=a/b&registry=[::1]:5000"},
		{d, "repo=Upper/Case"},
		{d, "repo=a/b;registry=x"},
		{d, "repo=%"},
		{d, ""},
		{"sha256:zz", "repo=a/b"},
		{digest.SHA512.FromString("x").String(), "repo=a/b"},
	} {
		f.Add(s.d, s.q)
	}
	seeder := &checkingSeeder{}
	h := fuzzHandler(f, seeder, digest.FromString("known"))
	f.Fuzz(func(t *testing.T, d, rawQuery string) {
		if !oneSegment(d) {
			return
		}
		rec := get(h, d, "metainfo", rawQuery)
		q, _ := url.ParseQuery(rawQuery)
		_, err := tracker.ParseHave(q.Get("have"))
		if err == nil {
			err = tracker.Source{Registry: q.Get("registry"), Repo: q.Get("repo"), Digest: digest.Digest(d)}.Validate()
		}
		if err != nil {
			requireInvalid(t, rec, err)
			return
		}
		if requirePolicy(t, rec, q) {
			if bad := seeder.violation(); bad != "" {
				t.Fatal(bad)
			}
			return
		}
		// Valid: the seeder was asked (now, or within SeedErrorTTL for the
		// same source) and found nothing. Under a burst of new digests the
		// tracker may refuse to start more seedings: 503 is allowed too.
		if rec.Code != http.StatusNotFound && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("valid metainfo request (digest %q, query %q): HTTP %d %q", d, rawQuery, rec.Code, rec.Body.String())
		}
		if bad := seeder.violation(); bad != "" {
			t.Fatal(bad)
		}
	})
}
