package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// Fetch returns a Reader on the blob, running fill to get it if needed: a
// committed blob is read at once; a running ingest is joined; otherwise fill
// runs in a goroutine owned by the store (not stopped when ctx ends, since
// other readers may share it; stopped by Close), resuming a partial ingest
// left by an earlier run. ctx bounds the Reader's waits. A running
// FetchRange fill is joined too, and fill takes over when it ends.
func (d *Disk) Fetch(ctx context.Context, dg digest.Digest, size int64, fill Filler) (Reader, error) {
	return d.fetch(ctx, dg, size, fill, false)
}

// FetchRange is Fetch for a reader that reads one range of the blob only,
// and wants no more of it fetched than that. fill must write only bytes it
// checked against the blob's piece hashes, and may return ErrPartial once
// it wrote the range it serves: the partial blob stays for a later Fetch to
// complete, and the Reader keeps serving what was written. While every byte
// of the ingest came from such fills, the Reader serves the last byte of
// the blob as soon as it is written; the whole blob's digest still guards
// every read of the whole blob. A running whole Fetch is joined as is; a
// Fetch or FetchRange that joins a ranged fill queues its own filler, run
// when that fill ends.
func (d *Disk) FetchRange(ctx context.Context, dg digest.Digest, size int64, fill Filler) (Reader, error) {
	return d.fetch(ctx, dg, size, fill, true)
}

func (d *Disk) fetch(ctx context.Context, dg digest.Digest, size int64, fill Filler, ranged bool) (Reader, error) {
	if err := checkDigest(dg); err != nil {
		return nil, err
	}
	if size < 0 || size > maxBlobSize {
		return nil, fmt.Errorf("store: fetch %s: invalid size %d: %w", dg, size, ErrSizeMismatch)
	}
	if fill == nil {
		return nil, errors.New("store: fetch: nil filler")
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, ending, err := d.tryFetch(ctx, dg, size, fill, ranged)
		if ending == nil {
			return r, err
		}
		// A ranged fill is ending partial: once it is gone, the partial
		// blob it leaves is resumed.
		select {
		case <-ending:
		case <-ctx.Done():
		}
	}
}

// tryFetch is one attempt of fetch; ending, if not nil, is closed once a
// ranged fill that could not be joined has ended.
func (d *Disk) tryFetch(ctx context.Context, dg digest.Digest, size int64, fill Filler, ranged bool) (_ Reader, ending <-chan struct{}, _ error) {
	defer d.notifyEvicted() // after the unlock below
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, nil, ErrClosed
	}
	if e := d.blobs[dg]; e != nil {
		if e.size != size {
			return nil, nil, fmt.Errorf("store: fetch %s: stored size %d, asked %d: %w", dg, e.size, size, ErrSizeMismatch)
		}
		r, err := d.openBlobLocked(ctx, dg, e)
		if !errors.Is(err, fs.ErrNotExist) {
			return r, nil, err
		}
		// Removed behind our back: forget it and fetch again.
		d.log.Warn("store: committed blob vanished, fetching again", "digest", dg)
		delete(d.blobs, dg)
		d.usage -= e.size
	}
	if in := d.ingests[dg]; in != nil {
		if in.size != size {
			return nil, nil, fmt.Errorf("store: fetch %s: ingest size %d, asked %d: %w", dg, in.size, size, ErrSizeMismatch)
		}
		in.mu.Lock()
		ending := in.ending
		if ending == nil && in.sparse {
			// A ranged fill runs: this filler runs after it, for its own
			// range or the whole blob.
			in.next = append(in.next, fill)
		}
		if !ranged {
			in.checked = false
		}
		in.mu.Unlock()
		if ending != nil {
			return nil, ending, nil
		}
		r, err := d.joinLocked(ctx, in, kindOf(ranged))
		return r, nil, err
	}
	in, resume, err := d.startLocked(dg, size)
	if err != nil {
		return nil, nil, err
	}
	in.sparse = ranged
	in.checked = ranged && !resume // an earlier run's bytes were not written by this fill
	r, err := d.joinLocked(ctx, in, kindOf(ranged))
	if err != nil {
		// Without a reader nobody can use this fill; undo it.
		in.file.Close()
		delete(d.ingests, dg)
		d.partials[dg] = &entry{size: size}
		d.touchLocked(d.partials[dg])
		return nil, nil, err
	}
	d.wg.Add(1)
	go d.run(in, fill, resume)
	return r, nil, nil
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
	for err == nil {
		err = callFill(d.ctx, fill, in)
		if !errors.Is(err, ErrPartial) {
			break
		}
		// The next Fetch that joined takes over, on the same ingest. Decided
		// under d.mu, where Fetch joins: a Fetch that comes later waits for
		// this ingest to end and resumes what it leaves.
		d.mu.Lock()
		in.mu.Lock()
		fill = nil
		if len(in.next) > 0 {
			fill, in.next = in.next[0], in.next[1:]
		} else {
			in.ending = make(chan struct{})
		}
		in.mu.Unlock()
		d.mu.Unlock()
		if fill == nil {
			break
		}
		err = nil
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
	d.notifyEvicted()
	// The last byte is released only once the rename is durable too.
	if err := syncDir(d.blobsDir); err != nil {
		d.log.Warn("store: cannot sync blobs directory", "error", err)
	}
	d.notify(Committed, in.dgst) // before readers get the last byte
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
	in.mu.Lock()
	if in.ending != nil {
		defer close(in.ending) // after the partial is recorded, below
	}
	in.mu.Unlock()
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
	case errors.Is(err, ErrPartial):
		result = resultPartial
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
	if result == resultCanceled || result == resultPartial {
		level = slog.LevelInfo
	}
	d.log.Log(context.Background(), level, "store: ingest failed", "digest", in.dgst, "result", result, "kept", !discard, "error", err)
	d.notify(Gone, in.dgst)
	in.complete(fmt.Errorf("store: ingest %s: %w", in.dgst, err))
}

func kindOf(ranged bool) readKind {
	if ranged {
		return readRanged
	}
	return readWhole
}
