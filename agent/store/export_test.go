package store

import (
	"os"
	"path/filepath"
)

// WithWriteAt replaces the ingest's data write, to inject faults.
func WithWriteAt(fn func(f *os.File, p []byte, off int64) (int, error)) Option {
	return func(o *options) { o.writeAt = fn }
}

// JournaledBytes reports how many bytes of the ingest of hex in dir its
// journal records as durable.
func JournaledBytes(dir, hex string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, "ingest", hex+".journal"))
	if err != nil {
		return 0
	}
	_, rs, _, err := parseJournal(b)
	if err != nil {
		return 0
	}
	var n int64
	for _, r := range rs {
		n += r.Len
	}
	return n
}
