package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/store/storetest"
)

// rangeFiller writes data[off:end] only, then ends the fill as partial.
func rangeFiller(data []byte, off, end int64) store.Filler {
	return func(_ context.Context, w store.Writer) error {
		if _, err := w.WriteAt(data[off:end], off); err != nil {
			return err
		}
		return store.ErrPartial
	}
}

// A ranged read fetches only its range, gets the blob's last byte without
// waiting for the whole blob, and leaves the partial blob for a later Fetch
// to complete, which still checks the whole digest.
func TestFetchRangeStaysPartial(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDisk(t, config(t.TempDir()))
	const n = 10000
	data, dg := storetest.Blob(50, n)

	footer := make([]byte, 100)
	r, err := d.FetchRange(ctx, dg, n, rangeFiller(data, n-100, n))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAt(footer, n-100); err != nil {
		t.Fatalf("ranged read of the footer: %v", err)
	}
	if !bytes.Equal(footer, data[n-100:]) {
		t.Error("the footer's bytes are wrong")
	}
	r.Close()
	if _, err := d.Stat(ctx, dg); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a partial blob is committed: %v", err)
	}

	// A whole read completes it, fetching only what is missing.
	var missing []store.Range
	r, err = d.Fetch(ctx, dg, n, func(ctx context.Context, w store.Writer) error {
		missing = w.Missing()
		return storetest.SequentialFiller(data, 1000)(ctx, w)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := storetest.ReadAll(r); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("whole read after the ranged one: %v", err)
	}
	if len(missing) != 1 || missing[0] != (store.Range{Off: 0, Len: n - 100}) {
		t.Errorf("the whole fetch was missing %v, want only the bytes before the footer", missing)
	}
	if _, err := d.Stat(ctx, dg); err != nil {
		t.Errorf("not committed after the whole read: %v", err)
	}
}

// A whole Fetch that joins a running ranged fill takes over when that one
// ends: its reader gets the whole blob, with no error in between.
func TestFetchJoinsRangedFill(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDisk(t, config(t.TempDir()))
	const n = 8000
	data, dg := storetest.Blob(51, n)
	release := make(chan struct{})
	ranged := func(ctx context.Context, w store.Writer) error {
		<-release
		return rangeFiller(data, 0, 1000)(ctx, w)
	}
	rr, err := d.FetchRange(ctx, dg, n, ranged)
	if err != nil {
		t.Fatal(err)
	}
	defer rr.Close()
	took := false
	whole, err := d.Fetch(ctx, dg, n, func(ctx context.Context, w store.Writer) error {
		took = true
		return storetest.SequentialFiller(data, 1000)(ctx, w)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	close(release)
	if got, err := storetest.ReadAll(whole); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("whole read: %v", err)
	}
	if !took {
		t.Error("the whole Fetch's filler never ran")
	}
}

// The last byte of a blob that a plain (unchecked) fill wrote waits for the
// digest even for a ranged reader; one that a ranged fill wrote does not,
// nor does it for a reader that vouches for what it reads (OpenWritten, the
// swarm serving a piece it verified).
func TestLastByteWaitsUnlessChecked(t *testing.T) {
	t.Parallel()
	d := newDisk(t, config(t.TempDir()))
	const n = 5000
	for _, tc := range []struct {
		name    string
		waits   bool
		partial bool
		vouched bool
	}{
		{"plain fill", true, false, false},
		{"ranged fill", false, true, false},
		{"plain fill, read written", false, false, true},
	} {
		data, dg := storetest.Blob(uint64(len(tc.name)), n)
		wrote, release := make(chan struct{}), make(chan struct{})
		fill := func(_ context.Context, w store.Writer) error {
			if _, err := w.WriteAt(data, 0); err != nil {
				return err
			}
			close(wrote)
			<-release // the fill has not returned: nothing is verified
			if tc.partial {
				return store.ErrPartial
			}
			return nil
		}
		rctx, cancel := context.WithCancel(t.Context())
		var r store.Reader
		var err error
		if tc.partial {
			r, err = d.FetchRange(rctx, dg, n, fill)
		} else {
			r, err = d.Fetch(rctx, dg, n, fill)
		}
		if err != nil {
			t.Fatal(err)
		}
		<-wrote
		if tc.vouched {
			fetched := r
			if r, err = d.OpenWritten(rctx, dg); err != nil {
				t.Fatal(err)
			}
			defer fetched.Close()
		}
		cancel() // a read that has to wait returns the context's error
		last := make([]byte, 1)
		_, err = r.ReadAt(last, n-1)
		if waits := errors.Is(err, context.Canceled); waits != tc.waits {
			t.Errorf("%s: the last byte waited %v (err %v), want %v", tc.name, waits, err, tc.waits)
		}
		close(release)
		r.Close()
	}
}

// A second ranged read that joins a running ranged fill gets its own range
// filled after it, not an error.
func TestRangedFillsQueue(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDisk(t, config(t.TempDir()))
	const n = 8000
	data, dg := storetest.Blob(52, n)
	release := make(chan struct{})
	first, err := d.FetchRange(ctx, dg, n, func(ctx context.Context, w store.Writer) error {
		<-release
		return rangeFiller(data, n-500, n)(ctx, w)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := d.FetchRange(ctx, dg, n, rangeFiller(data, 1000, 2000))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	close(release)
	for _, c := range []struct {
		r        store.Reader
		off, end int64
	}{{first, n - 500, n}, {second, 1000, 2000}} {
		got := make([]byte, c.end-c.off)
		if _, err := c.r.ReadAt(got, c.off); err != nil || !bytes.Equal(got, data[c.off:c.end]) {
			t.Errorf("range [%d, %d): %v", c.off, c.end, err)
		}
	}
}
