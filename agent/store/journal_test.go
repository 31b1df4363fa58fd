package store

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRangeSet checks rangeSet against a byte-per-bit model under random
// adds and removes.
func TestRangeSet(t *testing.T) {
	t.Parallel()
	const size = 200
	rng := rand.New(rand.NewPCG(1, 2))
	var s rangeSet
	var model [size]bool
	for i := range 5000 {
		off := rng.Int64N(size)
		n := rng.Int64N(size - off + 1)
		r := Range{off, n}
		add := rng.IntN(3) != 0
		if add {
			s.add(r)
		} else {
			s.remove(r)
		}
		for j := off; j < off+n; j++ {
			model[j] = add
		}
		var want []Range
		for j := int64(0); j < size; j++ {
			if !model[j] {
				continue
			}
			if k := len(want); k > 0 && want[k-1].end() == j {
				want[k-1].Len++
			} else {
				want = append(want, Range{j, 1})
			}
		}
		if len(s.rs)+len(want) > 0 && !slices.Equal(s.rs, want) {
			t.Fatalf("step %d (%+v): set %v, model %v", i, r, s.rs, want)
		}
		q := Range{rng.Int64N(size), 0}
		q.Len = rng.Int64N(size - q.Off + 1)
		covered := true
		var gaps []Range
		for j := q.Off; j < q.end(); j++ {
			covered = covered && model[j]
			if !model[j] {
				if k := len(gaps); k > 0 && gaps[k-1].end() == j {
					gaps[k-1].Len++
				} else {
					gaps = append(gaps, Range{j, 1})
				}
			}
		}
		if got := s.covers(q.Off, q.end()); got != covered {
			t.Fatalf("covers(%+v) = %v, want %v (set %v)", q, got, covered, s.rs)
		}
		if got := s.gaps(q, nil); !slices.Equal(got, gaps) {
			t.Fatalf("gaps(%+v) = %v, want %v (set %v)", q, got, gaps, s.rs)
		}
	}
}

func TestRangeSetAddRemove(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ops  []Range // positive Len adds, negative Len removes |Len|
		want []Range
	}{
		{"merge adjacent", []Range{{0, 10}, {10, 5}}, []Range{{0, 15}}},
		{"keep apart", []Range{{0, 10}, {11, 5}}, []Range{{0, 10}, {11, 5}}},
		{"bridge", []Range{{0, 10}, {20, 5}, {5, 20}}, []Range{{0, 25}}},
		{"remove middle", []Range{{0, 10}, {3, -4}}, []Range{{0, 3}, {7, 3}}},
		{"remove across", []Range{{0, 5}, {10, 5}, {3, -9}}, []Range{{0, 3}, {12, 3}}},
		{"remove all", []Range{{0, 5}, {0, -5}}, nil},
		{"empty add ignored", []Range{{4, 0}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var s rangeSet
			for _, op := range tc.ops {
				if op.Len < 0 {
					s.remove(Range{op.Off, -op.Len})
				} else {
					s.add(op)
				}
			}
			if !slices.Equal(s.rs, tc.want) {
				t.Fatalf("got %v, want %v", s.rs, tc.want)
			}
		})
	}
}

func encodeJournal(size int64, rs ...Range) []byte {
	b := appendJournalHeader(nil, size)
	for _, r := range rs {
		b = appendJournalRecord(b, r)
	}
	return b
}

func TestParseJournal(t *testing.T) {
	t.Parallel()
	valid := encodeJournal(100, Range{0, 10}, Range{10, 20}, Range{50, 5})
	badCRC := slices.Clone(valid)
	badCRC[journalHeaderSize+journalRecordSize+3] ^= 1 // second record
	badHeader := slices.Clone(valid)
	badHeader[5] ^= 1
	tests := []struct {
		name    string
		in      []byte
		wantErr bool
		want    []Range
		ignored int
	}{
		{"valid", valid, false, []Range{{0, 30}, {50, 5}}, 0},
		{"header only", encodeJournal(7), false, nil, 0},
		{"torn tail", valid[:len(valid)-3], false, []Range{{0, 30}}, journalRecordSize - 3},
		{"bad record stops", badCRC, false, []Range{{0, 10}}, 2 * journalRecordSize},
		{"out of bounds stops", encodeJournal(100, Range{0, 10}, Range{95, 10}, Range{20, 1}), false, []Range{{0, 10}}, 2 * journalRecordSize},
		{"zero length stops", encodeJournal(100, Range{0, 0}), false, nil, journalRecordSize},
		{"empty", nil, true, nil, 0},
		{"bad magic", append([]byte("XXXX"), valid[4:]...), true, nil, 0},
		{"bad header crc", badHeader, true, nil, 0},
		{"huge size", encodeJournal(maxBlobSize + 1), true, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, got, ignored, err := parseJournal(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, errJournalHeader) {
					t.Fatalf("err = %v, want errJournalHeader", err)
				}
				return
			}
			if !slices.Equal(got, tc.want) || ignored != tc.ignored {
				t.Fatalf("got %v ignored %d, want %v ignored %d", got, ignored, tc.want, tc.ignored)
			}
		})
	}
}

// FuzzJournal: a journal read after a crash is untrusted input.
func FuzzJournal(f *testing.F) {
	f.Add([]byte{})
	f.Add(encodeJournal(100, Range{0, 10}, Range{10, 20}, Range{50, 5}))
	f.Add(encodeJournal(1<<40, Range{1 << 39, 1 << 20}))
	f.Add(encodeJournal(5, Range{0, 5})[:30])
	f.Fuzz(func(t *testing.T, b []byte) {
		size, rs, ignored, err := parseJournal(b)
		if err != nil {
			return
		}
		if size < 0 || size > maxBlobSize || ignored < 0 || ignored > len(b) {
			t.Fatalf("size %d ignored %d of %d", size, ignored, len(b))
		}
		var prevEnd int64 = -1
		for _, r := range rs {
			if r.Len <= 0 || r.Off <= prevEnd || r.end() > size {
				t.Fatalf("ranges %v not sorted, disjoint and within %d", rs, size)
			}
			prevEnd = r.end()
		}
		size2, rs2, ignored2, err := parseJournal(encodeJournal(size, rs...))
		if err != nil || size2 != size || !slices.Equal(rs2, rs) || ignored2 != 0 {
			t.Fatalf("re-encoded journal parses to %d %v %d %v", size2, rs2, ignored2, err)
		}
	})
}
