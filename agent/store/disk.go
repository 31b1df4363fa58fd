package store

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// Info describes a committed blob.
type Info struct {
	Digest digest.Digest
	Size   int64
}

// entry is a committed blob or an idle partial ingest, for accounting and LRU.
type entry struct {
	size int64
	used uint64 // logical clock: larger is more recent
}

// Disk is the on-disk store. All methods are safe for concurrent use.
type Disk struct {
	cfg       Config
	log       *slog.Logger
	metrics   *metrics
	writeAt   func(f *os.File, p []byte, off int64) (int, error)
	blobsDir  string
	ingestDir string
	lock      *os.File // flock'd: one store per directory

	// ctx is the fills' context: fills belong to the store, not to a caller.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards the maps and usage, and every rename or removal under
	// blobs/ and ingest/, so the maps and the directories always agree.
	mu       sync.Mutex
	closed   bool
	blobs    map[digest.Digest]*entry
	partials map[digest.Digest]*entry // ingests left on disk, resumable
	ingests  map[digest.Digest]*ingest
	pins     map[digest.Digest]int // open readers
	usage    int64
	clock    uint64
}

// New opens (creating if needed) the store in cfg.Dir, indexing committed
// blobs and resumable ingests and removing leftovers it cannot use.
func New(cfg Config, opts ...Option) (*Disk, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, err
	}
	d := &Disk{
		cfg:       cfg,
		log:       o.logger,
		metrics:   m,
		writeAt:   o.writeAt,
		blobsDir:  filepath.Join(cfg.Dir, "blobs", "sha256"),
		ingestDir: filepath.Join(cfg.Dir, "ingest"),
		blobs:     make(map[digest.Digest]*entry),
		partials:  make(map[digest.Digest]*entry),
		ingests:   make(map[digest.Digest]*ingest),
		pins:      make(map[digest.Digest]int),
	}
	for _, dir := range []string{d.blobsDir, d.ingestDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	if d.lock, err = lockDir(cfg.Dir); err != nil {
		return nil, err
	}
	if err := d.scan(); err != nil {
		d.lock.Close()
		return nil, err
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.metrics.size.Set(float64(d.usage))
	d.log.Info("store opened", "dir", cfg.Dir, "blobs", len(d.blobs), "partials", len(d.partials), "bytes", d.usage)
	return d, nil
}

func isHex(name string) bool {
	if len(name) != 64 || strings.ToLower(name) != name {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil
}

// scan indexes blobs/sha256 and ingest/. In ingest/ only complete pairs of a
// data file and a journal with a valid header survive; anything else is junk
// from a crash and is removed.
func (d *Disk) scan() error {
	type seen struct {
		dgst    digest.Digest
		e       *entry
		modTime time.Time
	}
	var all []seen
	blobEntries, err := os.ReadDir(d.blobsDir)
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	for _, de := range blobEntries {
		fi, err := de.Info()
		if err != nil || !isHex(de.Name()) || !fi.Mode().IsRegular() {
			d.log.Warn("store: ignoring unexpected file in blobs", "name", de.Name())
			continue
		}
		dg := digest.NewDigestFromEncoded(digest.SHA256, de.Name())
		e := &entry{size: fi.Size()}
		d.blobs[dg] = e
		d.usage += e.size
		all = append(all, seen{dg, e, fi.ModTime()})
	}

	ingestEntries, err := os.ReadDir(d.ingestDir)
	if err != nil {
		return fmt.Errorf("store: scan: %w", err)
	}
	names := make(map[string]bool, len(ingestEntries))
	for _, de := range ingestEntries {
		names[de.Name()] = true
	}
	remove := func(name, why string) {
		d.log.Info("store: removing leftover ingest file", "name", name, "reason", why)
		if err := os.RemoveAll(filepath.Join(d.ingestDir, name)); err != nil {
			d.log.Warn("store: cannot remove leftover", "name", name, "error", err)
		}
	}
	for _, de := range ingestEntries {
		name := de.Name()
		hexName, isJournal := strings.CutSuffix(name, ".journal")
		switch {
		case !isHex(hexName) || !de.Type().IsRegular():
			remove(name, "not an ingest")
		case !isJournal && !names[name+".journal"]:
			remove(name, "no journal")
		case isJournal && !names[hexName]:
			remove(name, "no data")
		case isJournal:
			dg := digest.NewDigestFromEncoded(digest.SHA256, hexName)
			b, err := os.ReadFile(filepath.Join(d.ingestDir, name))
			var size int64
			if err == nil {
				size, _, _, err = parseJournal(b)
			}
			fi, ierr := de.Info()
			switch {
			case err != nil || ierr != nil:
				remove(name, "unreadable journal")
				remove(hexName, "unreadable journal")
			case d.blobs[dg] != nil:
				remove(name, "already committed")
				remove(hexName, "already committed")
			default:
				e := &entry{size: size}
				d.partials[dg] = e
				d.usage += size
				all = append(all, seen{dg, e, fi.ModTime()})
			}
		}
	}
	// Seed the LRU clock from modification times: the best a restart knows.
	slices.SortFunc(all, func(a, b seen) int { return a.modTime.Compare(b.modTime) })
	for _, s := range all {
		d.clock++
		s.e.used = d.clock
	}
	return nil
}

func (d *Disk) blobPath(dg digest.Digest) string   { return filepath.Join(d.blobsDir, dg.Encoded()) }
func (d *Disk) ingestPath(dg digest.Digest) string { return filepath.Join(d.ingestDir, dg.Encoded()) }

func (d *Disk) touchLocked(e *entry) {
	d.clock++
	e.used = d.clock
}

func checkDigest(dg digest.Digest) error {
	// Validate first: Algorithm panics on a digest without a separator.
	if err := dg.Validate(); err != nil {
		return fmt.Errorf("store: digest %q: %w: %w", dg, ErrUnsupportedDigest, err)
	}
	if dg.Algorithm() != digest.SHA256 {
		return fmt.Errorf("store: digest %q: %w (only sha256)", dg, ErrUnsupportedDigest)
	}
	return nil
}

// Stat describes a committed blob; ErrNotFound otherwise. It counts as a use
// for eviction.
func (d *Disk) Stat(ctx context.Context, dg digest.Digest) (Info, error) {
	if err := checkDigest(dg); err != nil {
		return Info{}, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Info{}, ErrClosed
	}
	e := d.blobs[dg]
	if e == nil {
		return Info{}, fmt.Errorf("store: %s: %w", dg, ErrNotFound)
	}
	d.touchLocked(e)
	return Info{Digest: dg, Size: e.size}, nil
}

// Open returns a Reader on a committed blob or on a running ingest, which ctx
// bounds while ReadAt waits; ErrNotFound otherwise.
func (d *Disk) Open(ctx context.Context, dg digest.Digest) (Reader, error) {
	if err := checkDigest(dg); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	if e := d.blobs[dg]; e != nil {
		return d.openBlobLocked(ctx, dg, e)
	}
	if in := d.ingests[dg]; in != nil {
		return d.joinLocked(ctx, in)
	}
	return nil, fmt.Errorf("store: %s: %w", dg, ErrNotFound)
}

// Fetch returns a Reader on the blob, running fill to get it if needed: a
// committed blob is read at once; a running ingest is joined; otherwise fill
// runs in a goroutine owned by the store (not stopped when ctx ends, since
// other readers may share it; stopped by Close), resuming a partial ingest
// left by an earlier run. ctx bounds the Reader's waits.
func (d *Disk) Fetch(ctx context.Context, dg digest.Digest, size int64, fill Filler) (Reader, error) {
	if err := checkDigest(dg); err != nil {
		return nil, err
	}
	if size < 0 || size > maxBlobSize {
		return nil, fmt.Errorf("store: fetch %s: invalid size %d: %w", dg, size, ErrSizeMismatch)
	}
	if fill == nil {
		return nil, errors.New("store: fetch: nil filler")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	if e := d.blobs[dg]; e != nil {
		if e.size != size {
			return nil, fmt.Errorf("store: fetch %s: stored size %d, asked %d: %w", dg, e.size, size, ErrSizeMismatch)
		}
		r, err := d.openBlobLocked(ctx, dg, e)
		if !errors.Is(err, fs.ErrNotExist) {
			return r, err
		}
		// Removed behind our back: forget it and fetch again.
		d.log.Warn("store: committed blob vanished, fetching again", "digest", dg)
		delete(d.blobs, dg)
		d.usage -= e.size
	}
	if in := d.ingests[dg]; in != nil {
		if in.size != size {
			return nil, fmt.Errorf("store: fetch %s: ingest size %d, asked %d: %w", dg, in.size, size, ErrSizeMismatch)
		}
		return d.joinLocked(ctx, in)
	}
	in, resume, err := d.startLocked(dg, size)
	if err != nil {
		return nil, err
	}
	r, err := d.joinLocked(ctx, in)
	if err != nil {
		// Without a reader nobody can use this fill; undo it.
		in.file.Close()
		delete(d.ingests, dg)
		d.partials[dg] = &entry{size: size}
		d.touchLocked(d.partials[dg])
		return nil, err
	}
	d.wg.Add(1)
	go d.run(in, fill, resume)
	return r, nil
}

func (d *Disk) openBlobLocked(ctx context.Context, dg digest.Digest, e *entry) (Reader, error) {
	f, err := os.Open(d.blobPath(dg))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dg, err)
	}
	d.touchLocked(e)
	d.pins[dg]++
	return &reader{d: d, dgst: dg, size: e.size, f: f, ctx: ctx}, nil
}

func (d *Disk) joinLocked(ctx context.Context, in *ingest) (Reader, error) {
	f, err := os.Open(in.path)
	if err != nil {
		return nil, fmt.Errorf("store: open ingest %s: %w", in.dgst, err)
	}
	d.pins[in.dgst]++
	return &reader{d: d, dgst: in.dgst, size: in.size, f: f, ing: in, ctx: ctx}, nil
}

func (d *Disk) unpin(dg digest.Digest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pins[dg]--; d.pins[dg] <= 0 {
		delete(d.pins, dg)
	}
}

// startLocked registers a new ingest, reusing a partial one of the same size.
// Usage counts an ingest at its full size from the start, a reservation that
// needs no accounting on the write path.
func (d *Disk) startLocked(dg digest.Digest, size int64) (*ingest, bool, error) {
	path := d.ingestPath(dg)
	resume := false
	if p := d.partials[dg]; p != nil {
		delete(d.partials, dg)
		if p.size == size {
			resume = true
		} else {
			d.usage -= p.size
		}
	}
	flags := os.O_RDWR | os.O_CREATE
	if !resume {
		flags |= os.O_TRUNC
		d.usage += size
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		d.usage -= size
		os.Remove(path + ".journal")
		d.metrics.size.Set(float64(d.usage))
		if errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("%w: %w", ErrNoSpace, err)
		}
		return nil, false, fmt.Errorf("store: create ingest %s: %w", dg, err)
	}
	in := &ingest{
		dgst:        dg,
		size:        size,
		path:        path,
		journalPath: path + ".journal",
		file:        f,
		syncBytes:   d.cfg.JournalSyncBytes,
		writeAt:     d.writeAt,
		changed:     make(chan struct{}),
	}
	d.ingests[dg] = in
	d.evictLocked()
	d.metrics.size.Set(float64(d.usage))
	d.log.Debug("store: ingest started", "digest", dg, "bytes", size, "resume", resume)
	return in, resume, nil
}

// run drives one ingest to its end; it owns in from here on.
func (d *Disk) run(in *ingest, fill Filler, resume bool) {
	defer d.wg.Done()
	start := time.Now()
	err := in.prepare(resume)
	if err == nil {
		err = callFill(d.ctx, fill, in)
	}
	if err == nil {
		err = in.verify()
	} else {
		in.seal()
	}
	if err == nil {
		if err = d.commit(in); err == nil {
			d.metrics.ingests.WithLabelValues(resultCommitted).Inc()
			d.log.Debug("store: blob committed", "digest", in.dgst, "bytes", in.size, "duration", time.Since(start))
			return
		}
	}
	d.fail(in, err)
}

func callFill(ctx context.Context, fill Filler, w Writer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: filler panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return fill(ctx, w)
}

// commit makes a verified ingest durable and moves it into blobs/.
func (d *Disk) commit(in *ingest) error {
	if err := in.file.Sync(); err != nil {
		return fmt.Errorf("store: sync %s: %w", in.dgst, noSpace(in, err))
	}
	in.closeFiles()
	d.mu.Lock()
	if err := os.Rename(in.path, d.blobPath(in.dgst)); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("store: commit %s: %w", in.dgst, noSpace(in, err))
	}
	if err := os.Remove(in.journalPath); err != nil {
		d.log.Warn("store: cannot remove journal", "digest", in.dgst, "error", err)
	}
	delete(d.ingests, in.dgst)
	e := &entry{size: in.size}
	d.touchLocked(e)
	d.blobs[in.dgst] = e
	d.evictLocked()
	d.metrics.size.Set(float64(d.usage))
	d.mu.Unlock()
	// The last byte is released only once the rename is durable too.
	if err := syncDir(d.blobsDir); err != nil {
		d.log.Warn("store: cannot sync blobs directory", "error", err)
	}
	in.complete(nil)
	return nil
}

// noSpace marks in as failed for lack of space when err says so.
func noSpace(in *ingest, err error) error {
	if !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	in.mu.Lock()
	in.noSpace = true
	in.mu.Unlock()
	return fmt.Errorf("%w: %w", ErrNoSpace, err)
}

// fail ends an ingest with err. Content that proved wrong, and ingests that hit
// a full disk, are deleted so the next Fetch starts over; anything else (the
// filler failed, the store closed) stays on disk to be resumed.
func (d *Disk) fail(in *ingest, err error) {
	in.mu.Lock()
	full := in.noSpace
	in.mu.Unlock()
	if full && !errors.Is(err, ErrNoSpace) {
		err = fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	discard := full || errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch) || errors.Is(err, errUnreadable)
	if !discard {
		in.flushWG.Wait()
		if ferr := in.flush(); ferr != nil {
			d.log.Warn("store: cannot journal partial ingest", "digest", in.dgst, "error", ferr)
			discard = errors.Is(ferr, ErrNoSpace)
		}
	}
	in.closeFiles()
	if d.ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}

	d.mu.Lock()
	delete(d.ingests, in.dgst)
	if discard {
		for _, p := range []string{in.path, in.journalPath} {
			if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				d.log.Warn("store: cannot remove failed ingest", "digest", in.dgst, "error", rerr)
			}
		}
		d.usage -= in.size
	} else {
		e := &entry{size: in.size}
		d.touchLocked(e)
		d.partials[in.dgst] = e
	}
	d.metrics.size.Set(float64(d.usage))
	d.mu.Unlock()

	result := resultError
	switch {
	case errors.Is(err, ErrNoSpace):
		result = resultNoSpace
	case errors.Is(err, ErrDigestMismatch):
		result = resultDigestMismatch
	case errors.Is(err, ErrSizeMismatch):
		result = resultSizeMismatch
	case errors.Is(err, context.Canceled):
		result = resultCanceled
	}
	d.metrics.ingests.WithLabelValues(result).Inc()
	level := slog.LevelWarn
	if result == resultCanceled {
		level = slog.LevelInfo
	}
	d.log.Log(context.Background(), level, "store: ingest failed", "digest", in.dgst, "result", result, "kept", !discard, "error", err)
	in.complete(fmt.Errorf("store: ingest %s: %w", in.dgst, err))
}

// evictLocked frees space when usage is above the high watermark, oldest use
// first, down to the low watermark. Pinned blobs and running ingests stay.
func (d *Disk) evictLocked() {
	if d.cfg.Capacity == 0 || float64(d.usage) <= d.cfg.HighWatermark*float64(d.cfg.Capacity) {
		return
	}
	target := int64(d.cfg.LowWatermark * float64(d.cfg.Capacity))
	type cand struct {
		dg      digest.Digest
		e       *entry
		partial bool
	}
	var cands []cand
	for dg, e := range d.blobs {
		if d.pins[dg] == 0 {
			cands = append(cands, cand{dg, e, false})
		}
	}
	for dg, e := range d.partials {
		cands = append(cands, cand{dg, e, true})
	}
	slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(a.e.used, b.e.used) })
	for _, c := range cands {
		if d.usage <= target {
			break
		}
		var err error
		if c.partial {
			err = errors.Join(os.Remove(d.ingestPath(c.dg)), os.Remove(d.ingestPath(c.dg)+".journal"))
			delete(d.partials, c.dg)
		} else {
			err = os.Remove(d.blobPath(c.dg))
			delete(d.blobs, c.dg)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.log.Warn("store: eviction could not remove a file", "digest", c.dg, "error", err)
		}
		d.usage -= c.e.size
		d.metrics.evictions.Inc()
		d.metrics.evictedBytes.Add(float64(c.e.size))
		d.log.Debug("store: evicted", "digest", c.dg, "bytes", c.e.size, "partial", c.partial)
	}
	if float64(d.usage) > d.cfg.HighWatermark*float64(d.cfg.Capacity) {
		// Ingests still proceed: the filesystem may have room; a real
		// shortage surfaces as ErrNoSpace.
		d.log.Warn("store: over capacity, nothing left to evict", "bytes", d.usage, "capacity", d.cfg.Capacity)
	}
}

// Delete removes a committed blob or an idle partial ingest. Readers already
// open keep reading (the file lives until they close). A running ingest is
// not deleted: ErrInProgress.
func (d *Disk) Delete(ctx context.Context, dg digest.Digest) error {
	if err := checkDigest(dg); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if d.ingests[dg] != nil {
		return fmt.Errorf("store: delete %s: %w", dg, ErrInProgress)
	}
	found := false
	if e := d.blobs[dg]; e != nil {
		if err := os.Remove(d.blobPath(dg)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: delete %s: %w", dg, err)
		}
		delete(d.blobs, dg)
		d.usage -= e.size
		found = true
	}
	if e := d.partials[dg]; e != nil {
		err := errors.Join(os.Remove(d.ingestPath(dg)), os.Remove(d.ingestPath(dg)+".journal"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store: delete %s: %w", dg, err)
		}
		delete(d.partials, dg)
		d.usage -= e.size
		found = true
	}
	d.metrics.size.Set(float64(d.usage))
	if !found {
		return fmt.Errorf("store: delete %s: %w", dg, ErrNotFound)
	}
	return nil
}

// Walk calls fn for each committed blob, in no particular order, on a
// snapshot taken at the call; fn's error stops the walk and is returned.
func (d *Disk) Walk(ctx context.Context, fn func(Info) error) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	infos := make([]Info, 0, len(d.blobs))
	for dg, e := range d.blobs {
		infos = append(infos, Info{Digest: dg, Size: e.size})
	}
	d.mu.Unlock()
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Usage is the bytes held: committed blobs plus ingests at their full size.
func (d *Disk) Usage() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.usage
}

// Close cancels running fills and waits for them; their partial files stay on
// disk for the next run. Readers already open on committed blobs keep working.
func (d *Disk) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	return d.lock.Close() // releases the flock
}

// lockDir takes an exclusive lock on dir: two stores sharing a directory
// would delete each other's ingests as leftovers.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: %s is in use by another store: %w", dir, err)
	}
	return f, nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
