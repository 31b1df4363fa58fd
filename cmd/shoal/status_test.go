package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/agent/agenttest"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

func runStatusCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errw bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs(append([]string{"status"}, args...))
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// statusAgent serves an agent without a swarm, with the handler the agent
// command serves (the registry, /metrics and /v1/status).
func statusAgent(t *testing.T) string {
	t.Helper()
	cfg := defaultNodeConfig()
	cfg.DataDir = t.TempDir()
	cfg.Store.Capacity = 1 << 30
	reg := prometheus.NewRegistry()
	n, err := newNode(cfg, nil, false, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	rep := n.reporter(cfg.withDataDir(), nil, "")
	srv := httptest.NewServer(withStatus(withMetrics(n.agent.Handler(), reg), rep.Handler()))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestStatusAgent(t *testing.T) {
	t.Parallel()
	url := statusAgent(t)
	out, err := runStatusCmd(t, "--agent", url)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "agent     "+url, "0 B of 1.0 GiB (0%), 0 blobs", "received  peers 0 B, seeder 0 B, origin 0 B", "tracker   none", "downloads in flight: 0")
	out, err = runStatusCmd(t, "--agent", url+"/", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st agent.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Store.CapacityBytes != 1<<30 {
		t.Errorf("--json: %+v, %v\n%s", st, err, out)
	}
}

func TestStatusTracker(t *testing.T) {
	t.Parallel()
	tr := trackertest.Start(t, server.DefaultConfig(), trackertest.NewSeeder())
	d := trackertest.InfoFor([]byte("layer"), 1024).Digest
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	p := tracker.Peer{ID: id.String(), Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}}
	// In process, as the tracker's own seeder announces: no signature.
	if _, err := tr.Announce(t.Context(), tracker.Announce{Peer: p, Blobs: []tracker.BlobState{{Digest: d, Have: 1, Complete: true}}}); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(tr.Token+"\n"), 0o600)
	out, err := runStatusCmd(t, "--tracker", tr.URL, "--token-file", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "1 peers alive, 1 swarms", d.String(), p.ID, "100%")
}

// Every failure is one line that says what failed.
func TestStatusErrors(t *testing.T) {
	t.Parallel()
	tr := trackertest.Start(t, server.DefaultConfig(), trackertest.NewSeeder())
	dir := t.TempDir()
	wrong := filepath.Join(dir, "wrong")
	os.WriteFile(wrong, []byte("not-the-token\n"), 0o600)
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"agent down", []string{"--agent", downURL}, "not reachable"},
		{"not an agent", []string{"--agent", tr.URL}, "answered HTTP 401"},
		{"bad agent URL", []string{"--agent", "ftp://x"}, "want http(s)://host:port"},
		{"tracker down", []string{"--tracker", downURL, "--token-file", wrong}, "tracker " + downURL},
		{"wrong token", []string{"--tracker", tr.URL, "--token-file", wrong}, "refused the token of " + wrong},
		{"no token", []string{"--tracker", tr.URL}, "--token-file"},
		{"both", []string{"--tracker", tr.URL, "--agent", tr.URL}, "none of the others can be"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runStatusCmd(t, tc.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line with %q", msg, tc.want)
			}
		})
	}
}

// --tracker-ca: a TLS tracker is trusted with its CA file, and refused in
// one line without it.
func TestStatusTrackerTLS(t *testing.T) {
	t.Parallel()
	cfg := server.DefaultConfig()
	cfg.Tokens = []string{"tls-status-token"}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(trackertest.NewSeeder()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(s.Handler())
	t.Cleanup(func() { s.Close(); ts.Close() })
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644)
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("tls-status-token\n"), 0o600)

	out, err := runStatusCmd(t, "--tracker", ts.URL, "--token-file", tok, "--tracker-ca", ca)
	if err != nil || !strings.Contains(out, "0 peers alive") {
		t.Errorf("with the CA: %v\n%s", err, out)
	}
	_, err = runStatusCmd(t, "--tracker", ts.URL, "--token-file", tok)
	if err == nil || !strings.Contains(err.Error(), "certificate") || strings.Contains(err.Error(), "\n") {
		t.Errorf("without the CA: %v, want one line about the certificate", err)
	}
}

func TestPrintAgentStatus(t *testing.T) {
	t.Parallel()
	st := &agent.Status{
		Peer:      "12D3KooWpeer",
		Store:     agent.StoreStatus{UsedBytes: 3 << 30, Blobs: 12},
		Downloads: []agent.DownloadStatus{{Digest: digest.Digest("sha256:" + strings.Repeat("ab", 32)), SizeBytes: 80 << 20, Pieces: 20, Have: 9, Peers: 5}},
		Received:  agent.ReceivedStatus{Peers: 52 << 20, Seeder: 28 << 20},
		Peers:     7,
		Rates:     agent.RatesStatus{UploadBytesPerSecond: 12 << 20, DownloadBytesPerSecond: 40 << 20, WindowSeconds: 10},
		Tracker:   &agent.TrackerStatus{URL: "http://tracker:7070", Error: "tracker: unavailable: ping: connection refused"},
	}
	var b strings.Builder
	printAgentStatus(&b, "http://127.0.0.1:5050", st)
	out := b.String()
	wantLines(t, out,
		"store     3.0 GiB used, 12 blobs, no capacity limit",
		"received  peers 52.0 MiB, seeder 28.0 MiB, origin 0 B",
		"rates     up 12.0 MiB/s, down 40.0 MiB/s (last 10s)",
		"tracker   http://tracker:7070 NOT ANSWERING: tracker: unavailable",
		"downloads in flight: 1",
		"80.0 MiB  45%       9/20    5",
	)
}

// An agent of three tracker replicas, one of them killed: shoal status
// shows the agent's zone and each replica, the dead one not answering and
// passed over since its silence began, owning none of the node's blobs,
// the others owning them all; --tracker with the three URLs shows each
// live replica's page and the dead one in one line.
func TestStatusAgentReplicas(t *testing.T) {
	t.Parallel()
	const repo = "status/replicas"
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 4, LayerSize: 64 << 10, Seed: 3131})
	origin := startCountingOrigin(t, img, repo+":v1")
	c := startReplicaCluster(t, 3, origin.url)
	cfg := defaultNodeConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "agent")
	cfg.Upstream.Default = origin.url
	cfg.Zone = "rack-7"
	if err := cfg.loadIdentity(); err != nil {
		t.Fatal(err)
	}
	tr, err := clusterTracker(t.Context(), c.urls, testToken, slog.New(slog.DiscardHandler), tracker.WithKey(cfg.Identity))
	if err != nil {
		t.Fatal(err)
	}
	n, err := newNode(cfg, tr, false, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	rep := n.reporter(cfg.withDataDir(), tr, strings.Join(c.urls, ","))
	srv := httptest.NewServer(withStatus(n.agent.Handler(), rep.Handler()))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := pullVerified(ctx, strings.TrimPrefix(srv.URL, "http://"), repo+":v1"); err != nil {
		t.Fatal(err)
	}
	// The replica owning the agent's peer ID: the agent announces to it
	// whatever blobs it owns, so an announce finds it silent.
	victim := tracker.Rank(c.urls, n.host.ID().String())[0]
	c.kill(victim)
	dead := c.urls[victim]
	var st agent.Status
	for { // until an announce has found it silent
		st = rep.Status(ctx)
		if i := slices.IndexFunc(st.Tracker.Replicas, func(r agent.ReplicaStatus) bool { return r.Name == dead }); i >= 0 && st.Tracker.Replicas[i].PassedOver {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the killed replica is never passed over: %+v", st.Tracker)
		case <-time.After(50 * time.Millisecond):
		}
	}
	owned := 0
	for _, r := range st.Tracker.Replicas {
		owned += r.OwnedBlobs
		switch {
		case r.Name == dead && (r.Answers || r.DownSince == nil || r.OwnedBlobs != 0):
			t.Errorf("killed replica %+v, want not answering, down since, owning none", r)
		case r.Name != dead && (!r.Answers || r.PassedOver || r.Error != ""):
			t.Errorf("live replica %+v, want answering", r)
		}
	}
	if owned != st.Store.Blobs || st.Store.Blobs == 0 {
		t.Errorf("replicas own %d blobs, the node holds %d", owned, st.Store.Blobs)
	}

	out, err := runStatusCmd(t, "--agent", srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, "zone      rack-7", "2 of 3 replicas answer", "tracker replicas", "REPLICA", "BLOBS OWNED")
	deadLine := ""
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, dead+" ") {
			deadLine = line
		}
	}
	if !strings.Contains(deadLine, "NOT ANSWERING") || !strings.Contains(deadLine, "PASSED OVER since") {
		t.Errorf("killed replica's line %q, want not answering and passed over since\n%s", deadLine, out)
	}

	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600)
	out, err = runStatusCmd(t, "--tracker", strings.Join(c.urls, ","), "--token-file", tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out, "peers alive,"); got != 2 {
		t.Errorf("%d status pages, want the two live replicas'\n%s", got, out)
	}
	if !strings.Contains(out, "tracker replica "+dead+" NOT ANSWERING") {
		t.Errorf("output lacks the killed replica\n%s", out)
	}
	// A dns+ name: each address's page (one live replica on loopback).
	_, port, _ := strings.Cut(strings.TrimPrefix(c.urls[(victim+1)%len(c.urls)], "http://"), ":")
	f := statusFlags{tracker: "dns+http://trackers.shoal.test:" + port, tokenFile: tokenFile}
	reports, err := f.trackerStatuses(ctx, func(context.Context, string) ([]string, error) { return []string{"127.0.0.1"}, nil })
	if err != nil || len(reports) != 1 || reports[0].Status == nil || reports[0].Replica != "127.0.0.1:"+port {
		t.Errorf("dns+ status: %+v, %v", reports, err)
	}
	for i := range c.urls {
		c.kill(i) // the victim again: a no-op
	}
	if _, err := runStatusCmd(t, "--tracker", strings.Join(c.urls, ","), "--token-file", tokenFile); err == nil || !strings.Contains(err.Error(), "no replica answers") || strings.Contains(err.Error(), "\n") {
		t.Errorf("every replica dead: %v, want one line", err)
	}
}

func TestPrintAgentStatusReplicas(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	down := now.Add(-90 * time.Second)
	st := &agent.Status{
		Time: now,
		Zone: "eu-west-1a",
		Tracker: &agent.TrackerStatus{URL: "dns+https://shoal-tracker-headless.shoal.svc:7070", Reachable: true, Replicas: []agent.ReplicaStatus{
			{Name: "10.0.0.1:7070", Answers: true, OwnedBlobs: 7},
			{Name: "10.0.0.2:7070", Error: "tracker: unavailable: ping: connection\nrefused", PassedOver: true, DownSince: &down},
			{Name: "10.0.0.3:7070", Answers: true, DownSince: &down, OwnedBlobs: 5},
		}},
	}
	var b strings.Builder
	printAgentStatus(&b, "http://127.0.0.1:5050", st)
	out := b.String()
	wantLines(t, out,
		"zone      eu-west-1a",
		"tracker   dns+https://shoal-tracker-headless.shoal.svc:7070: 2 of 3 replicas answer",
		"10.0.0.1:7070  answers        sent to it",
		"10.0.0.2:7070  NOT ANSWERING  PASSED OVER since 09:58:30 (1m30s ago)",
		"0            tracker: unavailable: ping: connection refused",
		"10.0.0.3:7070  answers        tried again, silent since 09:58:30 (1m30s ago)",
	)
	st.Zone, st.Tracker = "", nil
	b.Reset()
	printAgentStatus(&b, "http://127.0.0.1:5050", st)
	if out := b.String(); !strings.Contains(out, "zone      none") || strings.Contains(out, "tracker replicas") {
		t.Errorf("no zone, no tracker:\n%s", out)
	}
}

// wantLines reports each of wants that out lacks.
func wantLines(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
