package storetest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
)

func testReaderCancel(t *testing.T, s Store) {
	data, dg := Blob(10, 32<<10)
	release := make(chan struct{})
	fill := func(ctx context.Context, w store.Writer) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return SequentialFiller(data, 4<<10)(ctx, w)
	}
	ctx, cancel := context.WithCancel(t.Context())
	r, err := s.Fetch(ctx, dg, int64(len(data)), fill)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	done := make(chan error)
	go func() {
		_, err := r.ReadAt(make([]byte, 10), 0)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadAt after the reader's ctx ended: %v, want context.Canceled", err)
	}
	// The fill belongs to the store, not to that caller: it goes on.
	close(release)
	o, err := s.Open(t.Context(), dg)
	if err != nil {
		t.Fatalf("Open after the first caller gave up: %v", err)
	}
	closeReader(t, o)
	mustRead(t, o, data)
}

func testFillErrorRetry(t *testing.T, s Store) {
	ctx := t.Context()
	data, dg := Blob(11, 128<<10)
	size := int64(len(data))
	boom := errors.New("upstream went away")
	r, err := s.Fetch(ctx, dg, size, func(ctx context.Context, w store.Writer) error {
		if _, err := w.WriteAt(data[:size/4], 0); err != nil {
			return err
		}
		return boom
	})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	if _, err := ReadAll(r); !errors.Is(err, boom) {
		t.Fatalf("read of a failed fill: %v, want the filler's error", err)
	}
	// A failed ingest fails all reads, so nobody mistakes a prefix for the
	// blob.
	if _, err := r.ReadAt(make([]byte, 10), 0); !errors.Is(err, boom) {
		t.Fatalf("read of early bytes of a failed fill: %v, want the filler's error", err)
	}
	if _, err := s.Stat(ctx, dg); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat after failed fill: %v, want ErrNotFound", err)
	}
	var calls atomic.Int32
	r2, err := s.Fetch(ctx, dg, size, func(ctx context.Context, w store.Writer) error {
		calls.Add(1)
		return SequentialFiller(data, 8<<10)(ctx, w)
	})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r2)
	mustRead(t, r2, data)
	if calls.Load() != 1 {
		t.Fatalf("retry filler ran %d times, want 1", calls.Load())
	}
}

func testNotFound(t *testing.T, s Store) {
	ctx := t.Context()
	_, dg := Blob(12, 10)
	if _, err := s.Open(ctx, dg); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Open: %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, dg); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, dg); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete: %v, want ErrNotFound", err)
	}
}

func testUnsupportedDigest(t *testing.T, s Store) {
	ctx := t.Context()
	data := []byte("hello")
	fill := SequentialFiller(data, 1)
	for _, dg := range []digest.Digest{
		digest.SHA512.FromBytes(data),
		"sha256:nothex",
		digest.Digest("sha256:" + digest.FromBytes(data).Encoded()[:10]),
		"",
		"../../etc/passwd",
	} {
		if r, err := s.Fetch(ctx, dg, int64(len(data)), fill); err == nil {
			r.Close()
			t.Errorf("Fetch(%q) succeeded", dg)
		}
		if _, err := s.Open(ctx, dg); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("Open(%q): %v, want a digest error", dg, err)
		}
		if _, err := s.Stat(ctx, dg); err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("Stat(%q): %v, want a digest error", dg, err)
		}
	}
}

func testDelete(t *testing.T, s Store) {
	ctx := t.Context()
	data, dg := Blob(13, 20<<10)
	r, err := s.Fetch(ctx, dg, int64(len(data)), SequentialFiller(data, 4<<10))
	if err != nil {
		t.Fatal(err)
	}
	mustRead(t, r, data)
	r.Close()
	if err := s.Delete(ctx, dg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, dg); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat after Delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Open(ctx, dg); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Open after Delete: %v, want ErrNotFound", err)
	}
	var calls atomic.Int32
	r, err = s.Fetch(ctx, dg, int64(len(data)), func(ctx context.Context, w store.Writer) error {
		calls.Add(1)
		return SequentialFiller(data, 4<<10)(ctx, w)
	})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	mustRead(t, r, data)
	if calls.Load() != 1 {
		t.Fatalf("Fetch after Delete ran the filler %d times, want 1", calls.Load())
	}
}
