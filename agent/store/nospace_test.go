package store_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent/agenttest"
	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/store/storetest"
)

// assertNothingLeft checks that a failed ingest left no file behind.
func assertNothingLeft(t *testing.T, d *store.Disk, dir string) {
	t.Helper()
	for _, sub := range []string{"ingest", filepath.Join("blobs", "sha256")} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Errorf("%s/%s left after ENOSPC", sub, e.Name())
		}
	}
	if got := d.Usage(); got != 0 {
		t.Errorf("Usage = %d after a failed ingest, want 0", got)
	}
}

func TestNoSpaceInjected(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var full atomic.Bool
	full.Store(true)
	var written atomic.Int64
	// The filesystem "fills up" after 100 KiB.
	writeAt := func(f *os.File, p []byte, off int64) (int, error) {
		if full.Load() && written.Add(int64(len(p))) > 100<<10 {
			return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		}
		return f.WriteAt(p, off)
	}
	reg := prometheus.NewRegistry()
	d := newDisk(t, config(dir), store.WithWriteAt(writeAt), store.WithRegisterer(reg))
	data, dg := storetest.Blob(60, 1<<20)
	r, err := d.Fetch(t.Context(), dg, int64(len(data)), storetest.SequentialFiller(data, 16<<10))
	if err != nil {
		t.Fatal(err)
	}
	_, err = storetest.ReadAll(r)
	r.Close()
	if !errors.Is(err, store.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("read of an ingest that hit ENOSPC: %v, want ErrNoSpace wrapping ENOSPC", err)
	}
	assertNothingLeft(t, d, dir)
	if got := gather(t, reg, "shoal_store_ingests_total"); got != 1 {
		t.Fatalf("ingests_total = %v, want 1", got)
	}

	// Space comes back: the next Fetch starts over and succeeds.
	full.Store(false)
	r, err = d.Fetch(t.Context(), dg, int64(len(data)), storetest.SequentialFiller(data, 16<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := storetest.ReadAll(r); err != nil {
		t.Fatal(err)
	}
}

// TestNoSpaceTmpfs fills a real, tiny filesystem. It needs to mount tmpfs
// (root) and skips otherwise, except under CI=true where it fails;
// TestNoSpaceInjected covers the logic anyway.
func TestNoSpaceTmpfs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=512k"); err != nil {
		if agenttest.InCI() {
			t.Fatalf("cannot mount tmpfs: %v (CI=true: required; run as root)", err)
		}
		t.Skipf("cannot mount tmpfs: %v (run as root)", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	d := newDisk(t, config(dir))
	data, dg := storetest.Blob(61, 2<<20)
	r, err := d.Fetch(t.Context(), dg, int64(len(data)), storetest.SequentialFiller(data, 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	_, err = storetest.ReadAll(r)
	r.Close()
	if !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("read of an ingest larger than the disk: %v, want ErrNoSpace", err)
	}
	assertNothingLeft(t, d, dir)
	d.Close()
}
