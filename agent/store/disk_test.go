package store_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var _ storetest.Store = (*store.Disk)(nil)

func config(dir string) store.Config {
	cfg := store.DefaultConfig()
	cfg.Dir = dir
	return cfg
}

func newDisk(t testing.TB, cfg store.Config, opts ...store.Option) *store.Disk {
	t.Helper()
	d, err := store.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return newDisk(t, config(t.TempDir()))
	})
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*store.Config)
		ok     bool
	}{
		{"default with dir", func(*store.Config) {}, true},
		{"no dir", func(c *store.Config) { c.Dir = "" }, false},
		{"negative capacity", func(c *store.Config) { c.Capacity = -1 }, false},
		{"high above 1", func(c *store.Config) { c.HighWatermark = 1.5 }, false},
		{"high zero", func(c *store.Config) { c.HighWatermark = 0 }, false},
		{"low above high", func(c *store.Config) { c.LowWatermark = 0.95 }, false},
		{"low zero", func(c *store.Config) { c.LowWatermark = 0 }, false},
		{"sync bytes zero", func(c *store.Config) { c.JournalSyncBytes = 0 }, false},
		{"capacity set", func(c *store.Config) { c.Capacity = 1 << 30 }, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := config("/nonexistent")
			tc.modify(&cfg)
			if err := cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// countingFiller writes what Missing() reports, in chunk-sized writes, and
// counts the bytes it wrote.
func countingFiller(data []byte, chunk int, wrote *atomic.Int64, missing *[]store.Range) store.Filler {
	return func(ctx context.Context, w store.Writer) error {
		*missing = w.Missing()
		for _, r := range *missing {
			for off := r.Off; off < r.Off+r.Len; off += int64(chunk) {
				end := min(off+int64(chunk), r.Off+r.Len)
				n, err := w.WriteAt(data[off:end], off)
				wrote.Add(int64(n))
				if err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// blockedFiller writes data[:head] in chunk-sized writes, signals wrote and
// then holds the ingest open until its ctx ends.
func blockedFiller(data []byte, head, chunk int, wrote chan<- struct{}) store.Filler {
	return func(ctx context.Context, w store.Writer) error {
		for off := 0; off < head; off += chunk {
			if _, err := w.WriteAt(data[off:min(off+chunk, head)], int64(off)); err != nil {
				return err
			}
		}
		close(wrote)
		<-ctx.Done()
		return ctx.Err()
	}
}

func TestResumeAfterClose(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	data, dg := storetest.Blob(20, 4<<20)
	size := int64(len(data))
	head := 3<<19 + 3 // not piece-aligned on purpose

	d1 := newDisk(t, config(dir))
	wrote := make(chan struct{})
	r1, err := d1.Fetch(ctx, dg, size, blockedFiller(data, head, 64<<10, wrote))
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	<-wrote
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r1.ReadAt(make([]byte, 1), size-1); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("pending read after Close: %v, want ErrClosed", err)
	}

	d2 := newDisk(t, config(dir))
	if got := d2.Usage(); got != size {
		t.Fatalf("Usage after restart = %d, want the partial ingest's %d", got, size)
	}
	var fetched atomic.Int64
	var missing []store.Range
	r2, err := d2.Fetch(ctx, dg, size, countingFiller(data, 64<<10, &fetched, &missing))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	got, err := storetest.ReadAll(r2)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after resume: %v", err)
	}
	want := []store.Range{{Off: int64(head), Len: size - int64(head)}}
	if !slices.Equal(missing, want) {
		t.Fatalf("resumed Missing() = %v, want %v", missing, want)
	}
	if fetched.Load()+int64(head) != size {
		t.Fatalf("fetched %d bytes after resume, want %d", fetched.Load(), size-int64(head))
	}
}

// copyDir copies a store directory as a crash would leave it: whatever the
// files hold at this instant.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if de.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCrashMidFill(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	data, dg := storetest.Blob(21, 2<<20)
	size := int64(len(data))
	const chunk = 64 << 10
	head := 1<<20 + 100

	src := t.TempDir()
	cfg := config(src)
	cfg.JournalSyncBytes = chunk // every full chunk is journaled
	d1 := newDisk(t, cfg)
	wrote := make(chan struct{})
	r1, err := d1.Fetch(ctx, dg, size, blockedFiller(data, head, chunk, wrote))
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	<-wrote
	// Journal flushes run in the background; wait until the full chunks are
	// recorded, the state a crash at this point would leave.
	for store.JournaledBytes(src, dg.Encoded()) < 1<<20 {
		time.Sleep(time.Millisecond)
	}
	crashed := t.TempDir()
	copyDir(t, src, crashed)
	// At least every full chunk is journaled; the tail may be too.
	journaled := store.JournaledBytes(crashed, dg.Encoded())
	if journaled < 1<<20 || journaled > int64(head) {
		t.Fatalf("journal of the copy records %d bytes, want between %d and %d", journaled, 1<<20, head)
	}
	corrupt := t.TempDir()
	copyDir(t, src, corrupt)
	d1.Close()

	t.Run("resumes from the journaled prefix", func(t *testing.T) {
		t.Parallel()
		// A torn record at the journal's tail is ignored.
		jf, err := os.OpenFile(filepath.Join(crashed, "ingest", dg.Encoded()+".journal"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		jf.Write([]byte{0, 0, 0, 0, 0, 1, 2})
		jf.Close()

		d := newDisk(t, config(crashed))
		var fetched atomic.Int64
		var missing []store.Range
		r, err := d.Fetch(ctx, dg, size, countingFiller(data, chunk, &fetched, &missing))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if got, err := storetest.ReadAll(r); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read after crash: %v", err)
		}
		// Unjournaled bytes are fetched again; journaled ones are kept.
		want := []store.Range{{Off: journaled, Len: size - journaled}}
		if !slices.Equal(missing, want) {
			t.Fatalf("Missing() after crash = %v, want %v", missing, want)
		}
		if fetched.Load() != size-journaled {
			t.Fatalf("fetched %d bytes after crash, want %d", fetched.Load(), size-journaled)
		}
	})

	t.Run("corrupt data restarts from zero", func(t *testing.T) {
		t.Parallel()
		p := filepath.Join(corrupt, "ingest", dg.Encoded())
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte{^data[1000]}, 1000)
		f.Close()

		d := newDisk(t, config(corrupt))
		var fetched atomic.Int64
		var missing []store.Range
		r, err := d.Fetch(ctx, dg, size, countingFiller(data, chunk, &fetched, &missing))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := storetest.ReadAll(r); !errors.Is(err, store.ErrDigestMismatch) {
			t.Fatalf("read of a corrupt resume: %v, want ErrDigestMismatch", err)
		}
		r.Close()
		fetched.Store(0)
		r, err = d.Fetch(ctx, dg, size, countingFiller(data, chunk, &fetched, &missing))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if got, err := storetest.ReadAll(r); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read after restart from zero: %v", err)
		}
		if fetched.Load() != size {
			t.Fatalf("fetched %d bytes, want all %d", fetched.Load(), size)
		}
	})
}

func fetchAll(t *testing.T, d *store.Disk, seed uint64, n int) (store.Reader, digest.Digest) {
	t.Helper()
	data, dg := storetest.Blob(seed, n)
	r, err := d.Fetch(t.Context(), dg, int64(n), storetest.SequentialFiller(data, 1<<10))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := storetest.ReadAll(r); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	return r, dg
}

func TestEvictionLRU(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	cfg := config(dir)
	cfg.Capacity, cfg.HighWatermark, cfg.LowWatermark = 1000, 0.9, 0.6
	reg := prometheus.NewRegistry()
	d := newDisk(t, cfg, store.WithRegisterer(reg))

	rb, b := fetchAll(t, d, 31, 200) // oldest, but stays pinned
	defer rb.Close()
	ra, a := fetchAll(t, d, 30, 200)
	ra.Close()
	rc, c := fetchAll(t, d, 32, 200)
	rc.Close()
	rdd, dd := fetchAll(t, d, 33, 200)
	rdd.Close()
	if _, err := d.Stat(ctx, a); err != nil { // a is now the most recent
		t.Fatal(err)
	}
	if got := d.Usage(); got != 800 {
		t.Fatalf("Usage = %d, want 800", got)
	}
	// 1000 > 900: evict unpinned blobs in LRU order (c, then dd) down to 600.
	re, e := fetchAll(t, d, 34, 200)
	re.Close()
	for _, tc := range []struct {
		name string
		dg   digest.Digest
		kept bool
	}{{"pinned", b, true}, {"recent", a, true}, {"new", e, true}, {"lru", c, false}, {"second lru", dd, false}} {
		_, err := d.Stat(ctx, tc.dg)
		if kept := err == nil; kept != tc.kept {
			t.Errorf("%s blob: kept=%v, want %v (%v)", tc.name, kept, tc.kept, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", tc.dg.Encoded())); (err == nil) != tc.kept {
			t.Errorf("%s blob file: %v, want kept=%v", tc.name, err, tc.kept)
		}
	}
	if got := d.Usage(); got != 600 {
		t.Fatalf("Usage after eviction = %d, want 600", got)
	}
	if got := gather(t, reg, "shoal_store_evictions_total"); got != 2 {
		t.Errorf("evictions_total = %v, want 2", got)
	}
	if got := gather(t, reg, "shoal_store_evicted_bytes_total"); got != 400 {
		t.Errorf("evicted_bytes_total = %v, want 400", got)
	}
	if got := gather(t, reg, "shoal_store_size_bytes"); got != 600 {
		t.Errorf("size_bytes = %v, want 600", got)
	}
	// Pinned readers keep reading after eviction pressure.
	if _, err := rb.ReadAt(make([]byte, 200), 0); err != nil {
		t.Fatal(err)
	}

	// A restart sees the same blobs and usage.
	d.Close()
	d2 := newDisk(t, config(dir))
	if got := d2.Usage(); got != 600 {
		t.Fatalf("Usage after restart = %d, want 600", got)
	}
	var walked []digest.Digest
	if err := d2.Walk(ctx, func(i store.Info) error {
		if i.Size != 200 {
			t.Errorf("Walk: %s has size %d", i.Digest, i.Size)
		}
		walked = append(walked, i.Digest)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(walked)
	want := []digest.Digest{a, b, e}
	slices.Sort(want)
	if !slices.Equal(walked, want) {
		t.Fatalf("Walk after restart = %v, want %v", walked, want)
	}
}

func gather(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return sum
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestMetricsLint(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	newDisk(t, config(t.TempDir()), store.WithRegisterer(reg))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	// Two stores coexist in one process, each with its own registry.
	newDisk(t, config(t.TempDir()), store.WithRegisterer(prometheus.NewRegistry()))
	if _, err := store.New(config(t.TempDir()), store.WithRegisterer(reg)); err == nil {
		t.Fatal("registering twice in one registry succeeded")
	}
}

func TestRestartCountsPartials(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	d := newDisk(t, config(dir))
	r, _ := fetchAll(t, d, 40, 3000)
	r.Close()
	data, dg := storetest.Blob(41, 5000)
	boom := errors.New("boom")
	r, err := d.Fetch(ctx, dg, 5000, func(ctx context.Context, w store.Writer) error {
		w.WriteAt(data[:100], 0)
		return boom
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storetest.ReadAll(r); !errors.Is(err, boom) {
		t.Fatalf("failed fill: %v", err)
	}
	r.Close()
	d.Close()
	d2 := newDisk(t, config(dir))
	if got := d2.Usage(); got != 8000 {
		t.Fatalf("Usage after restart = %d, want 8000 (blob + partial)", got)
	}
	if err := d2.Delete(ctx, dg); err != nil {
		t.Fatalf("Delete of a partial ingest: %v", err)
	}
	if got := d2.Usage(); got != 3000 {
		t.Fatalf("Usage after deleting the partial = %d, want 3000", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "ingest", dg.Encoded())); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("partial ingest file after Delete: %v", err)
	}
}

func TestStrayIngestFilesAreCleaned(t *testing.T) {
	t.Parallel()
	// A genuine journal for a resumable partial, made by a failed fill.
	_, partial := storetest.Blob(54, 10)
	srcDir := t.TempDir()
	d0 := newDisk(t, config(srcDir))
	r, err := d0.Fetch(t.Context(), partial, 10, func(context.Context, store.Writer) error { return errors.New("stop") })
	if err != nil {
		t.Fatal(err)
	}
	storetest.ReadAll(r)
	r.Close()
	d0.Close()
	journal, err := os.ReadFile(filepath.Join(srcDir, "ingest", partial.Encoded()+".journal"))
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	ingest := filepath.Join(dir, "ingest")
	blobs := filepath.Join(dir, "blobs", "sha256")
	for _, p := range []string{filepath.Join(ingest, "subdir"), blobs} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hexOf := func(seed uint64) string { _, dg := storetest.Blob(seed, 10); return dg.Encoded() }
	committed, committedDg := storetest.Blob(55, 10)
	files := map[string][]byte{
		filepath.Join(blobs, committedDg.Encoded()):               committed,
		filepath.Join(ingest, "junk.tmp"):                         []byte("x"),
		filepath.Join(ingest, hexOf(50)+".journal.tmp"):           []byte("x"),
		filepath.Join(ingest, hexOf(51)):                          []byte("no journal"),
		filepath.Join(ingest, hexOf(52)+".journal"):               journal, // no data
		filepath.Join(ingest, hexOf(53)):                          []byte("x"),
		filepath.Join(ingest, hexOf(53)+".journal"):               []byte("garbage header"),
		filepath.Join(ingest, committedDg.Encoded()):              []byte("x"), // committed already
		filepath.Join(ingest, committedDg.Encoded()+".journal"):   journal,
		filepath.Join(ingest, strings.ToUpper(partial.Encoded())): []byte("x"),
		filepath.Join(ingest, partial.Encoded()):                  []byte("x"), // resumable
		filepath.Join(ingest, partial.Encoded()+".journal"):       journal,
	}
	for name, b := range files {
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	d := newDisk(t, config(dir))
	entries, err := os.ReadDir(ingest)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{partial.Encoded(), partial.Encoded() + ".journal"}
	if !slices.Equal(left, want) {
		t.Fatalf("ingest/ after New = %v, want %v", left, want)
	}
	if got := d.Usage(); got != 20 {
		t.Fatalf("Usage = %d, want 20 (blob and partial)", got)
	}
	if _, err := d.Stat(t.Context(), committedDg); err != nil {
		t.Fatal(err)
	}
}

func TestDirLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := newDisk(t, config(dir))
	if d2, err := store.New(config(dir)); err == nil {
		d2.Close()
		t.Fatal("a second store on the same directory opened")
	}
	d.Close()
	newDisk(t, config(dir))
}

func TestResumeWithLostData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	data, dg := storetest.Blob(42, 64<<10)
	size := int64(len(data))
	d := newDisk(t, config(dir))
	r, err := d.Fetch(ctx, dg, size, func(ctx context.Context, w store.Writer) error {
		w.WriteAt(data[:size/2], 0)
		return errors.New("stop")
	})
	if err != nil {
		t.Fatal(err)
	}
	storetest.ReadAll(r)
	r.Close()
	d.Close()
	// The journal records half the blob, but the data is gone.
	if err := os.Truncate(filepath.Join(dir, "ingest", dg.Encoded()), 10); err != nil {
		t.Fatal(err)
	}
	d2 := newDisk(t, config(dir))
	var fetched atomic.Int64
	var missing []store.Range
	r, err = d2.Fetch(ctx, dg, size, countingFiller(data, 4<<10, &fetched, &missing))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := storetest.ReadAll(r); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read: %v", err)
	}
	if want := []store.Range{{Off: 0, Len: size}}; !slices.Equal(missing, want) {
		t.Fatalf("Missing() = %v, want %v", missing, want)
	}
}
