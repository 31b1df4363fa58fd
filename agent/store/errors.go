package store

import "errors"

var (
	// ErrNotFound: the blob is neither committed nor being ingested.
	ErrNotFound = errors.New("store: blob not found")
	// ErrSizeMismatch: content or a caller disagrees with the blob's size.
	ErrSizeMismatch = errors.New("store: size mismatch")
	// ErrDigestMismatch: the ingested content does not hash to its digest.
	ErrDigestMismatch = errors.New("store: digest mismatch")
	// ErrNoSpace: the filesystem ran out of space (wraps syscall.ENOSPC).
	ErrNoSpace = errors.New("store: no space left on device")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrInProgress: the operation conflicts with a running ingest.
	ErrInProgress = errors.New("store: ingest in progress")
	// ErrUnsupportedDigest: only sha256 digests are stored.
	ErrUnsupportedDigest = errors.New("store: unsupported digest")
	// ErrPartial, returned by the filler of FetchRange, ends a fill that
	// wrote the range it was asked for and not the whole blob: the partial
	// blob stays, and a later Fetch completes it.
	ErrPartial = errors.New("store: partial fill")
)
