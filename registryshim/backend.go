package registryshim

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
)

// Repo names a repository on a registry.
type Repo struct {
	// Registry comes from containerd's mirror parameter ?ns=<registry>,
	// lower-cased, validated as host[:port]. "" means the agent's default
	// upstream.
	Registry string
	// Name is the repository name, valid under the distribution spec grammar.
	Name string
}

// Manifest is a backend's answer for a manifest.
//
// The handler checks it before serving: MediaType must be set, Digest valid,
// equal to the requested digest when a digest was asked for, and, when Body is
// set, Size must equal len(Body) and Body must hash to Digest. A manifest
// failing a check is answered with 500, never served.
type Manifest struct {
	MediaType string
	Digest    digest.Digest
	Size      int64
	Body      []byte // nil allowed for HEAD
	Stale     bool   // the backend served its last known answer because the upstream was unreachable
}

// Blob is a readable blob. ReadAt blocks until the bytes are available (the
// backend may still be downloading them), and must return once the ctx given
// to Backend.Blob is done.
//
// The handler calls ReadAt from one goroutine, in increasing offsets, and
// Close exactly once, after the last ReadAt returned.
type Blob interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// Backend answers the handler's reads. Errors should wrap the sentinels of
// this package (ErrBlobUnknown, ErrUnavailable, ...); any other error is a 500.
// Every argument has been validated before a Backend method is called.
type Backend interface {
	// Manifest resolves ref, a tag or a digest. head is true for HEAD
	// requests: Body may then be nil.
	Manifest(ctx context.Context, repo Repo, ref string, head bool) (*Manifest, error)
	// Blob opens a blob for reading; it should return quickly and let ReadAt
	// wait for the bytes.
	Blob(ctx context.Context, repo Repo, dgst digest.Digest) (Blob, error)
	// StatBlob returns the size of a blob without fetching it.
	StatBlob(ctx context.Context, repo Repo, dgst digest.Digest) (int64, error)
	// Tags lists at most n tags (n<0: no limit given) in lexical order,
	// starting after last ("" : from the first).
	Tags(ctx context.Context, repo Repo, n int, last string) ([]string, error)
}

// RangeBackend is a Backend that can open part of a blob without fetching
// the rest; the handler finds it by type assertion. For a request with one
// satisfiable Range that is not the whole blob, the handler resolves the
// range against StatBlob's size and reads [off, off+n) of BlobRange's Blob
// only, so a lazy-pulling snapshotter reading a layer's footer gets the
// footer, not the layer.
type RangeBackend interface {
	BlobRange(ctx context.Context, repo Repo, dgst digest.Digest, off, n int64) (Blob, error)
}
