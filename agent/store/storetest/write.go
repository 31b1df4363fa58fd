package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/shoal-dev/shoal/agent/store"
)

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
