package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
)

// Store is what the contract covers.
type Store interface {
	Stat(ctx context.Context, dgst digest.Digest) (store.Info, error)
	Open(ctx context.Context, dgst digest.Digest) (store.Reader, error)
	Fetch(ctx context.Context, dgst digest.Digest, size int64, fill store.Filler) (store.Reader, error)
	Delete(ctx context.Context, dgst digest.Digest) error
}

// Blob returns n deterministic pseudo-random bytes and their digest.
func Blob(seed uint64, n int) ([]byte, digest.Digest) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b, digest.FromBytes(b)
}

// SequentialFiller writes data in chunks of chunk bytes, in order, skipping
// what w already has (a resumed ingest).
func SequentialFiller(data []byte, chunk int) store.Filler {
	return func(ctx context.Context, w store.Writer) error {
		for _, r := range w.Missing() {
			for off := r.Off; off < r.Off+r.Len; off += int64(chunk) {
				if err := ctx.Err(); err != nil {
					return err
				}
				end := min(off+int64(chunk), r.Off+r.Len, int64(len(data)))
				if _, err := w.WriteAt(data[off:end], off); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// ReadAll reads all of r from offset 0.
func ReadAll(r store.Reader) ([]byte, error) {
	b := make([]byte, r.Size())
	n, err := r.ReadAt(b, 0)
	if err == io.EOF && n == len(b) {
		err = nil
	}
	return b[:n], err
}

// Run runs the contract suite. newStore returns a fresh, empty store and
// registers its cleanup with t.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"FetchAndRead", testFetchAndRead},
		{"EmptyBlob", testEmptyBlob},
		{"Dedup", testDedup},
		{"Streaming", testStreaming},
		{"BadDigest", testBadDigest},
		{"WrongSize", testWrongSize},
		{"OutOfOrderConcurrentWrites", testOutOfOrder},
		{"DuplicateWritesKeepFirstBytes", testDuplicateWrites},
		{"ReaderContextCancel", testReaderCancel},
		{"FillErrorThenRetry", testFillErrorRetry},
		{"NotFound", testNotFound},
		{"UnsupportedDigest", testUnsupportedDigest},
		{"Delete", testDelete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func mustRead(t *testing.T, r store.Reader, want []byte) {
	t.Helper()
	got, err := ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes that differ from the %d expected", len(got), len(want))
	}
}

func closeReader(t *testing.T, r store.Reader) {
	t.Cleanup(func() { r.Close() })
}

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

func testBadDigest(t *testing.T, s Store) {
	ctx := t.Context()
	data, _ := Blob(5, 100<<10)
	_, dg := Blob(6, 100<<10) // same size, other content
	r, err := s.Fetch(ctx, dg, int64(len(data)), SequentialFiller(data, 8<<10))
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	if _, err := ReadAll(r); !errors.Is(err, store.ErrDigestMismatch) {
		t.Fatalf("read of a blob with bad content: %v, want ErrDigestMismatch", err)
	}
	if _, err := s.Stat(ctx, dg); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat after digest mismatch: %v, want ErrNotFound", err)
	}
	if _, err := s.Open(ctx, dg); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Open after digest mismatch: %v, want ErrNotFound", err)
	}
	// The next Fetch starts over from nothing.
	good, _ := Blob(6, 100<<10)
	r2, err := s.Fetch(ctx, dg, int64(len(good)), func(ctx context.Context, w store.Writer) error {
		if m := w.Missing(); len(m) != 1 || m[0] != (store.Range{Off: 0, Len: int64(len(good))}) {
			return fmt.Errorf("after a digest mismatch Missing() = %v, want everything", m)
		}
		return SequentialFiller(good, 8<<10)(ctx, w)
	})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r2)
	mustRead(t, r2, good)
}

func testWrongSize(t *testing.T, s Store) {
	ctx := t.Context()
	data, dg := Blob(7, 64<<10)
	size := int64(len(data))

	// The filler claims success with the last byte missing.
	r, err := s.Fetch(ctx, dg, size, SequentialFiller(data[:size-1], 4<<10))
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	if _, err := ReadAll(r); !errors.Is(err, store.ErrSizeMismatch) {
		t.Fatalf("short fill: %v, want ErrSizeMismatch", err)
	}
	if _, err := s.Stat(ctx, dg); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat after short fill: %v, want ErrNotFound", err)
	}

	// Writes past the end are refused.
	var beyond error
	r, err = s.Fetch(ctx, dg, size, func(ctx context.Context, w store.Writer) error {
		if _, beyond = w.WriteAt([]byte{1, 2}, size-1); beyond == nil {
			return errors.New("write past the end accepted")
		}
		if _, err := w.WriteAt([]byte{1}, -1); err == nil {
			return errors.New("write at a negative offset accepted")
		}
		return SequentialFiller(data, 4<<10)(ctx, w)
	})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	mustRead(t, r, data)
	if !errors.Is(beyond, store.ErrSizeMismatch) {
		t.Fatalf("write past the end: %v, want ErrSizeMismatch", beyond)
	}

	// A Fetch whose size disagrees with the committed blob is refused.
	if r, err := s.Fetch(ctx, dg, size+1, SequentialFiller(data, 4<<10)); !errors.Is(err, store.ErrSizeMismatch) {
		if r != nil {
			r.Close()
		}
		t.Fatalf("Fetch with the wrong size: %v, want ErrSizeMismatch", err)
	}
	if _, err := s.Fetch(ctx, dg, -1, SequentialFiller(data, 4<<10)); err == nil {
		t.Fatal("Fetch with a negative size succeeded")
	}
}

// pieces cuts [0,size) into pieces of random sizes in random order.
func pieces(rng *rand.Rand, size int64, maxPiece int64) []store.Range {
	var ps []store.Range
	for off := int64(0); off < size; {
		n := min(1+rng.Int64N(maxPiece), size-off)
		ps = append(ps, store.Range{Off: off, Len: n})
		off += n
	}
	rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	return ps
}

func testOutOfOrder(t *testing.T, s Store) {
	ctx := t.Context()
	data, dg := Blob(8, 1<<20)
	size := int64(len(data))
	ps := pieces(rand.New(rand.NewPCG(8, 8)), size, 64<<10)
	fill := func(ctx context.Context, w store.Writer) error {
		if m := w.Missing(); len(m) != 1 || m[0].Len != size {
			return fmt.Errorf("fresh ingest: Missing() = %v", m)
		}
		work := make(chan store.Range)
		errs := make(chan error, 8)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for p := range work {
					if _, err := w.WriteAt(data[p.Off:p.Off+p.Len], p.Off); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		for _, p := range ps {
			work <- p
		}
		close(work)
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		if m := w.Missing(); len(m) != 0 {
			return fmt.Errorf("all pieces written: Missing() = %v", m)
		}
		return nil
	}
	r, err := s.Fetch(ctx, dg, size, fill)
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	mustRead(t, r, data)
}

func testDuplicateWrites(t *testing.T, s Store) {
	ctx := t.Context()
	data, dg := Blob(9, 64<<10)
	size := int64(len(data))
	r, err := s.Fetch(ctx, dg, size, func(ctx context.Context, w store.Writer) error {
		if _, err := w.WriteAt(data[:size/2], 0); err != nil {
			return err
		}
		// A second copy of a piece (a late peer) must not change bytes
		// already written, even if it is garbage.
		junk := bytes.Repeat([]byte{0xff}, int(size/2))
		if _, err := w.WriteAt(junk, 0); err != nil {
			return err
		}
		// A write straddling written and unwritten bytes fills only the gap.
		if _, err := w.WriteAt(data[size/2-100:size/2+100], size/2-100); err != nil {
			return err
		}
		return SequentialFiller(data, 4<<10)(ctx, w)
	})
	if err != nil {
		t.Fatal(err)
	}
	closeReader(t, r)
	mustRead(t, r, data)
}

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
