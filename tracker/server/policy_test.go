package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// get sends a GET of target with the cluster token and returns the status,
// the PIECE_POLICY-style error code (if any) and the Shoal-Pieces header;
// a 200's JSON body is decoded into out, if given.
func (f *fixture) get(t *testing.T, target string, out any) (status int, code, pieces string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.tr.URL+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.tr.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e tracker.ErrorBody
	switch {
	case resp.StatusCode != http.StatusOK:
		json.Unmarshal(body, &e)
	case out != nil:
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
	}
	return resp.StatusCode, e.Code, resp.Header.Get(tracker.PiecesHeader)
}

// An agent of piece policy 1 (it names none) and this tracker must not mix
// pieces: its announce is taken (it stays listed, for peer admission) but
// it is nobody's holder, and its peers and metainfo requests are refused
// with PIECE_POLICY before any seeding starts. Agents of this policy get
// their answers with the Shoal-Pieces header.
func TestPiecePolicy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	d := digest.FromString("layer")

	old := announceJSON(t, "old", d)
	var unversioned map[string]any
	if err := json.Unmarshal(old, &unversioned); err != nil {
		t.Fatal(err)
	}
	delete(unversioned, "pieces")
	old, _ = json.Marshal(unversioned)
	sig, err := tracker.SignAnnounce(trackertest.Key("old"), old, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := postAnnounce(t, f, old, http.Header{tracker.SignatureHeader: {sig}}); code != http.StatusOK {
		t.Fatalf("announce of a policy-1 agent: HTTP %d, want 200", code)
	}
	f.announce(t, peer("new", false), tracker.BlobState{Digest: d, Have: 3})

	peers, err := f.client.Peers(ctx, d, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(peers); len(got) != 1 || got[0] != "new" {
		t.Errorf("handout %v, want only the agent of this policy", got)
	}
	if listed, err := f.client.Listed(ctx, trackertest.ID("old")); err != nil || !listed {
		t.Errorf("the policy-1 agent: listed %v, %v; want listed", listed, err)
	}
	if got := f.metric(t, "shoal_tracker_announces_refused_total", "reason", "piece_policy"); got != 1 {
		t.Errorf("piece_policy announces counted %v, want 1", got)
	}

	mine := strconv.Itoa(piece.Policy)
	for _, tc := range []struct {
		query  string
		status int
		code   string
	}{
		{"", http.StatusConflict, "PIECE_POLICY"},
		{"pieces=1", http.StatusConflict, "PIECE_POLICY"},
		{"pieces=3", http.StatusConflict, "PIECE_POLICY"},
		{"pieces=two", http.StatusBadRequest, "INVALID"},
		{"pieces=" + mine, http.StatusOK, ""},
	} {
		status, code, pieces := f.get(t, "/v1/blobs/"+d.String()+"/peers?"+tc.query, nil)
		if status != tc.status || code != tc.code || status == http.StatusOK && pieces != mine {
			t.Errorf("peers?%s: HTTP %d %q, Shoal-Pieces %q; want %d %q", tc.query, status, code, pieces, tc.status, tc.code)
		}
		if tc.status == http.StatusOK {
			continue // a metainfo request of this policy would start seeding
		}
		status, code, _ = f.get(t, "/v1/blobs/"+d.String()+"/metainfo?repo=app&"+tc.query, nil)
		if status != tc.status || code != tc.code {
			t.Errorf("metainfo?%s: HTTP %d %q; want %d %q", tc.query, status, code, tc.status, tc.code)
		}
	}
	if n := f.seeder.Calls(d); n != 0 {
		t.Errorf("refused metainfo requests started %d seedings", n)
	}
	// The client's handout and the one peers request of this policy.
	if n := f.metric(t, "shoal_tracker_handouts_total", "", ""); n != 2 {
		t.Errorf("handouts counted %v, want 2: a refused request draws none", n)
	}

	// An agent of this policy: the seeder is asked, and the Info comes with
	// the header the client requires.
	blob := randomBlob(t, 3*1024)
	info := trackertest.InfoFor(blob, 1024)
	f.seeder.Complete(info)
	got, err := f.client.MetaInfo(ctx, tracker.Source{Repo: "app", Digest: info.Digest}, -1)
	if err != nil || !got.Complete() {
		t.Fatalf("MetaInfo of this policy: %+v, %v", got, err)
	}
}
