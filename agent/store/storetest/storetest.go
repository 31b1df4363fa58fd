package storetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
)

// Store is what the contract covers.
type Store interface {
	Stat(ctx context.Context, dgst digest.Digest) (store.Info, error)
	Open(ctx context.Context, dgst digest.Digest) (store.Reader, error)
	Fetch(ctx context.Context, dgst digest.Digest, size int64, fill store.Filler) (store.Reader, error)
	Delete(ctx context.Context, dgst digest.Digest) error
}

// Blob returns n deterministic pseudo-random bytes and their digest.
func Blob(seed uint64, n int) ([]byte, digest.Digest) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b, digest.FromBytes(b)
}

// SequentialFiller writes data in chunks of chunk bytes, in order, skipping
// what w already has (a resumed ingest).
func SequentialFiller(data []byte, chunk int) store.Filler {
	return func(ctx context.Context, w store.Writer) error {
		for _, r := range w.Missing() {
			for off := r.Off; off < r.Off+r.Len; off += int64(chunk) {
				if err := ctx.Err(); err != nil {
					return err
				}
				end := min(off+int64(chunk), r.Off+r.Len, int64(len(data)))
				if _, err := w.WriteAt(data[off:end], off); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// ReadAll reads all of r from offset 0.
func ReadAll(r store.Reader) ([]byte, error) {
	b := make([]byte, r.Size())
	n, err := r.ReadAt(b, 0)
	if err == io.EOF && n == len(b) {
		err = nil
	}
	return b[:n], err
}

// Run runs the contract suite. newStore returns a fresh, empty store and
// registers its cleanup with t.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"FetchAndRead", testFetchAndRead},
		{"EmptyBlob", testEmptyBlob},
		{"Dedup", testDedup},
		{"Streaming", testStreaming},
		{"BadDigest", testBadDigest},
		{"WrongSize", testWrongSize},
		{"OutOfOrderConcurrentWrites", testOutOfOrder},
		{"DuplicateWritesKeepFirstBytes", testDuplicateWrites},
		{"ReaderContextCancel", testReaderCancel},
		{"FillErrorThenRetry", testFillErrorRetry},
		{"NotFound", testNotFound},
		{"UnsupportedDigest", testUnsupportedDigest},
		{"Delete", testDelete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

func mustRead(t *testing.T, r store.Reader, want []byte) {
	t.Helper()
	got, err := ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes that differ from the %d expected", len(got), len(want))
	}
}

func closeReader(t *testing.T, r store.Reader) {
	t.Cleanup(func() { r.Close() })
}
