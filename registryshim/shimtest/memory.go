package shimtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim"
)

// Op names a Backend method in a Call.
type Op string

// The Backend methods.
const (
	OpManifest Op = "Manifest"
	OpBlob     Op = "Blob"
	OpStatBlob Op = "StatBlob"
	OpTags     Op = "Tags"
)

// Call is one call to a Memory's Backend methods.
type Call struct {
	Op   Op
	Repo registryshim.Repo
	Ref  string // the tag or digest asked for; for OpTags, the last parameter
	Head bool   // OpManifest only
}

// Memory is an in-memory registryshim.Backend. It is safe for concurrent use.
// Put methods store into a repository; requests for an unknown repository
// fail with NAME_UNKNOWN, for unknown content with MANIFEST_UNKNOWN or
// BLOB_UNKNOWN.
type Memory struct {
	mu    sync.Mutex
	repos map[registryshim.Repo]*repository
	gates map[digest.Digest]*Gate
	hook  func(context.Context, Call) error
	calls []Call
	stale bool
}

var _ registryshim.Backend = (*Memory)(nil)

type repository struct {
	manifests map[digest.Digest]manifest
	tags      map[string]digest.Digest
	blobs     map[digest.Digest][]byte
}

type manifest struct {
	mediaType string
	body      []byte
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{
		repos: make(map[registryshim.Repo]*repository),
		gates: make(map[digest.Digest]*Gate),
	}
}

func (m *Memory) repo(r registryshim.Repo) *repository {
	rp, ok := m.repos[r]
	if !ok {
		rp = &repository{
			manifests: make(map[digest.Digest]manifest),
			tags:      make(map[string]digest.Digest),
			blobs:     make(map[digest.Digest][]byte),
		}
		m.repos[r] = rp
	}
	return rp
}

// PutBlob stores data in repo and returns its sha256 digest.
func (m *Memory) PutBlob(repo registryshim.Repo, data []byte) digest.Digest {
	d := digest.FromBytes(data)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.repo(repo).blobs[d] = slices.Clone(data)
	return d
}

// PutManifest stores a manifest in repo, tagged with tag unless tag is "",
// and returns its sha256 digest.
func (m *Memory) PutManifest(repo registryshim.Repo, tag, mediaType string, body []byte) digest.Digest {
	d := digest.FromBytes(body)
	m.mu.Lock()
	defer m.mu.Unlock()
	rp := m.repo(repo)
	rp.manifests[d] = manifest{mediaType: mediaType, body: slices.Clone(body)}
	if tag != "" {
		rp.tags[tag] = d
	}
	return d
}

// SetStale makes every manifest answer from now on carry Stale.
func (m *Memory) SetStale(stale bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stale = stale
}

// SetHook sets a function run at the start of every Backend call; if it
// returns an error, the call returns it. nil removes the hook.
func (m *Memory) SetHook(hook func(context.Context, Call) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hook = hook
}

// Calls returns the Backend calls made so far, in order.
func (m *Memory) Calls() []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

// Gate returns the gate of blob d, making one if needed. Blobs opened after
// that, in any repository, only return bytes the gate has released.
func (m *Memory) Gate(d digest.Digest) *Gate {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.gates[d]
	if !ok {
		g = &Gate{changed: make(chan struct{})}
		m.gates[d] = g
	}
	return g
}

// begin records c and runs the hook.
func (m *Memory) begin(ctx context.Context, c Call) error {
	m.mu.Lock()
	m.calls = append(m.calls, c)
	hook := m.hook
	m.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, c); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// lookup finds a repository; m.mu must be held.
func (m *Memory) lookup(r registryshim.Repo) (*repository, error) {
	rp, ok := m.repos[r]
	if !ok {
		return nil, fmt.Errorf("memory: repository %q on %q: %w", r.Name, r.Registry, registryshim.ErrNameUnknown)
	}
	return rp, nil
}

// Manifest implements registryshim.Backend.
func (m *Memory) Manifest(ctx context.Context, repo registryshim.Repo, ref string, head bool) (*registryshim.Manifest, error) {
	if err := m.begin(ctx, Call{Op: OpManifest, Repo: repo, Ref: ref, Head: head}); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rp, err := m.lookup(repo)
	if err != nil {
		return nil, err
	}
	d := digest.Digest(ref)
	if !strings.Contains(ref, ":") {
		var ok bool
		if d, ok = rp.tags[ref]; !ok {
			return nil, fmt.Errorf("memory: tag %q: %w", ref, registryshim.ErrManifestUnknown)
		}
	}
	mf, ok := rp.manifests[d]
	if !ok {
		return nil, fmt.Errorf("memory: manifest %s: %w", d, registryshim.ErrManifestUnknown)
	}
	out := &registryshim.Manifest{MediaType: mf.mediaType, Digest: d, Size: int64(len(mf.body)), Stale: m.stale}
	if !head {
		out.Body = mf.body
	}
	return out, nil
}

// Blob implements registryshim.Backend.
func (m *Memory) Blob(ctx context.Context, repo registryshim.Repo, d digest.Digest) (registryshim.Blob, error) {
	if err := m.begin(ctx, Call{Op: OpBlob, Repo: repo, Ref: d.String()}); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rp, err := m.lookup(repo)
	if err != nil {
		return nil, err
	}
	data, ok := rp.blobs[d]
	if !ok {
		return nil, fmt.Errorf("memory: blob %s: %w", d, registryshim.ErrBlobUnknown)
	}
	return &blob{ctx: ctx, data: data, gate: m.gates[d]}, nil
}

// StatBlob implements registryshim.Backend.
func (m *Memory) StatBlob(ctx context.Context, repo registryshim.Repo, d digest.Digest) (int64, error) {
	if err := m.begin(ctx, Call{Op: OpStatBlob, Repo: repo, Ref: d.String()}); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rp, err := m.lookup(repo)
	if err != nil {
		return 0, err
	}
	data, ok := rp.blobs[d]
	if !ok {
		return 0, fmt.Errorf("memory: blob %s: %w", d, registryshim.ErrBlobUnknown)
	}
	return int64(len(data)), nil
}

// Tags implements registryshim.Backend.
func (m *Memory) Tags(ctx context.Context, repo registryshim.Repo, n int, last string) ([]string, error) {
	if err := m.begin(ctx, Call{Op: OpTags, Repo: repo, Ref: last}); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	rp, err := m.lookup(repo)
	if err != nil {
		return nil, err
	}
	var tags []string
	for t := range rp.tags {
		if t > last {
			tags = append(tags, t)
		}
	}
	slices.Sort(tags)
	if n >= 0 && len(tags) > n {
		tags = tags[:n]
	}
	return tags, nil
}

// blob reads from memory, waiting on its gate if it has one.
type blob struct {
	ctx  context.Context
	data []byte
	gate *Gate

	mu     sync.Mutex
	closed bool
}

func (b *blob) Size() int64 { return int64(len(b.data)) }

func (b *blob) ReadAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return 0, os.ErrClosed
	}
	if off < 0 {
		return 0, errors.New("memory: negative offset")
	}
	size := int64(len(b.data))
	if off >= size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), size)
	if b.gate != nil {
		if err := b.gate.wait(b.ctx, end); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.data[off:end])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (b *blob) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return os.ErrClosed
	}
	b.closed = true
	return nil
}

// Gate holds back a blob's bytes: ReadAt returns once every byte it asks for
// has been released, or fails once the gate has failed.
type Gate struct {
	mu       sync.Mutex
	released int64
	err      error
	changed  chan struct{} // closed and replaced on every change
}

// Release makes bytes [0, n) readable. Releasing less than before does nothing.
func (g *Gate) Release(n int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n > g.released {
		g.released = n
		g.notify()
	}
}

// Fail makes reads of bytes not yet released fail with err, as a download
// that broke would.
func (g *Gate) Fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.err = err
	g.notify()
}

func (g *Gate) notify() {
	close(g.changed)
	g.changed = make(chan struct{})
}

func (g *Gate) wait(ctx context.Context, end int64) error {
	for {
		g.mu.Lock()
		released, err, changed := g.released, g.err, g.changed
		g.mu.Unlock()
		switch {
		case end <= released:
			return nil
		case err != nil:
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
