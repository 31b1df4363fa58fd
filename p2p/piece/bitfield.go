package piece

import "fmt"

// Bitfield records which pieces of a blob a peer holds.
type Bitfield struct {
	words []uint64
	n     int
}

// NewBitfield returns an empty Bitfield for n pieces.
func NewBitfield(n int) *Bitfield {
	return &Bitfield{words: make([]uint64, (n+63)/64), n: n}
}

// Len is the number of pieces the Bitfield covers.
func (b *Bitfield) Len() int { return b.n }

// Has reports whether piece i is set; out-of-range pieces are not.
func (b *Bitfield) Has(i int) bool {
	return i >= 0 && i < b.n && b.words[i/64]&(1<<(i%64)) != 0
}

// Set marks piece i; it reports false if i is out of range.
func (b *Bitfield) Set(i int) bool {
	if i < 0 || i >= b.n {
		return false
	}
	b.words[i/64] |= 1 << (i % 64)
	return true
}

// Count is the number of pieces set.
func (b *Bitfield) Count() int {
	c := 0
	for i := range b.n {
		if b.Has(i) {
			c++
		}
	}
	return c
}

// Full reports whether every piece is set.
func (b *Bitfield) Full() bool { return b.Count() == b.n }

// Bytes encodes the Bitfield, piece 0 in the high bit of byte 0 (BitTorrent order).
func (b *Bitfield) Bytes() []byte {
	out := make([]byte, (b.n+7)/8)
	for i := range b.n {
		if b.Has(i) {
			out[i/8] |= 0x80 >> (i % 8)
		}
	}
	return out
}

// ParseBitfield decodes untrusted bytes for n pieces; spare bits must be zero.
func ParseBitfield(data []byte, n int) (*Bitfield, error) {
	if n < 0 || n > MaxPieces || len(data) != (n+7)/8 {
		return nil, fmt.Errorf("%w: bitfield of %d bytes for %d pieces", ErrInvalid, len(data), n)
	}
	b := NewBitfield(n)
	for i := range len(data) * 8 {
		if data[i/8]&(0x80>>(i%8)) == 0 {
			continue
		}
		if !b.Set(i) {
			return nil, fmt.Errorf("%w: bitfield sets spare bit %d", ErrInvalid, i)
		}
	}
	return b, nil
}
