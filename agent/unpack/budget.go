package unpack

import (
	"fmt"
	"sync/atomic"
)

// Budget bounds what one pull may unpack: the decompressed tar bytes and the
// file bytes written, each summed over all layers, and the size of any single
// entry. It is shared by concurrent Extract calls.
type Budget struct {
	max    int64
	stream atomic.Int64
	files  atomic.Int64
}

// NewBudget returns a Budget allowing max bytes; max <= 0 means no limit.
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// Used returns the file bytes written so far.
func (b *Budget) Used() int64 { return b.files.Load() }

func (b *Budget) limited() bool { return b != nil && b.max > 0 }

func (b *Budget) checkEntry(name string, size int64) error {
	if b.limited() && size > b.max {
		return fmt.Errorf("%w: entry %q is %d bytes, limit %d", ErrTooLarge, name, size, b.max)
	}
	return nil
}

func (b *Budget) takeStream(n int64) error {
	if b.limited() && b.stream.Add(n) > b.max {
		return fmt.Errorf("%w: more than %d decompressed bytes", ErrTooLarge, b.max)
	}
	return nil
}

func (b *Budget) takeFiles(n int64) error {
	if b.limited() && b.files.Add(n) > b.max {
		return fmt.Errorf("%w: more than %d bytes of files", ErrTooLarge, b.max)
	}
	if !b.limited() && b != nil {
		b.files.Add(n)
	}
	return nil
}
