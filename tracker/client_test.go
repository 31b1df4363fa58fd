package tracker_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// canned is a RoundTripper that answers every request with one response, so
// the client's decoding is tested without sockets.
type canned struct {
	status int
	body   string
}

func (c canned) RoundTrip(*http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: c.status,
		Header:     http.Header{"Content-Type": {"application/json"}, tracker.PiecesHeader: {strconv.Itoa(piece.Policy)}},
		Body:       io.NopCloser(strings.NewReader(c.body)),
	}, nil
}

func cannedClient(t testing.TB, status int, body string) *tracker.Client {
	t.Helper()
	c, err := tracker.NewClient("http://tracker.invalid", "token", tracker.WithHTTPClient(&http.Client{Transport: canned{status, body}}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientRejectsGarbage(t *testing.T) {
	t.Parallel()
	info := trackertest.InfoFor(randomBlob(5*1024+100), 1024)
	good, err := info.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	src := tracker.Source{Repo: "library/alpine", Digest: info.Digest}
	otherInfo := trackertest.InfoFor(randomBlob(5*1024+100), 1024)
	other, _ := otherInfo.Marshal()
	ctx := context.Background()

	metainfo := func(c *tracker.Client) error { _, err := c.MetaInfo(ctx, src, 0); return err }
	peers := func(c *tracker.Client) error { _, err := c.Peers(ctx, info.Digest, "me"); return err }
	announce := func(c *tracker.Client) error {
		_, err := c.Announce(ctx, tracker.Announce{Peer: peer("me", false)})
		return err
	}
	for _, tc := range []struct {
		name   string
		call   func(*tracker.Client) error
		status int
		body   string
		want   error
	}{
		{"metainfo not json", metainfo, 200, `<html>`, tracker.ErrInvalid},
		{"metainfo empty", metainfo, 200, ``, tracker.ErrInvalid},
		{"metainfo truncated", metainfo, 200, string(good[:len(good)/2]), tracker.ErrInvalid},
		{"metainfo unknown field", metainfo, 200, strings.Replace(string(good), `{`, `{"x":1,`, 1), tracker.ErrInvalid},
		{"metainfo trailing", metainfo, 200, string(good) + `[]`, tracker.ErrInvalid},
		{"metainfo other blob", metainfo, 200, string(other), tracker.ErrInvalid},
		{"metainfo bad CID", metainfo, 200, `{"digest":"` + info.Digest.String() + `","size":10,"pieceSize":5,"pieces":["zzz"]}`, tracker.ErrInvalid},
		{"metainfo too many pieces", metainfo, 200, `{"digest":"` + info.Digest.String() + `","size":1,"pieceSize":5,"pieces":["` + info.Pieces[0].String() + `","` + info.Pieces[1].String() + `"]}`, tracker.ErrInvalid},
		{"metainfo null", metainfo, 200, `null`, tracker.ErrInvalid},
		{"peers not json", peers, 200, `peers`, tracker.ErrInvalid},
		{"peers unknown field", peers, 200, `{"peers":[],"more":true}`, tracker.ErrInvalid},
		{"peers bad ID", peers, 200, `{"peers":[{"id":"a b","addrs":["/a"]}]}`, tracker.ErrInvalid},
		{"peers no addrs", peers, 200, `{"peers":[{"id":"ab","addrs":[]}]}`, tracker.ErrInvalid},
		{"peers negative have", peers, 200, `{"peers":[{"id":"ab","addrs":["/a"],"have":-4}]}`, tracker.ErrInvalid},
		{"announce zero interval", announce, 200, `{"intervalMs":0}`, tracker.ErrInvalid},
		{"announce huge interval", announce, 200, `{"intervalMs":999999999999}`, tracker.ErrInvalid},
		// Every answer is read through the same bound; the announce one is
		// the smallest, so the test stays cheap.
		{"announce oversized", announce, 200, `{"intervalMs":3000` + strings.Repeat(" ", 20000) + `}`, tracker.ErrInvalid},
		{"announce string", announce, 200, `{"intervalMs":"3s"}`, tracker.ErrInvalid},
		{"proxy error page", peers, 502, `<html>bad gateway</html>`, tracker.ErrUnavailable},
		{"unexpected status", peers, 418, `{}`, tracker.ErrInvalid},
		{"not found", metainfo, 404, `{"code":"NOT_FOUND","message":"manifest unknown"}`, tracker.ErrNotFound},
		{"pending", metainfo, 202, `{"code":"PENDING"}`, tracker.ErrPending},
	} {
		err := tc.call(cannedClient(t, tc.status, tc.body))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	if i, err := cannedClient(t, 200, string(good)).MetaInfo(ctx, src, 0); err != nil || !i.Complete() {
		t.Errorf("good metainfo: %+v, %v", i, err)
	}
	if iv, err := cannedClient(t, 200, `{"intervalMs":2500}`).Announce(ctx, tracker.Announce{Peer: peer("me", false)}); err != nil || iv != 2500*time.Millisecond {
		t.Errorf("good announce: %s, %v", iv, err)
	}
}

func TestClientValidatesRequests(t *testing.T) {
	t.Parallel()
	c := cannedClient(t, 500, ``) // never reached
	ctx := context.Background()
	d := digest.FromString("x")
	if _, err := c.Announce(ctx, tracker.Announce{Peer: tracker.Peer{ID: "me"}}); !errors.Is(err, tracker.ErrInvalid) {
		t.Errorf("announce without addrs: %v", err)
	}
	if _, err := c.Peers(ctx, "sha256:bad", ""); !errors.Is(err, tracker.ErrInvalid) {
		t.Errorf("peers of a bad digest: %v", err)
	}
	if _, err := c.MetaInfo(ctx, tracker.Source{Repo: "UPPER", Digest: d}, 0); !errors.Is(err, tracker.ErrInvalid) {
		t.Errorf("metainfo of a bad repo: %v", err)
	}
}

func TestClientUnreachable(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: nothing listens there.
	c, err := tracker.NewClient("http://127.0.0.1:1", "token")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Peers(context.Background(), digest.FromString("x"), ""); !errors.Is(err, tracker.ErrUnavailable) {
		t.Errorf("unreachable tracker: %v, want ErrUnavailable", err)
	}
}

// FuzzClientPeers: any answer to a peers request yields valid peers or an
// error, never a panic.
func FuzzClientPeers(f *testing.F) {
	f.Add(`{"peers":[{"id":"ab","addrs":["/ip4/1.2.3.4/tcp/1"],"seeder":true,"complete":false,"have":3}]}`)
	f.Add(`{"peers":[]}`)
	f.Add(`{"peers":null}`)
	f.Add(`{"peers":[{"id":"","addrs":[""]}]}`)
	d := digest.FromString("x")
	f.Fuzz(func(t *testing.T, body string) {
		ps, err := cannedClient(t, 200, body).Peers(context.Background(), d, "")
		if err != nil {
			if !errors.Is(err, tracker.ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			return
		}
		for _, p := range ps {
			if p.ID == "" || len(p.Addrs) == 0 || p.Have < 0 {
				t.Fatalf("invalid peer accepted: %+v", p)
			}
		}
	})
}

// FuzzClientMetaInfo: any answer to a metainfo request yields a valid Info
// of the asked digest or an error, never a panic.
func FuzzClientMetaInfo(f *testing.F) {
	d := digest.FromString("x")
	c := piece.Sum([]byte("x")).String()
	f.Add(`{"digest":"` + d.String() + `","size":3000000,"pieceSize":1048576,"pieces":["` + c + `"]}`)
	f.Add(`{"digest":"` + d.String() + `","size":1,"pieceSize":1,"pieces":["` + c + `"]}`)
	f.Add(`{"digest":"` + d.String() + `","size":-1,"pieceSize":0,"pieces":null}`)
	f.Add(`{}`)
	f.Fuzz(func(t *testing.T, body string) {
		info, err := cannedClient(t, 200, body).MetaInfo(context.Background(), tracker.Source{Repo: "a/b", Digest: d}, 0)
		if err != nil {
			if !errors.Is(err, tracker.ErrInvalid) {
				t.Fatalf("error not wrapping ErrInvalid: %v", err)
			}
			return
		}
		if info.Digest != d || info.Validate() != nil {
			t.Fatalf("invalid metainfo accepted: %+v", info)
		}
	})
}

// noOrigin is a tracker seeder whose origin has nothing: a metainfo request
// the tracker accepts is answered 404 at once.
type noOrigin struct{}

func (noOrigin) Seed(context.Context, tracker.Source, func(*piece.Info)) error {
	return fmt.Errorf("%w: fuzz origin has nothing", tracker.ErrNotFound)
}

// inProcess is a RoundTripper that serves every request with a tracker's
// handler, and counts them.
type inProcess struct {
	h    http.Handler
	sent atomic.Int64
	have atomic.Int64 // ParseHave of the last request's have, as the server reads it
}

func (p *inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	p.sent.Add(1)
	have, err := tracker.ParseHave(req.URL.Query().Get("have"))
	if err != nil {
		have = -2
	}
	p.have.Store(int64(have))
	rec := httptest.NewRecorder()
	p.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// FuzzClientQuery checks that the client and the tracker agree on what a
// valid query is: the client refuses to send what tracker.Source.Validate,
// ValidateDigest or ValidatePeerID refuse, and the tracker never answers
// what the client does send with INVALID; the have the client sends is the
// one the tracker reads (clamped to piece.MaxPieces, -1 when negative).
func FuzzClientQuery(f *testing.F) {
	d := digest.FromString("x").String()
	for _, s := range []struct {
		registry, repo, dgst, self string
		have                       int
	}{
		{"", "library/alpine", d, "", -1},
		{"registry.example:5000", "team/app", d, "p1", 0},
		{"[::1]:5000", "a/b", d, "", 3},
		{"", "a/b", d, "", piece.MaxPieces + 1},
		{"", "a/b", d, "", -7},
		{"http://x", "a/b", d, "a b", 1},
		{"x", "a/../b", d, "p%", 1},
		{"x", "a/b?c", "sha256:zz", "p/1", 1},
		{"x&registry=y", "a/b#c", d, strings.Repeat("p", 129), 1},
		{"", "a/b", digest.SHA512.FromString("x").String(), "", 1},
	} {
		f.Add(s.registry, s.repo, s.dgst, s.self, s.have)
	}
	cfg := server.DefaultConfig()
	cfg.Tokens = []string{trackertest.Token}
	cfg.MetaInfoWait = time.Second
	srv, err := server.New(cfg)
	if err == nil {
		err = srv.Start(noOrigin{})
	}
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	rt := &inProcess{h: srv.Handler()}
	c, err := tracker.NewClient("http://tracker.invalid", trackertest.Token, tracker.WithHTTPClient(&http.Client{Transport: rt}))
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, registry, repo, dgst, self string, have int) {
		src := tracker.Source{Registry: registry, Repo: repo, Digest: digest.Digest(dgst)}
		before := rt.sent.Load()
		_, err := c.MetaInfo(ctx, src, have)
		sent := rt.sent.Load() > before
		if verr := src.Validate(); verr != nil {
			if sent || !errors.Is(err, tracker.ErrInvalid) {
				t.Fatalf("metainfo of %+v (invalid: %v): sent %v, err %v; want ErrInvalid, nothing sent", src, verr, sent, err)
			}
		} else {
			if !sent || !(errors.Is(err, tracker.ErrNotFound) || errors.Is(err, tracker.ErrUnavailable)) {
				t.Fatalf("metainfo of %+v: sent %v, err %v; want the tracker to answer NOT_FOUND", src, sent, err)
			}
			want := int64(min(have, piece.MaxPieces))
			if have < 0 {
				want = -1
			}
			if got := rt.have.Load(); got != want {
				t.Fatalf("metainfo with have %d: the tracker read have %d, want %d", have, got, want)
			}
		}

		before = rt.sent.Load()
		_, err = c.Peers(ctx, digest.Digest(dgst), self)
		sent = rt.sent.Load() > before
		verr := tracker.ValidateDigest(digest.Digest(dgst))
		if verr == nil && self != "" {
			verr = tracker.ValidatePeerID(self)
		}
		if verr != nil {
			if sent || !errors.Is(err, tracker.ErrInvalid) {
				t.Fatalf("peers of %q for %q (invalid: %v): sent %v, err %v; want ErrInvalid, nothing sent", dgst, self, verr, sent, err)
			}
		} else if !sent || err != nil {
			t.Fatalf("peers of %q for %q: sent %v, err %v; want an answer", dgst, self, sent, err)
		}
	})
}

func TestNewClientRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, token string }{
		{"", "t"},
		{"ftp://tracker", "t"},
		{"http://", "t"},
		{"http://tracker?x=1", "t"},
		{"http://user:pw@tracker", "t"},
		{"http://tracker", ""},
		{"http://tracker", "a b"},
	} {
		if _, err := tracker.NewClient(tc.url, tc.token); err == nil {
			t.Errorf("NewClient(%q, %q) accepted", tc.url, tc.token)
		}
	}
}

func randomBlob(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func peer(id string, seeder bool) tracker.Peer {
	return tracker.Peer{ID: id, Addrs: []string{"/ip4/127.0.0.1/tcp/4001/p2p/" + id}, Seeder: seeder}
}

// olderTracker answers every request 200 with body and no Shoal-Pieces
// header, as a tracker older than piece policy 2 does; it records the
// piece policy each request named.
type olderTracker struct {
	body  string
	named []string
}

func (o *olderTracker) RoundTrip(r *http.Request) (*http.Response, error) {
	o.named = append(o.named, r.URL.Query().Get(tracker.PiecesParam))
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(o.body)),
	}, nil
}

// Peers and metainfo requests name the agent's piece policy, and their
// answers are taken only from a tracker of the same: an older tracker
// (no Shoal-Pieces header) or one that refuses (409 PIECE_POLICY) is
// ErrPolicy, so the agent does not mix pieces cut two ways.
func TestClientPiecePolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	info := trackertest.InfoFor(randomBlob(3*1024), 1024)
	good, err := info.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	src := tracker.Source{Repo: "app", Digest: info.Digest}
	for name, body := range map[string]string{"metainfo": string(good), "peers": `{"peers":[]}`} {
		older := &olderTracker{body: body}
		c, err := tracker.NewClient("http://tracker.invalid", "token", tracker.WithHTTPClient(&http.Client{Transport: older}))
		if err != nil {
			t.Fatal(err)
		}
		if name == "metainfo" {
			_, err = c.MetaInfo(ctx, src, -1)
		} else {
			_, err = c.Peers(ctx, info.Digest, "")
		}
		if !errors.Is(err, tracker.ErrPolicy) {
			t.Errorf("%s from an older tracker: %v, want ErrPolicy", name, err)
		}
		if want := strconv.Itoa(piece.Policy); len(older.named) != 1 || older.named[0] != want {
			t.Errorf("%s request named piece policy %q, want %q", name, older.named, want)
		}
	}
	refusing := cannedClient(t, http.StatusConflict, `{"code":"PIECE_POLICY","message":"policy 3"}`)
	if _, err := refusing.MetaInfo(ctx, src, -1); !errors.Is(err, tracker.ErrPolicy) {
		t.Errorf("metainfo refused with 409: %v, want ErrPolicy", err)
	}
	if i, err := cannedClient(t, http.StatusOK, string(good)).MetaInfo(ctx, src, -1); err != nil || !i.Complete() {
		t.Errorf("metainfo from a tracker of this policy: %+v, %v", i, err)
	}
}

// TestClientMetaInfoAfter: the client grows what it holds by a tracker's
// later hashes, takes a whole Info from a tracker that ignores from, and
// refuses hashes that do not follow on from what it holds.
func TestClientMetaInfoAfter(t *testing.T) {
	t.Parallel()
	info := trackertest.InfoFor(randomBlob(5*1024+100), 1024)
	src := tracker.Source{Repo: "library/alpine", Digest: info.Digest}
	ctx := context.Background()
	known := *info
	known.Pieces = info.Pieces[:2]
	delta := func(from int) string {
		d := tracker.MetaInfoDelta{Info: *info, From: from}
		d.Pieces = info.Pieces[from:]
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got, err := cannedClient(t, 200, delta(2)).MetaInfoAfter(ctx, src, &known); err != nil || !slices.Equal(got.Pieces, info.Pieces) {
		t.Errorf("the hashes after 2: %+v, %v; want the whole list", got, err)
	}
	whole, _ := info.Marshal()
	if got, err := cannedClient(t, 200, string(whole)).MetaInfoAfter(ctx, src, &known); err != nil || !slices.Equal(got.Pieces, info.Pieces) {
		t.Errorf("a tracker that ignores from: %+v, %v; want the whole list", got, err)
	}
	if _, err := cannedClient(t, 200, delta(3)).MetaInfoAfter(ctx, src, &known); !errors.Is(err, tracker.ErrInvalid) {
		t.Errorf("hashes from 3 when 2 are held: %v, want ErrInvalid", err)
	}
	if _, err := cannedClient(t, 200, delta(1)).MetaInfo(ctx, src, 0); !errors.Is(err, tracker.ErrInvalid) {
		t.Errorf("hashes from 1 when none was asked for: %v, want ErrInvalid", err)
	}
}
