package store_test

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/store/storetest"
)

// readSequential reads r to the end in chunk-sized reads, as an HTTP handler
// streaming a blob does.
func readSequential(r store.Reader, chunk int) error {
	return readUpTo(r, r.Size()+1, chunk)
}

// readUpTo reads [0, end) of r (stopping at EOF) in chunk-sized reads.
func readUpTo(r store.Reader, end int64, chunk int) error {
	buf := make([]byte, chunk)
	for off := int64(0); off < end; {
		n, err := r.ReadAt(buf[:min(int64(chunk), end-off)], off)
		off += int64(n)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func benchFetch(b *testing.B, d *store.Disk, data []byte, dg digest.Digest, readers int, stream *time.Duration) {
	ctx := b.Context()
	r, err := d.Fetch(ctx, dg, int64(len(data)), storetest.SequentialFiller(data, 1<<20))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for range readers {
		o, err := d.Open(ctx, dg)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer o.Close()
			errs <- readSequential(o, 1<<20)
		})
	}
	start := time.Now()
	// All but the last byte stream at the fill's pace; the last one waits
	// for verification and the commit's fsync.
	if err := readUpTo(r, r.Size()-1, 1<<20); err != nil {
		b.Fatal(err)
	}
	*stream += time.Since(start)
	if err := readSequential(r, 1<<20); err != nil {
		b.Fatal(err)
	}
	r.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if err := d.Delete(ctx, dg); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
}

// reportStream reports how fast a reader got all but the last byte: the
// streaming rate, which the final fsync does not bound.
func reportStream(b *testing.B, size int, stream time.Duration) {
	if stream > 0 {
		b.ReportMetric(float64(size)*float64(b.N)/stream.Seconds()/1e6, "stream-MB/s")
	}
}

// BenchmarkSequentialFillRead: a 256 MiB blob filled in order while one
// reader streams it, including verification, fsync and commit.
func BenchmarkSequentialFillRead(b *testing.B) {
	data, dg := storetest.Blob(90, 256<<20)
	d := newDisk(b, config(b.TempDir()))
	b.SetBytes(int64(len(data)))
	var stream time.Duration
	for b.Loop() {
		benchFetch(b, d, data, dg, 0, &stream)
	}
	reportStream(b, len(data), stream)
}

// BenchmarkInflightReaders: eight more readers follow one 64 MiB ingest;
// bytes are counted per reader delivered.
func BenchmarkInflightReaders(b *testing.B) {
	const readers = 8
	data, dg := storetest.Blob(91, 64<<20)
	d := newDisk(b, config(b.TempDir()))
	b.SetBytes(int64(len(data)) * (readers + 1))
	var stream time.Duration
	for b.Loop() {
		benchFetch(b, d, data, dg, readers, &stream)
	}
	reportStream(b, len(data), stream)
}

// BenchmarkReadAtCommitted: 1 MiB preads from a committed blob.
func BenchmarkReadAtCommitted(b *testing.B) {
	const size, chunk = 64 << 20, 1 << 20
	data, dg := storetest.Blob(92, size)
	d := newDisk(b, config(b.TempDir()))
	r, err := d.Fetch(b.Context(), dg, size, storetest.SequentialFiller(data, chunk))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	if err := readSequential(r, chunk); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	var off int64
	for b.Loop() {
		if _, err := r.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
		off = (off + chunk) % size
	}
}
