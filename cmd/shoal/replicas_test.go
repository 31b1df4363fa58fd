package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/agenttest"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

// blobCountingOrigin is an in-process registry that counts the bytes of the
// blobs it sends.
type blobCountingOrigin struct {
	url  string
	sent atomic.Int64
}

type blobCountingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w blobCountingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

func startCountingOrigin(t *testing.T, img v1.Image, repo string) *blobCountingOrigin {
	t.Helper()
	o := &blobCountingOrigin{}
	reg := registry.New(registry.Logger(stdlog.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			w = blobCountingWriter{w, &o.sent}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	o.url = srv.URL
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://")+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	o.sent.Store(0)
	return o
}

const replicaSeedToken = "replica-seed-token"

// replicaCluster is three trackers with their seeders, sharing nothing,
// each on its own loopback HTTP server.
type replicaCluster struct {
	t     *testing.T
	urls  []string
	nodes []*trackerNode
	https []*httptest.Server
	dead  []bool
}

func startReplicaCluster(t *testing.T, n int, origin string) *replicaCluster {
	t.Helper()
	c := &replicaCluster{t: t, dead: make([]bool, n)}
	for i := range n {
		tcfg := server.DefaultConfig()
		tcfg.Tokens = []string{testToken}
		tcfg.SeedTokens = []string{replicaSeedToken}
		tcfg.AnnounceInterval, tcfg.PeerTTL = time.Second, 3*time.Second
		seed := defaultSeederConfig()
		seed.DataDir = filepath.Join(t.TempDir(), fmt.Sprintf("seeder%d", i))
		seed.Upstream.Default = origin
		tn, err := newTrackerNode(tcfg, seed, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(tn.server.Handler())
		c.nodes = append(c.nodes, tn)
		c.https = append(c.https, hs)
		c.urls = append(c.urls, hs.URL)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.kill(i)
		}
	})
	return c
}

// kill stops replica i as a crash would look to agents: its connections
// cut, its port closed, its seeder gone.
func (c *replicaCluster) kill(i int) {
	if c.dead[i] {
		return
	}
	c.dead[i] = true
	c.nodes[i].server.Close() // answers its long-polls
	c.https[i].CloseClientConnections()
	c.https[i].Close()
	c.nodes[i].Close()
}

// agent starts an agent whose tracker is the replica set of c.
func (c *replicaCluster) agent(name, origin string) (*node, *tracker.Replicas) {
	c.t.Helper()
	cfg := defaultNodeConfig()
	cfg.DataDir = filepath.Join(c.t.TempDir(), name)
	cfg.Upstream.Default = origin
	if err := cfg.loadIdentity(); err != nil {
		c.t.Fatal(err)
	}
	tr, err := clusterTracker(c.t.Context(), c.urls, testToken, slog.New(slog.DiscardHandler), tracker.WithKey(cfg.Identity))
	if err != nil {
		c.t.Fatal(err)
	}
	reps := tr.(*tracker.Replicas)
	n, err := newNode(cfg, reps, false, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(c.t.Context(), 20*time.Second)
	defer cancel()
	for {
		if ok, _ := reps.Listed(ctx, n.host.ID().String()); ok {
			return n, reps
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("no replica lists agent %s", name)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// pullVerified pulls repo:tag through the agent served at addr and checks
// every blob against its digest.
func pullVerified(ctx context.Context, addr, repoTag string) error {
	ref, err := name.ParseReference(addr+"/"+repoTag, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(ref, remote.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		want, err := l.Digest()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("layer %s: %w", want, err)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %s: %w", want, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
			return fmt.Errorf("layer %s: content is sha256:%s", want, got)
		}
	}
	if _, err := img.RawConfigFile(); err != nil { // checked against its digest by ggcr
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// TestTrackerReplicaKilledMidRollout: three tracker replicas, six agents
// sharding a five-layer image's digests over them; the replica owning
// the most layers is killed as soon as the first agent holds the image,
// while the others of the first wave still download, then a second wave
// pulls. Every agent gets the right bytes, and the origin sends about one
// copy of the image: each replica's seeder fetched only the digests it
// owned, and the killed replica's digests went to the next replica, whose
// seeder fetched them once more at most.
func TestTrackerReplicaKilledMidRollout(t *testing.T) {
	t.Parallel()
	const repo = "replicas/app"
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 5, LayerSize: 512 << 10, Seed: 1717})
	origin := startCountingOrigin(t, img, repo+":v1")
	c := startReplicaCluster(t, 3, origin.url)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}

	const agents = 6
	nodes := make([]*node, agents)
	views := make([]*tracker.Replicas, agents)
	addrs := make([]string, agents)
	for i := range nodes {
		nodes[i], views[i] = c.agent(fmt.Sprintf("agent%d", i), origin.url)
		hs := httptest.NewServer(nodes[i].agent.Handler())
		t.Cleanup(hs.Close)
		addrs[i] = strings.TrimPrefix(hs.URL, "http://")
	}
	owned := make(map[string]int)
	for _, l := range m.Layers {
		owned[views[0].Owner(l.Digest.String())]++
	}
	victim := 0
	for i, u := range c.urls {
		if owned[u] > owned[c.urls[victim]] {
			victim = i
		}
	}
	t.Logf("layers owned: %v; killing %s", owned, c.urls[victim])

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	errs := make([]error, agents)
	var wg sync.WaitGroup
	first := make(chan struct{}, agents)
	for i := range agents / 2 {
		wg.Go(func() {
			errs[i] = pullVerified(ctx, addrs[i], repo+":v1")
			first <- struct{}{}
		})
	}
	<-first
	c.kill(victim)
	for i := agents / 2; i < agents; i++ {
		wg.Go(func() { errs[i] = pullVerified(ctx, addrs[i], repo+":v1") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("agent %d: %v", i, err)
		}
	}
	for _, l := range m.Layers {
		if got := views[agents-1].Owner(l.Digest.String()); got == c.urls[victim] {
			t.Errorf("layer %s still owned by the killed replica", l.Digest)
		}
	}
	sent := origin.sent.Load()
	t.Logf("image %d bytes in blobs; the origin sent %d (%.2f copies)", size, sent, float64(sent)/float64(size))
	if sent > 2*size {
		t.Errorf("the origin sent %.2f copies of the image, want about one (at most 2)", float64(sent)/float64(size))
	}
}

// TestSeedOverReplicas: shoal seed --wait with the three replicas' URLs,
// one of them dead: each live replica seeds the blobs it owns among the
// live ones, so the origin sends the image once, and the merged job
// lists every blob.
func TestSeedOverReplicas(t *testing.T) {
	t.Parallel()
	const repo = "replicas/seeded"
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 6, LayerSize: 64 << 10, Seed: 1818})
	origin := startCountingOrigin(t, img, repo+":v1")
	c := startReplicaCluster(t, 3, origin.url)
	c.kill(0)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	size := m.Config.Size
	want := map[digest.Digest]bool{digest.Digest(m.Config.Digest.String()): true}
	for _, l := range m.Layers {
		size += l.Size
		want[digest.Digest(l.Digest.String())] = true
	}
	tok := filepath.Join(t.TempDir(), "seed-token")
	if err := os.WriteFile(tok, []byte(replicaSeedToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := seedFlags{Tracker: c.urls, TokenFile: tok, Wait: true, Timeout: 30 * time.Second, Poll: 50 * time.Millisecond}
	set, err := f.client(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(set.names) != 2 {
		t.Fatalf("live replicas %v, want the two that answer", set.names)
	}
	var out, errw strings.Builder
	if err := f.run(t.Context(), []string{repo + ":v1"}, &out, &errw); err != nil {
		t.Fatalf("seed: %v\n%s", err, errw.String())
	}
	job, err := set.SeedJob(t.Context(), lastJobID(t, errw.String()))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range job.Blobs {
		if !want[b.Digest] {
			t.Errorf("job blob %s is not the image's", b.Digest)
		}
		delete(want, b.Digest)
	}
	if len(want) != 0 {
		t.Errorf("blobs of the image no replica seeded: %v", want)
	}
	if sent := origin.sent.Load(); sent != size {
		t.Errorf("the origin sent %d bytes for an image of %d (%.2f copies), want one copy", sent, size, float64(sent)/float64(size))
	}
}

// lastJobID is the ID in shoal seed's "seed job ID: ..." line.
func lastJobID(t *testing.T, stderr string) string {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		if rest, ok := strings.CutPrefix(line, "seed job "); ok {
			id, _, _ := strings.Cut(rest, ":")
			return id
		}
	}
	t.Fatalf("no job ID in %q", stderr)
	return ""
}
