package store_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/store/storetest"
)

// FuzzWriteOrder: any split of a blob into pieces, written in any order by
// several goroutines, with duplicate and overlapping pieces, ends in the
// right bytes and a verified commit.
func FuzzWriteOrder(f *testing.F) {
	f.Add(uint64(1), uint16(1000), uint8(4), uint16(100), false)
	f.Add(uint64(2), uint16(0), uint8(1), uint16(1), true)
	f.Add(uint64(3), uint16(1), uint8(3), uint16(7), true)
	f.Add(uint64(4), uint16(65535), uint8(8), uint16(4096), true)
	f.Add(uint64(5), uint16(4097), uint8(2), uint16(1), false)
	f.Fuzz(func(t *testing.T, seed uint64, size uint16, workers uint8, maxPiece uint16, dupes bool) {
		data, dg := storetest.Blob(seed, int(size))
		rng := rand.New(rand.NewPCG(seed, uint64(size)))
		var pieces []store.Range
		for off := int64(0); off < int64(size); {
			n := min(1+rng.Int64N(int64(maxPiece)%8192+1), int64(size)-off)
			pieces = append(pieces, store.Range{Off: off, Len: n})
			off += n
		}
		if dupes && size > 0 {
			for range len(pieces)/2 + 1 {
				off := rng.Int64N(int64(size))
				pieces = append(pieces, store.Range{Off: off, Len: 1 + rng.Int64N(int64(size)-off)})
			}
		}
		rng.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })

		cfg := config(t.TempDir())
		cfg.JournalSyncBytes = 1 + int64(seed%8192) // exercise journal flushes too
		d := newDisk(t, cfg)
		fill := func(ctx context.Context, w store.Writer) error {
			work := make(chan store.Range)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var firstErr error
			for range 1 + int(workers)%6 {
				wg.Go(func() {
					for p := range work {
						if _, err := w.WriteAt(data[p.Off:p.Off+p.Len], p.Off); err != nil {
							mu.Lock()
							firstErr = err
							mu.Unlock()
						}
					}
				})
			}
			for _, p := range pieces {
				work <- p
			}
			close(work)
			wg.Wait()
			return firstErr
		}
		r, err := d.Fetch(t.Context(), dg, int64(size), fill)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, err := storetest.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read: %v (equal=%v)", err, bytes.Equal(got, data))
		}
		if _, err := r.ReadAt(make([]byte, 1), int64(size)); err == nil {
			t.Fatal("read at the end returned no EOF")
		}
		if info, err := d.Stat(t.Context(), dg); err != nil || info.Size != int64(size) {
			t.Fatalf("Stat = %+v, %v", info, err)
		}
	})
}
