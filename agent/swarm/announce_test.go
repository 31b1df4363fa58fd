package swarm

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"

	"github.com/shoal-dev/shoal/tracker"
)

// downTracker fails its first fail announces, as a tracker that does not
// answer yet, and takes the rest.
type downTracker struct {
	fakeTracker
	fail int

	calls sync.Mutex
	n     int
}

func (d *downTracker) Announce(ctx context.Context, a tracker.Announce) (time.Duration, error) {
	d.calls.Lock()
	d.n++
	n := d.n
	d.calls.Unlock()
	if n <= d.fail {
		return 0, tracker.ErrUnavailable
	}
	return d.fakeTracker.Announce(ctx, a)
}

func (d *downTracker) count() int {
	d.calls.Lock()
	defer d.calls.Unlock()
	return d.n
}

// levels records how many records a logger took at each level.
type levels struct {
	mu sync.Mutex
	n  map[slog.Level]int
}

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.n[r.Level]++
	l.mu.Unlock()
	return nil
}
func (l *levels) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levels) WithGroup(string) slog.Handler      { return l }

func (l *levels) of(lv slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[lv]
}

// TestAnnounceFailuresLoggedOnce: while the tracker does not answer, the
// announce loop retries every second and warns once, not at every retry;
// when an announce goes through again it says so once.
func TestAnnounceFailuresLoggedOnce(t *testing.T) {
	t.Parallel()
	clk := clock.NewMock()
	tr := &downTracker{fail: 8}
	log := &levels{n: map[slog.Level]int{}}
	s, err := New(DefaultConfig(), tr, &scripted{clk: clk}, newMemStore(), randomPeer(t, false), WithClock(clk), WithLogger(slog.New(log)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for tr.count() < tr.fail+2 && time.Now().Before(deadline) {
		clk.Add(time.Second)
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if n := tr.count(); n < tr.fail+2 {
		t.Fatalf("%d announces, want at least %d", n, tr.fail+2)
	}
	if w, i, d := log.of(slog.LevelWarn), log.of(slog.LevelInfo), log.of(slog.LevelDebug); w != 1 || i != 1 || d != tr.fail-1 {
		t.Errorf("logged %d warnings, %d infos, %d debug records for %d failed announces then success; want 1, 1, %d", w, i, d, tr.fail, tr.fail-1)
	}
}
