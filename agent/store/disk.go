package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

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
	held     holds                 // pins with a deadline (pin.go)
	usage    int64
	clock    uint64
	onChange func(digest.Digest, Change) // see OnChange
	evicted  []digest.Digest             // evicted, not yet notified
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
		held:      holds{now: o.now},
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
	return d.open(ctx, dg, readWhole)
}

// OpenWritten is Open for a caller that checked the bytes it reads itself:
// a read of a running ingest returns once its bytes are written, the
// blob's last byte too. The swarm serves a piece as soon as it verified
// the piece against its CID; holding back the last piece until the blob
// commits would make the agents that hold it wait on each other.
func (d *Disk) OpenWritten(ctx context.Context, dg digest.Digest) (Reader, error) {
	return d.open(ctx, dg, readVouched)
}

func (d *Disk) open(ctx context.Context, dg digest.Digest, kind readKind) (Reader, error) {
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
		return d.joinLocked(ctx, in, kind)
	}
	return nil, fmt.Errorf("store: %s: %w", dg, ErrNotFound)
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

func (d *Disk) joinLocked(ctx context.Context, in *ingest, kind readKind) (Reader, error) {
	f, err := os.Open(in.path)
	if err != nil {
		return nil, fmt.Errorf("store: open ingest %s: %w", in.dgst, err)
	}
	d.pins[in.dgst]++
	return &reader{d: d, dgst: in.dgst, size: in.size, f: f, ing: in, kind: kind, ctx: ctx}, nil
}

func (d *Disk) unpin(dg digest.Digest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pins[dg]--; d.pins[dg] <= 0 {
		delete(d.pins, dg)
	}
}

// Delete removes a committed blob or an idle partial ingest. Readers already
// open keep reading (the file lives until they close). A running ingest is
// not deleted: ErrInProgress.
func (d *Disk) Delete(ctx context.Context, dg digest.Digest) error {
	if err := checkDigest(dg); err != nil {
		return err
	}
	err := d.delete(dg)
	if err == nil {
		d.notify(Gone, dg)
	}
	return err
}

func (d *Disk) delete(dg digest.Digest) error {
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
