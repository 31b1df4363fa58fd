package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// The journal sidecar (ingest/<hex>.journal) records which byte ranges of an
// ingest are durably on disk:
//
//	header: "SHJ1" | size uint64 | crc32c(previous 12 bytes)
//	record: off uint64 | len uint64 | crc32c(previous 16 bytes)   (repeated)
//
// all big-endian. Records are appended only after the data file has been
// fsync'd, so a record never describes bytes that a crash could lose. A crash
// can tear the last record; parsing stops at the first record that is short or
// fails its checksum or bounds, and the bytes it (and anything after it) would
// have described are simply fetched again. A journal is rewritten compacted
// (temp file + rename) whenever an ingest resumes, so it stays small.
const (
	journalMagic      = "SHJ1"
	journalHeaderSize = 16
	journalRecordSize = 20
	// maxBlobSize keeps off+len arithmetic far from overflow.
	maxBlobSize = math.MaxInt64 / 4
)

var (
	errJournalHeader = errors.New("store: bad journal header")
	castagnoli       = crc32.MakeTable(crc32.Castagnoli)
)

func appendJournalHeader(b []byte, size int64) []byte {
	b = append(b, journalMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[len(b)-12:], castagnoli))
}

func appendJournalRecord(b []byte, r Range) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(r.Off))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Len))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[len(b)-16:], castagnoli))
}

// parseJournal decodes a journal. It fails only on a bad header; a torn or
// corrupt tail is dropped and reported as the count of bytes ignored.
// The returned ranges are sorted and merged.
func parseJournal(b []byte) (size int64, written []Range, ignored int, err error) {
	if len(b) < journalHeaderSize || string(b[:4]) != journalMagic {
		return 0, nil, 0, errJournalHeader
	}
	if crc32.Checksum(b[:12], castagnoli) != binary.BigEndian.Uint32(b[12:16]) {
		return 0, nil, 0, fmt.Errorf("%w: checksum", errJournalHeader)
	}
	u := binary.BigEndian.Uint64(b[4:12])
	if u > maxBlobSize {
		return 0, nil, 0, fmt.Errorf("%w: size %d too large", errJournalHeader, u)
	}
	size = int64(u)
	var set rangeSet
	rest := b[journalHeaderSize:]
	for len(rest) >= journalRecordSize {
		rec := rest[:journalRecordSize]
		if crc32.Checksum(rec[:16], castagnoli) != binary.BigEndian.Uint32(rec[16:20]) {
			break
		}
		off, n := binary.BigEndian.Uint64(rec[0:8]), binary.BigEndian.Uint64(rec[8:16])
		if n == 0 || off > uint64(size) || n > uint64(size)-off {
			break
		}
		set.add(Range{int64(off), int64(n)})
		rest = rest[journalRecordSize:]
	}
	return size, set.rs, len(rest), nil
}
