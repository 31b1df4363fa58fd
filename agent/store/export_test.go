package store

import "os"

// WithWriteAt replaces the ingest's data write, to inject faults.
func WithWriteAt(fn func(f *os.File, p []byte, off int64) (int, error)) Option {
	return func(o *options) { o.writeAt = fn }
}
