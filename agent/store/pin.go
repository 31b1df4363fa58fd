package store

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// holds are pins with a deadline, set from outside the store (the
// tracker's seed jobs keep their blobs until the rollout): eviction leaves
// a held blob alone, committed or partial, until its deadline passes on
// the store's clock. A blob not in the store yet is held once it arrives.
// Guarded by Disk.mu; the zero value holds nothing and reads time.Now.
type holds struct {
	now   func() time.Time
	until map[digest.Digest]time.Time
}

// WithClock sets the clock that hold deadlines are read on (default
// time.Now).
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// Pin keeps dg from eviction until until (a later deadline replaces an
// earlier one; an earlier one changes nothing). It does not fetch dg.
func (d *Disk) Pin(dg digest.Digest, until time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.held.until == nil {
		d.held.until = make(map[digest.Digest]time.Time)
	}
	if until.After(d.held.until[dg]) {
		d.held.until[dg] = until
	}
}

// PinnedUntil reports dg's hold deadline, if one is still running.
func (d *Disk) PinnedUntil(dg digest.Digest) (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.held.until[dg]
	return t, ok && t.After(d.held.clock())
}

func (h *holds) clock() time.Time {
	if h.now == nil {
		return time.Now()
	}
	return h.now()
}

// heldLocked reports whether dg is held now, forgetting deadlines that
// passed. Caller holds mu.
func (d *Disk) heldLocked(dg digest.Digest, now time.Time) bool {
	t, ok := d.held.until[dg]
	if ok && !t.After(now) {
		delete(d.held.until, dg)
		return false
	}
	return ok
}
