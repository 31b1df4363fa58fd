package store

import (
	"slices"
	"sort"
)

// Range is a byte range [Off, Off+Len).
type Range struct{ Off, Len int64 }

func (r Range) end() int64 { return r.Off + r.Len }

// rangeSet is a set of bytes kept as sorted, disjoint, non-adjacent ranges.
// A sequential fill keeps it at one element; an out-of-order fill keeps it
// at one element per hole, so slices beat any tree here.
type rangeSet struct{ rs []Range }

// first returns the index of the first range ending after off (touching ranges
// included when touch is set, so that add can merge them).
func (s *rangeSet) first(off int64, touch bool) int {
	return sort.Search(len(s.rs), func(i int) bool {
		if touch {
			return s.rs[i].end() >= off
		}
		return s.rs[i].end() > off
	})
}

func (s *rangeSet) add(r Range) {
	if r.Len <= 0 {
		return
	}
	start, end := r.Off, r.end()
	i := s.first(start, true)
	j := i
	for ; j < len(s.rs) && s.rs[j].Off <= end; j++ {
		start = min(start, s.rs[j].Off)
		end = max(end, s.rs[j].end())
	}
	s.rs = slices.Replace(s.rs, i, j, Range{start, end - start})
}

func (s *rangeSet) remove(r Range) {
	if r.Len <= 0 {
		return
	}
	start, end := r.Off, r.end()
	i := s.first(start, false)
	var keep [2]Range
	k := keep[:0]
	j := i
	for ; j < len(s.rs) && s.rs[j].Off < end; j++ {
		if s.rs[j].Off < start {
			k = append(k, Range{s.rs[j].Off, start - s.rs[j].Off})
		}
		if e := s.rs[j].end(); e > end {
			k = append(k, Range{end, e - end})
		}
	}
	s.rs = slices.Replace(s.rs, i, j, k...)
}

// gaps appends to dst the parts of r that s does not cover, in order.
func (s *rangeSet) gaps(r Range, dst []Range) []Range {
	if r.Len <= 0 {
		return dst
	}
	cur, end := r.Off, r.end()
	for i := s.first(cur, false); i < len(s.rs) && s.rs[i].Off < end; i++ {
		if s.rs[i].Off > cur {
			dst = append(dst, Range{cur, s.rs[i].Off - cur})
		}
		cur = max(cur, s.rs[i].end())
	}
	if cur < end {
		dst = append(dst, Range{cur, end - cur})
	}
	return dst
}

// covers reports whether every byte of [off, end) is in s.
func (s *rangeSet) covers(off, end int64) bool {
	if off >= end {
		return true
	}
	i := s.first(off, false)
	return i < len(s.rs) && s.rs[i].Off <= off && s.rs[i].end() >= end
}

// prefix is the length of the contiguous run starting at 0.
func (s *rangeSet) prefix() int64 {
	if len(s.rs) > 0 && s.rs[0].Off == 0 {
		return s.rs[0].Len
	}
	return 0
}

func (s *rangeSet) empty() bool { return len(s.rs) == 0 }
