package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/opencontainers/go-digest"
)

// Writer is what a Filler writes into. It is safe for concurrent use.
type Writer interface {
	// WriteAt writes p at off; the bytes are readable once it returns.
	// Bytes already written are left untouched (a duplicate piece is a
	// no-op), and so are bytes a concurrent WriteAt is writing right now:
	// they become readable when that call returns.
	WriteAt(p []byte, off int64) (int, error)
	// Size is the blob's size.
	Size() int64
	// Missing lists, sorted, the ranges not yet written. On a resumed ingest
	// it excludes what an earlier process already wrote.
	Missing() []Range
	// ReadAt reads back bytes already written (by this fill or, on a
	// resumed ingest, an earlier one), so a filler can check them.
	ReadAt(p []byte, off int64) (int, error)
}

// Filler fills w with the blob's content. Returning nil means "all written":
// the store then verifies size and digest and commits. It must return when
// ctx is done (the store's Close waits for it).
type Filler func(ctx context.Context, w Writer) error

// hashChunk bounds the buffer used to hash bytes back from disk.
const hashChunk = 1 << 20

// errUnreadable: the ingest's own file could not be read back; its content
// cannot be trusted, so the ingest is discarded like a digest mismatch.
var errUnreadable = errors.New("ingest file unreadable")

// ingest is one running fill of one blob. Locks: mu guards the written state
// and wakes readers; flushMu serialises journal appends; hashMu serialises the
// incremental hash. flushMu and hashMu are never held while taking another
// ingest lock except mu for short sections, and none is taken while holding
// Disk.mu.
type ingest struct {
	dgst        digest.Digest
	size        int64
	path        string
	journalPath string
	file        *os.File
	journal     *os.File // set by prepare
	syncBytes   int64
	writeAt     func(f *os.File, p []byte, off int64) (int, error)

	mu      sync.Mutex
	written rangeSet // bytes on disk, readable
	pending rangeSet // bytes a WriteAt is writing right now
	sealed  bool     // fill finished: no more writes
	done    bool     // outcome known
	err     error    // failure, when done
	changed chan struct{}
	waiters int
	// Ranges written since the last journal flush, merged when contiguous.
	unflushed      []Range
	unflushedBytes int64
	noSpace        bool
	flushing       bool  // a background flush is running
	flushErr       error // a background flush failed

	prefix    atomic.Int64 // contiguous written bytes from 0
	committed atomic.Bool  // fast path for readers once verified
	// checked: every byte was written by a FetchRange filler, which writes
	// only bytes it checked against piece hashes, so a ranged reader may
	// have the last byte before the whole blob is verified. Guarded by mu;
	// cleared for good once a whole Fetch joins.
	checked bool
	// sparse: the ingest was started by FetchRange, so a fill may end
	// ErrPartial. next queues the fillers of the Fetches that joined it;
	// each takes over, on the same ingest, when the one before ends
	// ErrPartial. Guarded by mu.
	sparse bool
	next   []Filler
	// ending is made when a ranged fill ends with no whole Fetch to take
	// over, and closed once the ingest is gone and its partial recorded.
	ending chan struct{}

	flushMu sync.Mutex     // serialises journal appends and closing
	flushWG sync.WaitGroup // the background flush, waited for before closing

	hashMu  sync.Mutex
	hasher  hash.Hash
	hashed  atomic.Int64 // written under hashMu, read anywhere
	hashErr error
	hashBuf []byte
}

var _ Writer = (*ingest)(nil)

func (in *ingest) Size() int64 { return in.size }

func (in *ingest) Missing() []Range {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.written.gaps(Range{0, in.size}, nil)
}

func (in *ingest) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > in.size {
		return 0, fmt.Errorf("store: read back [%d, %d) of a %d-byte ingest", off, off+int64(len(p)), in.size)
	}
	return in.file.ReadAt(p, off)
}

func (in *ingest) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > in.size || int64(len(p)) > in.size-off {
		return 0, fmt.Errorf("store: write of %d bytes at %d outside blob of %d bytes: %w", len(p), off, in.size, ErrSizeMismatch)
	}
	if len(p) == 0 {
		return 0, nil
	}
	r := Range{off, int64(len(p))}
	var buf [4]Range
	in.mu.Lock()
	if in.sealed {
		in.mu.Unlock()
		return 0, errors.New("store: write after the fill finished")
	}
	if in.flushErr != nil {
		// A journal that cannot be written means progress cannot be made
		// durable (typically ENOSPC): stop the fill.
		err := in.flushErr
		in.mu.Unlock()
		return 0, err
	}
	// Claim only bytes nobody has written or is writing: written bytes must
	// never change under readers and the hash.
	var gaps []Range
	for _, g := range in.written.gaps(r, buf[:0]) {
		gaps = in.pending.gaps(g, gaps)
	}
	for _, g := range gaps {
		in.pending.add(g)
	}
	in.mu.Unlock()

	var werr error
	for _, g := range gaps {
		if _, werr = in.writeAt(in.file, p[g.Off-off:g.end()-off], g.Off); werr != nil {
			break
		}
	}

	in.mu.Lock()
	for _, g := range gaps {
		in.pending.remove(g)
	}
	if werr != nil {
		if errors.Is(werr, syscall.ENOSPC) {
			in.noSpace = true
			werr = fmt.Errorf("%w: %w", ErrNoSpace, werr)
		}
		in.mu.Unlock()
		return 0, fmt.Errorf("store: write %s: %w", in.dgst, werr)
	}
	for _, g := range gaps {
		in.written.add(g)
		in.recordLocked(g)
	}
	in.prefix.Store(in.written.prefix())
	in.notifyLocked()
	// Adding to flushWG only while not sealed lets closing wait for it safely.
	startFlush := in.unflushedBytes >= in.syncBytes && !in.flushing && !in.sealed
	if startFlush {
		in.flushing = true
		in.flushWG.Add(1)
	}
	in.mu.Unlock()

	if len(gaps) == 1 && gaps[0] == r {
		in.advanceHash(p, off)
	} else {
		in.advanceHash(nil, 0)
	}
	if startFlush {
		// fsync runs beside the fill: the filler and the readers following it
		// go on at page-cache speed while the disk catches up.
		go in.flushLoop()
	}
	return len(p), nil
}

func (in *ingest) recordLocked(g Range) {
	if n := len(in.unflushed); n > 0 && in.unflushed[n-1].end() == g.Off {
		in.unflushed[n-1].Len += g.Len
	} else {
		in.unflushed = append(in.unflushed, g)
	}
	in.unflushedBytes += g.Len
}

// notifyLocked wakes readers waiting for bytes; the channel is replaced only
// when someone waits, so a fill nobody reads yet allocates nothing.
func (in *ingest) notifyLocked() {
	if in.waiters > 0 || in.done {
		close(in.changed)
		in.changed = make(chan struct{})
	}
}

// flushLoop flushes in the background until less than a batch is pending.
func (in *ingest) flushLoop() {
	defer in.flushWG.Done()
	for {
		err := in.flush()
		in.mu.Lock()
		if err != nil && in.flushErr == nil {
			in.flushErr = err
		}
		if err != nil || in.sealed || in.unflushedBytes < in.syncBytes {
			in.flushing = false
			in.mu.Unlock()
			return
		}
		in.mu.Unlock()
	}
}

// flush makes the bytes written so far durable and journals them.
func (in *ingest) flush() error {
	in.flushMu.Lock()
	defer in.flushMu.Unlock()
	in.mu.Lock()
	recs := in.unflushed
	in.unflushed, in.unflushedBytes = nil, 0
	in.mu.Unlock()
	if len(recs) == 0 || in.journal == nil {
		return nil
	}
	// Data first: a record must never describe bytes a crash could lose.
	err := in.file.Sync()
	if err == nil {
		b := make([]byte, 0, len(recs)*journalRecordSize)
		for _, r := range recs {
			b = appendJournalRecord(b, r)
		}
		if _, err = in.journal.Write(b); err == nil {
			err = in.journal.Sync()
		}
	}
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			in.mu.Lock()
			in.noSpace = true
			in.mu.Unlock()
			err = fmt.Errorf("%w: %w", ErrNoSpace, err)
		}
		return fmt.Errorf("store: journal %s: %w", in.dgst, err)
	}
	return nil
}

// advanceHash hashes the written prefix as far as it goes. p, when not nil,
// holds the bytes just written at off, which saves reading them back. Whoever
// holds hashMu does the work; the re-check after unlocking makes sure progress
// published by a writer whose TryLock failed is not left behind.
func (in *ingest) advanceHash(p []byte, off int64) {
	for in.hashed.Load() < in.prefix.Load() {
		if !in.hashMu.TryLock() {
			return
		}
		in.hashLocked(p, off)
		failed := in.hashErr != nil
		in.hashMu.Unlock()
		if failed {
			return
		}
	}
}

func (in *ingest) hashLocked(p []byte, off int64) {
	for in.hashErr == nil {
		h, target := in.hashed.Load(), in.prefix.Load()
		if h >= target {
			return
		}
		if p != nil && off <= h && h < off+int64(len(p)) {
			n := min(off+int64(len(p)), target) - h
			in.hasher.Write(p[h-off : h-off+n])
			in.hashed.Add(n)
			continue
		}
		if in.hashBuf == nil {
			in.hashBuf = make([]byte, hashChunk)
		}
		n := min(target-h, int64(len(in.hashBuf)))
		if _, err := in.file.ReadAt(in.hashBuf[:n], h); err != nil {
			in.hashErr = fmt.Errorf("store: read back %s for hashing: %w: %w", in.dgst, errUnreadable, err)
			return
		}
		in.hasher.Write(in.hashBuf[:n])
		in.hashed.Add(n)
	}
}

// prepare runs before the filler: it loads what an earlier process wrote
// (resume), starts a fresh compacted journal and hashes the existing prefix.
func (in *ingest) prepare(resume bool) error {
	in.hasher = sha256.New()
	var have []Range
	if resume {
		if b, err := os.ReadFile(in.journalPath); err == nil {
			if size, rs, _, err := parseJournal(b); err == nil && size == in.size {
				have = rs
			}
		}
		// A data file shorter than its journal claims was tampered with or
		// lost: trust nothing of it.
		if fi, err := in.file.Stat(); err != nil || (len(have) > 0 && fi.Size() < have[len(have)-1].end()) {
			have = nil
		}
	}
	if len(have) == 0 {
		if err := in.file.Truncate(0); err != nil {
			return fmt.Errorf("store: reset ingest %s: %w", in.dgst, err)
		}
	}
	j, err := writeJournal(in.journalPath, in.size, have)
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			in.mu.Lock()
			in.noSpace = true
			in.mu.Unlock()
			err = fmt.Errorf("%w: %w", ErrNoSpace, err)
		}
		return err
	}
	in.mu.Lock()
	in.journal = j
	for _, r := range have {
		in.written.add(r)
	}
	in.prefix.Store(in.written.prefix())
	in.notifyLocked()
	in.mu.Unlock()
	in.advanceHash(nil, 0)
	return nil
}

// writeJournal atomically replaces path with a journal holding ranges and
// returns it open for appending.
func writeJournal(path string, size int64, ranges []Range) (*os.File, error) {
	b := appendJournalHeader(nil, size)
	for _, r := range ranges {
		b = appendJournalRecord(b, r)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: create journal: %w", err)
	}
	if _, err = f.Write(b); err == nil {
		if err = f.Sync(); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("store: write journal: %w", err)
	}
	return f, nil
}

// seal stops further writes and reports whether a write is still in flight.
func (in *ingest) seal() (inFlight bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.sealed = true
	return !in.pending.empty()
}

// verify checks, after the filler returned nil, that every byte is there and
// that the content hashes to the digest.
func (in *ingest) verify() error {
	if in.seal() {
		return errors.New("store: filler returned while a write was still in flight")
	}
	in.mu.Lock()
	missing := in.written.gaps(Range{0, in.size}, nil)
	in.mu.Unlock()
	if len(missing) > 0 {
		var n int64
		for _, r := range missing {
			n += r.Len
		}
		return fmt.Errorf("store: fill of %s finished with %d of %d bytes missing: %w", in.dgst, n, in.size, ErrSizeMismatch)
	}
	in.hashMu.Lock()
	defer in.hashMu.Unlock()
	in.hashLocked(nil, 0)
	if in.hashErr != nil {
		return in.hashErr
	}
	if got := digest.NewDigest(digest.SHA256, in.hasher); got != in.dgst {
		return fmt.Errorf("store: content of %s hashes to %s: %w", in.dgst, got, ErrDigestMismatch)
	}
	return nil
}

func (in *ingest) closeFiles() {
	in.flushWG.Wait()
	in.flushMu.Lock()
	defer in.flushMu.Unlock()
	if in.file != nil {
		in.file.Close()
	}
	if in.journal != nil {
		in.journal.Close()
	}
}

// complete publishes the outcome to readers.
func (in *ingest) complete(err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.done, in.err = true, err
	if err == nil {
		in.committed.Store(true)
	}
	in.notifyLocked()
}

// readKind is what a reader of an ingest may read before the blob commits.
type readKind uint8

const (
	// readWhole: written bytes, the last one only once the blob is
	// verified and committed.
	readWhole readKind = iota
	// readRanged: a FetchRange reader, which reads only its range.
	readRanged
	// readVouched: written bytes, the last one too, for a caller that
	// checked what it reads itself (OpenWritten).
	readVouched
)

// waitFor blocks until [off, end) is readable: written, and committed when it
// includes the last byte. For a ranged reader (FetchRange) the last byte is
// readable once written if every byte came from a FetchRange filler (they
// are checked against piece hashes), and a fill that ended ErrPartial leaves
// what it wrote readable. For a vouched reader every written byte is.
func (in *ingest) waitFor(ctx context.Context, off, end int64, kind readKind) error {
	ranged := kind == readRanged
	if in.committed.Load() {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for {
		covered := in.written.covers(off, end)
		switch {
		case ranged && covered && errors.Is(in.err, ErrPartial):
			return nil
		case in.err != nil:
			return in.err
		case in.done:
			return nil
		case covered && (end < in.size || ranged && in.checked || kind == readVouched):
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		in.waiters++
		ch := in.changed
		in.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		in.mu.Lock()
		in.waiters--
	}
}

// reader reads a committed blob or one being ingested through its own file
// descriptor; the file stays readable after the ingest is renamed into place.
type reader struct {
	d     *Disk
	dgst  digest.Digest
	size  int64
	f     *os.File
	ing   *ingest  // nil when the blob was committed at open
	kind  readKind // what it may read of an ingest (see waitFor)
	ctx   context.Context
	close sync.Once
}

// Reader reads a committed blob or one being ingested. ReadAt blocks until the
// requested bytes are written, the ingest fails (an error wrapping the cause),
// or the ctx given to Open or Fetch is done. The last byte of a blob (and the
// io.EOF after it) is only returned once the blob is verified and committed.
// Once an ingest fails, every read of it fails, even of bytes it had.
type Reader interface {
	io.ReaderAt
	Size() int64
	// Close releases the pin on the blob; eviction may then remove it.
	Close() error
}

var _ Reader = (*reader)(nil)

func (r *reader) Size() int64 { return r.size }

func (r *reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("store: read at negative offset %d", off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if off >= r.size {
		// Reporting the end reveals that the content is complete, so it
		// waits for verification like the last byte does.
		if r.ing != nil {
			if err := r.ing.waitFor(r.ctx, r.size, r.size, readWhole); err != nil {
				return 0, err
			}
		}
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), r.size)
	if r.ing != nil {
		if err := r.ing.waitFor(r.ctx, off, end, r.kind); err != nil {
			return 0, err
		}
	}
	n, err := r.f.ReadAt(p[:end-off], off)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the file is shorter than it was verified to be
		}
		return n, fmt.Errorf("store: read %s: %w", r.dgst, err)
	}
	if end-off < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

func (r *reader) Close() error {
	var err error
	r.close.Do(func() {
		err = r.f.Close()
		r.d.unpin(r.dgst)
	})
	return err
}
