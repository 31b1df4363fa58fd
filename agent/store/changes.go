package store

import "github.com/opencontainers/go-digest"

// Change is what happened to a blob, as OnChange reports it.
type Change int

const (
	// Committed: the blob is verified and held; Open and Stat find it.
	Committed Change = iota + 1
	// Gone: the blob is no longer readable. It was evicted or deleted, or
	// its ingest ended without a commit (a failed fill, a digest mismatch,
	// the store closing).
	Gone
)

func (c Change) String() string {
	switch c {
	case Committed:
		return "committed"
	case Gone:
		return "gone"
	}
	return "unknown"
}

// OnChange makes fn hear of every blob committed or gone from now on. It is
// the second step of a two-phase start: the swarm, built over the store,
// registers itself before the store is used. Call it once. fn runs outside
// the store's lock, on the goroutine that made the change, and for a blob
// that was being fetched, before its readers get the last byte or the
// error; it must be quick. Events of one
// digest may reach fn out of order when two goroutines change it at once,
// so fn should re-read the store (Stat) rather than keep the news as a fact.
func (d *Disk) OnChange(fn func(digest.Digest, Change)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onChange = fn
}

// notify reports a change to the OnChange callback. Caller does not hold mu.
func (d *Disk) notify(c Change, dg digest.Digest) {
	d.mu.Lock()
	fn := d.onChange
	d.mu.Unlock()
	if fn != nil {
		fn(dg, c)
	}
}

// notifyEvicted reports the blobs evictions removed since the last call.
// Caller does not hold mu.
func (d *Disk) notifyEvicted() {
	d.mu.Lock()
	gone, fn := d.evicted, d.onChange
	d.evicted = nil
	d.mu.Unlock()
	if fn == nil {
		return
	}
	for _, dg := range gone {
		fn(dg, Gone)
	}
}
