package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// postAnnounce posts body with hdr and returns the status and the answer.
func postAnnounce(t *testing.T, f *fixture, body []byte, hdr http.Header) (int, tracker.AnnounceResponse) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.tr.URL+"/v1/announce", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr.Clone()
	req.Header.Set("Authorization", "Bearer "+f.tr.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out tracker.AnnounceResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, out
}

func announceJSON(t *testing.T, name string, d digest.Digest) []byte {
	t.Helper()
	id := trackertest.ID(name)
	body, err := json.Marshal(map[string]any{
		"peer":   map[string]any{"id": id, "addrs": []string{"/ip4/10.0.0.1/tcp/4001"}},
		"blobs":  []tracker.BlobState{{Digest: d, Have: 3}},
		"pieces": piece.Policy,
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// A signed announce that asks for a session gets one; the session's MAC
// then stands for a signature, for the same body (the cheap path) and a
// changed one; a MAC of the wrong key, of another peer's session or of an
// expired session is refused; without asking, no session is sent.
func TestAnnounceSession(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	d1, d2 := digest.FromString("one"), digest.FromString("two")
	body := announceJSON(t, "a", d1)
	sign := func(name string, body []byte, ask bool) http.Header {
		sig, err := tracker.SignAnnounce(trackertest.Key(name), body, f.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{tracker.SignatureHeader: {sig}}
		if ask {
			h.Set(tracker.SessionHeader, "new")
		}
		return h
	}
	if code, resp := postAnnounce(t, f, body, sign("a", body, false)); code != http.StatusOK || resp.Session != nil {
		t.Fatalf("signed, no session asked: %d, session %v", code, resp.Session)
	}
	code, resp := postAnnounce(t, f, body, sign("a", body, true))
	if code != http.StatusOK || resp.Session == nil {
		t.Fatalf("signed, session asked: %d, session %v", code, resp.Session)
	}
	sess := *resp.Session
	mac := func(s tracker.Session, name string, body []byte) http.Header {
		h, err := tracker.MACAnnounce(s, trackertest.ID(name), body, f.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return http.Header{tracker.SessionHeader: {h}}
	}
	f.clock.Advance(5 * time.Second)
	if code, _ := postAnnounce(t, f, body, mac(sess, "a", body)); code != http.StatusOK {
		t.Fatalf("the same body with the session's MAC: %d", code)
	}
	if ok, _ := f.tr.Listed(context.Background(), trackertest.ID("a")); !ok {
		t.Fatal("the MAC'd announce did not renew the peer")
	}
	f.clock.Advance(7 * time.Second) // 12 s after the signed one, past the 9 s TTL
	if peers, _ := f.tr.Peers(context.Background(), d1, ""); len(peers) != 1 {
		t.Fatalf("the MAC'd announce did not renew the holding: %d holders", len(peers))
	}
	changed := announceJSON(t, "a", d2)
	if code, _ := postAnnounce(t, f, changed, mac(sess, "a", changed)); code != http.StatusOK {
		t.Fatalf("a changed body with the session's MAC: %d", code)
	}
	if peers, _ := f.tr.Peers(context.Background(), d1, ""); len(peers) != 0 {
		t.Fatalf("the changed announce did not withdraw the blob it left out")
	}

	forged := sess
	forged.Key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	bBody := announceJSON(t, "b", d1)
	_, bResp := postAnnounce(t, f, bBody, sign("b", bBody, true))
	expired := sess
	expired.Expires = f.clock.Now().Unix()
	for name, h := range map[string]http.Header{
		"a wrong key":            mac(forged, "a", changed),
		"another peer's session": mac(*bResp.Session, "b", changed), // names b, body is a's
		"an expired session":     mac(expired, "a", changed),
		"a malformed header":     {tracker.SessionHeader: {"id=x,mac=zz"}},
		"a's key under b's name": mac(sess, "b", changed),
	} {
		if code, _ := postAnnounce(t, f, changed, h); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	if got := f.metric(t, "shoal_tracker_announces_refused_total", "reason", "bad_session"); got != 5 {
		t.Errorf("bad_session refusals counted %v, want 5", got)
	}
}

// The client asks for a session with its first signed announce and MACs
// the next ones; when the tracker behind its URL restarts (a new secret),
// the refused MAC makes it sign again, in the same call.
func TestClientSessionAfterRestart(t *testing.T) {
	t.Parallel()
	clock := trackertest.NewClock(time.Now())
	cfg := server.DefaultConfig()
	cfg.Tokens = []string{"session-token"}
	start := func() *trackertest.Tracker {
		return trackertest.Start(t, cfg, trackertest.NewSeeder(), server.WithClock(clock))
	}
	var target atomic.Pointer[httputil.ReverseProxy]
	point := func(tr *trackertest.Tracker) {
		u, err := url.Parse(tr.URL)
		if err != nil {
			t.Fatal(err)
		}
		target.Store(httputil.NewSingleHostReverseProxy(u))
	}
	var macs, signed atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(tracker.SignatureHeader) != "" {
			signed.Add(1)
		} else if r.Header.Get(tracker.SessionHeader) != "" {
			macs.Add(1)
		}
		target.Load().ServeHTTP(w, r)
	}))
	defer front.Close()
	first := start()
	point(first)
	c, err := tracker.NewClient(front.URL, "session-token", tracker.WithKey(trackertest.Key("a")), tracker.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	a := tracker.Announce{Peer: peer("a", false), Blobs: []tracker.BlobState{{Digest: digest.FromString("x"), Have: 1}}}
	ctx := context.Background()
	for range 3 {
		if _, err := c.Announce(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if signed.Load() != 1 || macs.Load() != 2 {
		t.Fatalf("%d signed and %d MAC'd announces, want 1 and 2", signed.Load(), macs.Load())
	}
	point(start()) // a restarted tracker: another secret
	if _, err := c.Announce(ctx, a); err != nil {
		t.Fatalf("announce after the restart: %v", err)
	}
	if signed.Load() != 2 || macs.Load() != 3 {
		t.Fatalf("after the restart: %d signed and %d MAC'd, want 2 and 3", signed.Load(), macs.Load())
	}
	if _, err := c.Announce(ctx, a); err != nil || macs.Load() != 4 {
		t.Fatalf("the new session is not used: %v, %d MAC'd", err, macs.Load())
	}
}
