package store_test

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/store/storetest"
)

// changeLog records what OnChange reports.
type changeLog struct {
	mu  sync.Mutex
	got []string
}

func (l *changeLog) add(d digest.Digest, c store.Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, c.String()+" "+d.Encoded()[:8])
}

func (l *changeLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.got
	l.got = nil
	return out
}

func short(c store.Change, d digest.Digest) string { return c.String() + " " + d.Encoded()[:8] }

// OnChange hears of every commit, eviction, deletion and failed ingest,
// after the store's state already says so.
func TestOnChange(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg := config(t.TempDir())
	cfg.Capacity, cfg.HighWatermark, cfg.LowWatermark = 1000, 0.9, 0.7
	d := newDisk(t, cfg)
	var log changeLog
	d.OnChange(func(dg digest.Digest, c store.Change) {
		// The state is settled before the news.
		_, err := d.Stat(ctx, dg)
		if (c == store.Committed) != (err == nil) {
			t.Errorf("%s %s, but Stat says %v", c, dg, err)
		}
		log.add(dg, c)
	})

	r, a := fetchAll(t, d, 40, 300)
	r.Close()
	r, b := fetchAll(t, d, 41, 300)
	r.Close()
	if got, want := log.take(), []string{short(store.Committed, a), short(store.Committed, b)}; !slices.Equal(got, want) {
		t.Errorf("after two commits: %v, want %v", got, want)
	}
	// A third blob takes usage over the high watermark: a, the oldest, goes.
	r, c := fetchAll(t, d, 42, 400)
	r.Close()
	if got, want := log.take(), []string{short(store.Gone, a), short(store.Committed, c)}; !slices.Equal(got, want) {
		t.Errorf("after an eviction: %v, want %v", got, want)
	}
	if err := d.Delete(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got, want := log.take(), []string{short(store.Gone, b)}; !slices.Equal(got, want) {
		t.Errorf("after a delete: %v, want %v", got, want)
	}
	// A fill whose bytes do not match the digest is gone, never committed.
	data, dg := storetest.Blob(43, 100)
	data[0] ^= 0xff
	r, err := d.Fetch(ctx, dg, 100, storetest.SequentialFiller(data, 10))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storetest.ReadAll(r); !errors.Is(err, store.ErrDigestMismatch) {
		t.Errorf("read of a corrupt fill: %v, want a digest mismatch", err)
	}
	r.Close()
	if got, want := log.take(), []string{short(store.Gone, dg)}; !slices.Equal(got, want) {
		t.Errorf("after a corrupt fill: %v, want %v", got, want)
	}
}
