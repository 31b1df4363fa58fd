package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent/agenttest"
	"github.com/shoal-dev/shoal/tracker"
)

// switchLookup resolves nothing (a lookup error, then no address) until
// it is told the address, as the cluster DNS does for a headless Service
// before its first pod is ready.
type switchLookup struct {
	mu    sync.Mutex
	addrs []string
	calls int
}

func (l *switchLookup) lookup(_ context.Context, host string) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	switch {
	case l.addrs != nil:
		return l.addrs, nil
	case l.calls%2 == 1:
		return nil, errors.New("lookup " + host + ": no such host")
	}
	return nil, nil
}

func (l *switchLookup) resolve(addrs ...string) {
	l.mu.Lock()
	l.addrs = addrs
	l.mu.Unlock()
}

// An agent whose --tracker is a dns+ name that resolves to nothing yet
// starts anyway, serves a pull from the upstream, says why its tracker
// does not answer, and takes the replica once the name resolves: it
// announces there and the next image comes through the swarm.
func TestAgentStartsBeforeTrackerResolves(t *testing.T) {
	t.Parallel()
	img1 := agenttest.Image(t, agenttest.ImageOptions{Layers: 2, LayerSize: 256 << 10, Seed: 2101})
	img2 := agenttest.Image(t, agenttest.ImageOptions{Layers: 2, LayerSize: 256 << 10, Seed: 2102})
	origin := startCountingOrigin(t, img1, "dns/first:v1")
	ref, err := name.ParseReference(strings.TrimPrefix(origin.url, "http://")+"/dns/second:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img2); err != nil {
		t.Fatal(err)
	}
	c := startReplicaCluster(t, 1, origin.url)
	_, port, _ := strings.Cut(strings.TrimPrefix(c.urls[0], "http://"), ":")
	trackerURL := "dns+http://trackers.shoal.test:" + port

	cfg := defaultNodeConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "agent")
	cfg.Upstream.Default = origin.url
	if err := cfg.loadIdentity(); err != nil {
		t.Fatal(err)
	}
	l := &switchLookup{}
	tr, err := clusterTrackerWith(t.Context(), l.lookup, []string{trackerURL}, testToken, slog.New(slog.DiscardHandler), tracker.WithKey(cfg.Identity))
	if err != nil {
		t.Fatalf("agent's tracker before the name resolves: %v", err)
	}
	reps := tr.(*tracker.Replicas)
	if err := reps.Ping(t.Context()); !errors.Is(err, tracker.ErrUnavailable) || !strings.Contains(err.Error(), "no such host") {
		t.Errorf("ping before the name resolves: %v, want unavailable and why", err)
	}
	n, err := newNode(cfg, reps, false, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	hs := httptest.NewServer(n.agent.Handler())
	t.Cleanup(hs.Close)
	addr := strings.TrimPrefix(hs.URL, "http://")

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := pullVerified(ctx, addr, "dns/first:v1"); err != nil {
		t.Fatalf("pull before the tracker resolves: %v", err)
	}
	if st := n.agent.Stats(); st.Origin == 0 || st.Seeder+st.Peer != 0 {
		t.Errorf("before the tracker resolves: %+v, want every byte from the upstream", st)
	}

	l.resolve("127.0.0.1")
	self := n.host.ID().String()
	for {
		if ok, _ := reps.Listed(ctx, self); ok {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the replica never listed the agent once its name resolved (names %v)", reps.Names())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if got := reps.Names(); len(got) != 1 || got[0] != "127.0.0.1:"+port {
		t.Errorf("replicas %v, want 127.0.0.1:%s", got, port)
	}
	if err := pullVerified(ctx, addr, "dns/second:v1"); err != nil {
		t.Fatalf("pull once the tracker resolves: %v", err)
	}
	if st := n.agent.Stats(); st.Seeder+st.Peer == 0 {
		t.Errorf("after the tracker resolved: %+v, want bytes from the seeder", st)
	}
}

// shoal seed waits for a dns+ name to resolve, a bounded time, then fails
// with one line naming the wait and why.
func TestSeedWaitsForTrackerName(t *testing.T) {
	t.Parallel()
	var slept atomic.Int64
	l := &switchLookup{}
	sl := seedLookup{Lookup: l.lookup, For: 10 * time.Second, Every: 2 * time.Second, Sleep: func(_ context.Context, d time.Duration) error {
		if slept.Add(int64(d)) >= int64(4*time.Second) {
			l.resolve("10.0.0.7")
		}
		return nil
	}}
	set, err := newSeedSetWith(t.Context(), sl, []string{"dns+https://trackers.shoal:7070"}, "tok")
	if err != nil {
		t.Fatal(err)
	}
	if len(set.names) != 1 || set.names[0] != "10.0.0.7:7070" {
		t.Errorf("replicas %v, want the address found", set.names)
	}
	if got := time.Duration(slept.Load()); got != 4*time.Second {
		t.Errorf("waited %v, want 4s (two retries)", got)
	}

	slept.Store(0)
	never := &switchLookup{}
	sl.Lookup = never.lookup
	sl.Sleep = func(_ context.Context, d time.Duration) error { slept.Add(int64(d)); return nil }
	_, err = newSeedSetWith(t.Context(), sl, []string{"dns+https://trackers.shoal:7070"}, "tok")
	if err == nil {
		t.Fatal("seed with a name that never resolves succeeded")
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "after 10s") || !strings.Contains(msg, "trackers.shoal") {
		t.Errorf("error %q, want one line naming the name and the wait", msg)
	}
	if got := time.Duration(slept.Load()); got != 10*time.Second {
		t.Errorf("waited %v before failing, want 10s", got)
	}

	// A malformed URL fails at once, without waiting.
	slept.Store(0)
	if _, err := newSeedSetWith(t.Context(), sl, []string{"dns+https://:7070"}, "tok"); err == nil || slept.Load() != 0 {
		t.Errorf("malformed dns+ URL: %v after %v, want an error at once", err, time.Duration(slept.Load()))
	}
	// Cancelled while waiting: the context's error.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	sl.Sleep = sleepCtx
	if _, err := newSeedSetWith(ctx, sl, []string{"dns+https://trackers.shoal:7070"}, "tok"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
