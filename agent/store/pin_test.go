package store_test

import (
	"sync"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/store/storetest"
)

type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeNow) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

// TestPinKeepsBlobFromEviction: a held blob outlives eviction pressure
// while its deadline runs, even as the least recently used; once the
// deadline passes on the store's clock it is evicted like any other. A
// blob pinned before it arrives is held from its commit.
func TestPinKeepsBlobFromEviction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	clock := &fakeNow{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg := config(t.TempDir())
	cfg.Capacity, cfg.HighWatermark, cfg.LowWatermark = 1000, 0.9, 0.5
	d := newDisk(t, cfg, store.WithClock(clock.now))

	_, held := storetest.Blob(40, 300)
	d.Pin(held, clock.now().Add(time.Hour)) // before it arrives
	r, got := fetchAll(t, d, 40, 300)
	r.Close()
	if got != held {
		t.Fatalf("fetched %s, want %s", got, held)
	}
	if until, ok := d.PinnedUntil(held); !ok || !until.Equal(clock.now().Add(time.Hour)) {
		t.Fatalf("PinnedUntil = %v, %v", until, ok)
	}
	r, other := fetchAll(t, d, 41, 300)
	r.Close()
	r, _ = fetchAll(t, d, 42, 300) // 900: at the watermark
	r.Close()
	r, _ = fetchAll(t, d, 43, 300) // 1200 > 900: evict down to 500
	r.Close()
	if _, err := d.Stat(ctx, held); err != nil {
		t.Fatalf("held blob evicted: %v", err)
	}
	if _, err := d.Stat(ctx, other); err == nil {
		t.Fatal("an unheld older blob survived")
	}

	clock.advance(time.Hour)
	if _, ok := d.PinnedUntil(held); ok {
		t.Fatal("hold still reported after its deadline")
	}
	for i := range 3 {
		r, _ = fetchAll(t, d, uint64(50+i), 300)
		r.Close()
	}
	if _, err := d.Stat(ctx, held); err == nil {
		t.Fatal("blob still held after its deadline passed")
	}
}
