package storetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
)

func testFetchAndRead(t *testing.T, s Store) {
	ctx := t.Context()
	data, dg := Blob(1, 1<<20+17)
	r, err := s.Fetch(ctx, dg, int64(len(data)), SequentialFiller(data, 32<<10))
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	if r.Size() != int64(len(data)) {
		t.Fatalf("Size = %d, want %d", r.Size(), len(data))
	}
	mustRead(t, r, data)

	// Reading across the end returns what there is and io.EOF.
	buf := make([]byte, 100)
	n, err := r.ReadAt(buf, int64(len(data))-10)
	if n != 10 || err != io.EOF || !bytes.Equal(buf[:n], data[len(data)-10:]) {
		t.Fatalf("ReadAt across end = %d, %v", n, err)
	}
	if n, err := r.ReadAt(buf, int64(len(data))); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at end = %d, %v", n, err)
	}
	if _, err := r.ReadAt(buf, -1); err == nil {
		t.Fatal("ReadAt at negative offset succeeded")
	}

	info, err := s.Stat(ctx, dg)
	if err != nil || info.Size != int64(len(data)) || info.Digest != dg {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	o, err := s.Open(ctx, dg)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, o)
	mustRead(t, o, data)

	// Committed: a later Fetch must not run its filler.
	r2, err := s.Fetch(ctx, dg, int64(len(data)), func(context.Context, store.Writer) error {
		t.Error("filler called for a committed blob")
		return errors.New("unexpected")
	})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r2)
	mustRead(t, r2, data)
}

func testEmptyBlob(t *testing.T, s Store) {
	ctx := t.Context()
	data, dg := Blob(2, 0)
	r, err := s.Fetch(ctx, dg, 0, SequentialFiller(data, 1))
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	if n, err := r.ReadAt(make([]byte, 1), 0); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt = %d, %v; want 0, EOF", n, err)
	}
	waitCommitted(t, s, dg)
}

// waitCommitted waits until a fill the test knows succeeds is committed:
// a read that reaches the end of a blob only returns once it is.
func waitCommitted(t *testing.T, s Store, dg digest.Digest) {
	t.Helper()
	ctx := t.Context()
	r, err := s.Open(ctx, dg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.ReadAt(make([]byte, 1), max(r.Size()-1, 0)); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, dg); err != nil {
		t.Fatalf("Stat after a successful fill: %v", err)
	}
}

func testDedup(t *testing.T, s Store) {
	ctx := t.Context()
	data, dg := Blob(3, 512<<10)
	var calls atomic.Int32
	gate := make(chan struct{})
	fill := func(ctx context.Context, w store.Writer) error {
		calls.Add(1)
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		return SequentialFiller(data, 16<<10)(ctx, w)
	}
	const n = 20
	readers := make([]store.Reader, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { readers[i], errs[i] = s.Fetch(ctx, dg, int64(len(data)), fill) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Fetch %d: %v", i, errs[i])
		}
		closeReader(t, readers[i])
	}
	close(gate)
	got := make([][]byte, n)
	for i := range n {
		wg.Go(func() { got[i], errs[i] = ReadAll(readers[i]) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !bytes.Equal(got[i], data) {
			t.Fatalf("reader %d: %v (equal=%v)", i, errs[i], bytes.Equal(got[i], data))
		}
	}
	if c := calls.Load(); c != 1 {
		t.Fatalf("filler ran %d times for %d concurrent Fetches, want 1", c, n)
	}
}

func testStreaming(t *testing.T, s Store) {
	ctx := t.Context()
	data, dg := Blob(4, 256<<10)
	size := int64(len(data))
	half := size / 2
	wroteHalf, wroteAll := make(chan struct{}), make(chan struct{})
	next, release := make(chan struct{}), make(chan struct{})
	wait := func(ctx context.Context, c chan struct{}) error {
		select {
		case <-c:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fill := func(ctx context.Context, w store.Writer) error {
		if _, err := w.WriteAt(data[:half], 0); err != nil {
			return err
		}
		close(wroteHalf)
		if err := wait(ctx, next); err != nil {
			return err
		}
		if _, err := w.WriteAt(data[half:], half); err != nil {
			return err
		}
		close(wroteAll)
		return wait(ctx, release)
	}
	r, err := s.Fetch(ctx, dg, size, fill)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	defer close(release) // unblocks the filler if the test fails early
	<-wroteHalf
	buf := make([]byte, half)
	if n, err := r.ReadAt(buf, 0); err != nil || n != int(half) || !bytes.Equal(buf, data[:half]) {
		t.Fatalf("early read while the filler is blocked: %d, %v", n, err)
	}
	close(next)
	<-wroteAll
	// Every byte is written but not verified: all but the last can be read...
	buf = make([]byte, size-1)
	if n, err := r.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data[:size-1]) {
		t.Fatalf("read of all but the last byte: %d, %v", n, err)
	}
	// ...the last one must wait for verification. The deadline only bounds
	// how long the test waits; a correct store never returns the byte here.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	o, err := s.Open(short, dg)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, o)
	last := make([]byte, 1)
	if n, err := o.ReadAt(last, size-1); n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("last byte before verification: n=%d err=%v, want DeadlineExceeded", n, err)
	}
	whole := make([]byte, size)
	if _, err := o.ReadAt(whole, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("whole blob before verification: %v, want DeadlineExceeded", err)
	}
	release <- struct{}{}
	if n, err := r.ReadAt(last, size-1); n != 1 || err != nil || last[0] != data[size-1] {
		t.Fatalf("last byte after verification: %d, %v", n, err)
	}
}
