package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// rollout is a tracker in the middle of a rollout: three agents and the
// seeder hold one blob (one agent whole), the seeder fetches another from
// the origin, a third is complete on two agents.
type rollout struct {
	*fixture
	layer, seeding, done *piece.Info
}

func newRollout(t *testing.T) *rollout {
	t.Helper()
	r := &rollout{fixture: newFixture(t, nil), layer: testInfo(t), seeding: testInfo(t), done: testInfo(t)}
	ctx := t.Context()
	if _, err := r.tr.Announce(ctx, tracker.Announce{Peer: peer("seeder", true), Blobs: []tracker.BlobState{{Digest: r.layer.Digest, Have: 6, Complete: true}}}); err != nil {
		t.Fatal(err)
	}
	r.announce(t, peer("agentA", false), tracker.BlobState{Digest: r.layer.Digest, Have: 6, Complete: true}, tracker.BlobState{Digest: r.done.Digest, Have: 6, Complete: true})
	r.announce(t, peer("agentB", false), tracker.BlobState{Digest: r.layer.Digest, Have: 2}, tracker.BlobState{Digest: r.done.Digest, Have: 6, Complete: true})
	r.announce(t, peer("agentC", false), tracker.BlobState{Digest: r.layer.Digest, Have: 0})
	// A seeding under way: the seeder has reported two pieces of six.
	r.seeder.Emit(r.seeding.Digest, trackertest.Prefix(r.seeding, 2))
	if _, err := r.client.MetaInfo(ctx, tracker.Source{Repo: "app", Digest: r.seeding.Digest}, -1); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestStatus(t *testing.T) {
	t.Parallel()
	r := newRollout(t)
	st, err := r.client.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]tracker.SwarmStatus{
		r.layer.Digest.String():   {Digest: r.layer.Digest, Holders: 4, Complete: 2},
		r.done.Digest.String():    {Digest: r.done.Digest, Holders: 2, Complete: 2},
		r.seeding.Digest.String(): {Digest: r.seeding.Digest, SizeBytes: r.seeding.Size, Seeding: true},
	}
	if len(st.Swarms) != len(want) {
		t.Fatalf("swarms %+v, want %d", st.Swarms, len(want))
	}
	for i, sw := range st.Swarms {
		if i > 0 && st.Swarms[i-1].Digest >= sw.Digest {
			t.Errorf("swarms not sorted by digest: %s before %s", st.Swarms[i-1].Digest, sw.Digest)
		}
		if sw != want[sw.Digest.String()] {
			t.Errorf("swarm %+v, want %+v", sw, want[sw.Digest.String()])
		}
	}
	var got []string
	for _, a := range st.Agents {
		name := trackertest.Name(a.ID)
		got = append(got, name)
		if a.Seeder != (name == "seeder") {
			t.Errorf("agent %s: seeder %v", name, a.Seeder)
		}
		if name == "agentA" && (a.Blobs != 2 || a.Complete != 2) {
			t.Errorf("agentA %+v, want 2 blobs, 2 complete", a)
		}
	}
	agents := []string{trackertest.ID("agentA"), trackertest.ID("agentB"), trackertest.ID("agentC")}
	slices.Sort(agents)
	order := []string{"seeder"}
	for _, id := range agents {
		order = append(order, trackertest.Name(id))
	}
	if !slices.Equal(got, order) {
		t.Errorf("agents %v, want the seeder first, then by ID: %v", got, order)
	}

	// Past the peer TTL without announces, nobody is alive and the swarms
	// are gone but the seeding.
	r.clock.Advance(time.Minute)
	st, err = r.client.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Agents) != 0 || len(st.Swarms) != 1 || !st.Swarms[0].Seeding {
		t.Errorf("after the TTL: agents %+v, swarms %+v; want none but the seeding", st.Agents, st.Swarms)
	}
}

func TestStatusNeedsToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	c, err := tracker.NewClient(f.tr.URL, "wrong-token")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Status(t.Context()); !errors.Is(err, tracker.ErrUnauthorized) {
		t.Errorf("Status with a wrong token: %v, want ErrUnauthorized", err)
	}
}

func TestStatusPageAuth(t *testing.T) {
	t.Parallel()
	r := newRollout(t)
	for _, tc := range []struct {
		name string
		set  func(*http.Request)
		want int
	}{
		{"none", func(*http.Request) {}, http.StatusUnauthorized},
		{"basic, wrong password", func(q *http.Request) { q.SetBasicAuth("ops", "nope") }, http.StatusUnauthorized},
		{"basic, token as user name", func(q *http.Request) { q.SetBasicAuth(r.tr.Token, "") }, http.StatusUnauthorized},
		{"bearer, wrong", func(q *http.Request) { q.Header.Set("Authorization", "Bearer nope") }, http.StatusUnauthorized},
		{"basic", func(q *http.Request) { q.SetBasicAuth("ops", r.tr.Token) }, http.StatusOK},
		{"basic, no user", func(q *http.Request) { q.SetBasicAuth("", r.tr.Token) }, http.StatusOK},
		{"bearer", func(q *http.Request) { q.Header.Set("Authorization", "Bearer "+r.tr.Token) }, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, r.tr.URL+"/status", nil)
			tc.set(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want == http.StatusUnauthorized {
				if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Basic ") {
					t.Errorf("challenge %q, want Basic", ch)
				}
				if strings.Contains(string(body), r.layer.Digest.Encoded()[:12]) {
					t.Error("a refused page shows the swarms")
				}
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			page := string(body)
			for _, want := range []string{`<meta http-equiv="refresh" content="5">`, r.layer.Digest.String()[:19], trackertest.ID("agentB")[:12], "seeder", "seeding"} {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			if strings.Contains(page, "<script") {
				t.Error("the page has a script")
			}
		})
	}
}

// The API stays bearer-only: Basic authentication is for the page.
func TestStatusAPIRefusesBasic(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, f.tr.URL+"/v1/status", nil)
	req.SetBasicAuth("ops", f.tr.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/status with Basic auth: %d, want 401", resp.StatusCode)
	}
}
