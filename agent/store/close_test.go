package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/store/storetest"
)

func TestClose(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDisk(t, config(t.TempDir()))
	committed, _ := fetchAll(t, d, 70, 4096)
	defer committed.Close()

	data, dg := storetest.Blob(71, 8192)
	wrote := make(chan struct{})
	r, err := d.Fetch(ctx, dg, int64(len(data)), blockedFiller(data, 100, 10, wrote))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	<-wrote
	if err := d.Delete(ctx, dg); !errors.Is(err, store.ErrInProgress) {
		t.Fatalf("Delete of a running ingest: %v, want ErrInProgress", err)
	}
	pending := make(chan error)
	go func() {
		_, err := r.ReadAt(make([]byte, 10), 1000)
		pending <- err
	}()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-pending; !errors.Is(err, store.ErrClosed) {
		t.Fatalf("pending read on Close: %v, want ErrClosed", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// A failed ingest fails every later read, even of bytes it had.
	if _, err := r.ReadAt(make([]byte, 10), 0); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("read of a closed ingest: %v, want ErrClosed", err)
	}
	// Committed readers keep working.
	if _, err := storetest.ReadAll(committed); err != nil {
		t.Fatalf("committed reader after Close: %v", err)
	}

	calls := map[string]func() error{
		"Fetch": func() error {
			_, err := d.Fetch(ctx, dg, 1, storetest.SequentialFiller(data, 1))
			return err
		},
		"Open":   func() error { _, err := d.Open(ctx, dg); return err },
		"Stat":   func() error { _, err := d.Stat(ctx, dg); return err },
		"Delete": func() error { return d.Delete(ctx, dg) },
		"Walk":   func() error { return d.Walk(ctx, func(store.Info) error { return nil }) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestFillerPanicIsAnError(t *testing.T) {
	t.Parallel()
	d := newDisk(t, config(t.TempDir()))
	data, dg := storetest.Blob(72, 100)
	r, err := d.Fetch(t.Context(), dg, 100, func(context.Context, store.Writer) error { panic("filler bug") })
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := storetest.ReadAll(r); err == nil {
		t.Fatal("read of a panicked fill succeeded")
	}
	r2, err := d.Fetch(t.Context(), dg, 100, storetest.SequentialFiller(data, 10))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if got, err := storetest.ReadAll(r2); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("retry after panic: %v", err)
	}
}

func TestWalkStopsOnError(t *testing.T) {
	t.Parallel()
	d := newDisk(t, config(t.TempDir()))
	for seed := range uint64(3) {
		r, _ := fetchAll(t, d, 80+seed, 10)
		r.Close()
	}
	stop := errors.New("stop")
	var seen []digest.Digest
	err := d.Walk(t.Context(), func(i store.Info) error {
		seen = append(seen, i.Digest)
		return stop
	})
	if !errors.Is(err, stop) || len(seen) != 1 {
		t.Fatalf("Walk = %v after %d blobs, want the callback's error after 1", err, len(seen))
	}
}
