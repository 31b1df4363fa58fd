package tracker_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// logLines is a slog handler that keeps the records at or above a level.
type logLines struct {
	mu    sync.Mutex
	level slog.Level
	msgs  []string
}

func (l *logLines) Enabled(_ context.Context, lv slog.Level) bool { return lv >= l.level }
func (l *logLines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logLines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logLines) WithGroup(string) slog.Handler      { return l }

func (l *logLines) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

// A set made before its DNS name resolves (a lookup error, then no
// address) knows no replica: every request fails with ErrUnavailable, none
// panics, and the name is asked again every 5 s, quietly, until it
// resolves; then the replicas are used at once and one line says so.
func TestReplicasStartBeforeAnyResolves(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := trackertest.NewClock(time.Unix(1_700_000_000, 0))
	var mu sync.Mutex
	var found []tracker.Endpoint
	fail := errors.New("lookup trackers.shoal: no such host")
	lookups := 0
	refresh := func(context.Context) ([]tracker.Endpoint, error) {
		mu.Lock()
		defer mu.Unlock()
		lookups++
		if found == nil {
			return nil, fail
		}
		return found, nil
	}
	logs := &logLines{level: slog.LevelInfo}
	if _, err := tracker.NewReplicas(tracker.DefaultReplicaConfig(), nil); err == nil {
		t.Fatal("a set of no replica and no refresh was made")
	}
	r, err := tracker.NewReplicas(tracker.DefaultReplicaConfig(), nil, tracker.WithReplicaClock(clock),
		tracker.WithReplicaLogger(slog.New(logs)), tracker.WithRefresh(refresh, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	self := trackertest.ID("agent")
	a := tracker.Announce{Peer: tracker.Peer{ID: self, Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}}, Blobs: blobStates(digests(20))}
	unavailable := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, tracker.ErrUnavailable) {
			t.Errorf("%s with no replica known: %v, want ErrUnavailable", what, err)
		}
	}
	d := digests(1)[0]
	for range 3 { // announces a second apart, as a failing swarm makes them
		_, err := r.Announce(ctx, a)
		unavailable("announce", err)
		clock.Advance(time.Second)
	}
	_, err = r.MetaInfo(ctx, tracker.Source{Repo: "app", Digest: d}, -1)
	unavailable("metainfo", err)
	_, err = r.Peers(ctx, d, self)
	unavailable("peers", err)
	_, err = r.Listed(ctx, self)
	unavailable("listed", err)
	if got := r.Owner(d.String()); got != "" {
		t.Errorf("owner %q with no replica known", got)
	}
	if v := r.View(ctx, []string{d.String()}); len(v) != 0 {
		t.Errorf("view %+v with no replica known", v)
	}
	if lookups != 0 {
		t.Errorf("%d lookups within the first 5 s", lookups)
	}
	clock.Advance(2 * time.Second) // 5 s after the start
	_, err = r.Announce(ctx, a)
	unavailable("announce", err)
	if lookups != 1 {
		t.Errorf("%d lookups after 5 s, want 1", lookups)
	}
	if err := r.Ping(ctx); !errors.Is(err, tracker.ErrUnavailable) || !strings.Contains(err.Error(), "no such host") {
		t.Errorf("ping: %v, want ErrUnavailable with why", err)
	}

	// The name resolves: the next due announce takes the replicas.
	ms := []*member{newMember("10.0.0.1:7070"), newMember("10.0.0.2:7070")}
	mu.Lock()
	for _, m := range ms {
		found = append(found, tracker.Endpoint{Name: m.name, Member: m})
	}
	mu.Unlock()
	clock.Advance(5 * time.Second)
	if _, err := r.Announce(ctx, a); err != nil {
		t.Fatalf("announce once the name resolves: %v", err)
	}
	if got := r.Names(); len(got) != 2 {
		t.Errorf("names %v, want the two found", got)
	}
	for _, m := range ms {
		if _, told := m.told(self); !told && r.Owner(self) == m.name {
			t.Errorf("%s owns the peer ID and was not told", m.name)
		}
	}
	if err := r.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}
	// Back to the 30 s interval.
	clock.Advance(10 * time.Second)
	r.Announce(ctx, a)
	if lookups != 2 {
		t.Errorf("%d more lookups 10 s after the replicas were found, want none", lookups-2)
	}
	got := logs.lines()
	if len(got) != 1 || !strings.Contains(got[0], "tracker replicas found") {
		t.Errorf("log lines %q, want only that the replicas were found", got)
	}
}

// View: each replica's probe, whether it is passed over and since when,
// and how many of the keys it owns now; a silence ends when it answers.
func TestReplicasView(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Unix(1_700_000_000, 0)
	clock := trackertest.NewClock(start)
	r, ms := replicaSet(t, 3, clock)
	ds := digests(90)
	keys := make([]string, len(ds))
	for i, d := range ds {
		keys[i] = d.String()
	}
	a := tracker.Announce{Peer: tracker.Peer{ID: trackertest.ID("agent"), Addrs: []string{"/ip4/10.0.0.1/tcp/4001"}}, Blobs: blobStates(ds)}
	view := func() map[string]tracker.ReplicaView {
		t.Helper()
		out := map[string]tracker.ReplicaView{}
		total := 0
		for _, v := range r.View(ctx, keys) {
			out[v.Name] = v
			total += v.Owned
		}
		if total != len(keys) {
			t.Errorf("owned %d keys in all, want %d", total, len(keys))
		}
		return out
	}
	if _, err := r.Announce(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		v := view()[m.name]
		if v.Err != nil || v.PassedOver || !v.DownSince.IsZero() || v.Owned == 0 {
			t.Errorf("%s: %+v, want answering and owning some", m.name, v)
		}
	}
	dead := ms[2]
	dead.set(func(m *member) { m.dead = true })
	clock.Advance(time.Second)
	downAt := clock.Now()
	if _, err := r.Announce(ctx, a); err != nil {
		t.Fatal(err)
	}
	v := view()[dead.name]
	if v.Err == nil || !v.PassedOver || !v.DownSince.Equal(downAt) || v.Owned != 0 {
		t.Errorf("silent replica: %+v, want not answering, passed over since %v, owning none", v, downAt)
	}
	// Asked again after RetryAfter, still silent: the silence began then.
	clock.Advance(tracker.DefaultReplicaConfig().RetryAfter)
	r.Announce(ctx, a)
	if v := view()[dead.name]; !v.PassedOver || !v.DownSince.Equal(downAt) {
		t.Errorf("still silent: %+v, want passed over since %v", v, downAt)
	}
	dead.set(func(m *member) { m.dead = false })
	clock.Advance(tracker.DefaultReplicaConfig().RetryAfter)
	if _, err := r.Announce(ctx, a); err != nil {
		t.Fatal(err)
	}
	if v := view()[dead.name]; v.Err != nil || v.PassedOver || !v.DownSince.IsZero() || v.Owned == 0 {
		t.Errorf("answering again: %+v", v)
	}
}
