package store

import (
	"cmp"
	"errors"
	"io/fs"
	"os"
	"slices"

	"github.com/opencontainers/go-digest"
)

// evictLocked frees space when usage is above the high watermark, oldest use
// first, down to the low watermark. Pinned blobs and running ingests stay.
// The committed blobs it removes wait in d.evicted for notifyEvicted, which
// the caller runs once mu is released.
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
	now := d.held.clock()
	for dg, e := range d.blobs {
		if d.pins[dg] == 0 && !d.heldLocked(dg, now) {
			cands = append(cands, cand{dg, e, false})
		}
	}
	for dg, e := range d.partials {
		if !d.heldLocked(dg, now) {
			cands = append(cands, cand{dg, e, true})
		}
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
			d.evicted = append(d.evicted, c.dg)
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
