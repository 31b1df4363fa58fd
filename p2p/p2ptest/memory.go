package p2ptest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
)

// MemorySource is a p2p.Source over pieces held in memory. It is safe for
// concurrent use.
type MemorySource struct {
	mu      sync.Mutex
	blobs   map[digest.Digest]*blob
	corrupt bool
}

var _ p2p.Source = (*MemorySource)(nil)

type blob struct {
	info     piece.Info
	pieces   [][]byte
	have     *piece.Bitfield
	watchers map[*watcher]struct{}
}

type watcher struct {
	ch   chan int
	stop func() bool
}

// NewMemorySource returns an empty MemorySource.
func NewMemorySource() *MemorySource {
	return &MemorySource{blobs: make(map[digest.Digest]*blob)}
}

// AddBlob cuts data into pieces of pieceSize, holds all of them and returns
// the blob's complete metainfo.
func (m *MemorySource) AddBlob(data []byte, pieceSize int64) *piece.Info {
	info := &piece.Info{Digest: digest.FromBytes(data), Size: int64(len(data)), PieceSize: pieceSize}
	for n := range info.Count() {
		off, length := info.Span(n)
		info.Pieces = append(info.Pieces, piece.Sum(data[off:off+length]))
	}
	if err := m.Register(info); err != nil {
		panic(err) // only on a caller's mistake: empty data or a bad piece size
	}
	for n := range info.Count() {
		off, length := info.Span(n)
		if err := m.Put(info.Digest, n, data[off:off+length]); err != nil {
			panic(err)
		}
	}
	return info
}

// Register makes a blob known with none of its pieces held yet.
func (m *MemorySource) Register(info *piece.Info) error {
	if info.Size <= 0 {
		return fmt.Errorf("p2ptest: blob %s of size %d", info.Digest, info.Size)
	}
	if err := info.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.blobs[info.Digest]; ok {
		return nil
	}
	m.blobs[info.Digest] = &blob{
		info:     *info,
		pieces:   make([][]byte, info.Count()),
		have:     piece.NewBitfield(info.Count()),
		watchers: make(map[*watcher]struct{}),
	}
	return nil
}

// Put holds piece n of a registered blob, verified against its CID when
// the metainfo has it, and announces it to watchers. The data is not copied.
func (m *MemorySource) Put(dgst digest.Digest, n int, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[dgst]
	if !ok {
		return fmt.Errorf("p2ptest: put piece %d: %w: %s", n, p2p.ErrUnknownBlob, dgst)
	}
	if n < 0 || n >= b.have.Len() {
		return fmt.Errorf("p2ptest: put piece %d of %d", n, b.have.Len())
	}
	if _, length := b.info.Span(n); int64(len(data)) != length {
		return fmt.Errorf("p2ptest: put piece %d: %d bytes, want %d", n, len(data), length)
	}
	if n < len(b.info.Pieces) {
		if err := piece.Verify(b.info.Pieces[n], data); err != nil {
			return fmt.Errorf("p2ptest: put piece %d: %w", n, err)
		}
	}
	if b.have.Has(n) {
		return nil
	}
	b.pieces[n] = data
	b.have.Set(n)
	full := b.have.Full()
	for w := range b.watchers {
		w.ch <- n // never blocks: the buffer holds every piece missing at Watch
		if full {
			m.endLocked(b, w)
		}
	}
	return nil
}

// SetCorrupt makes Piece serve wrong bytes (of the right length) while on.
func (m *MemorySource) SetCorrupt(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.corrupt = on
}

// Watch implements p2p.Source.
func (m *MemorySource) Watch(ctx context.Context, _ peer.ID, dgst digest.Digest) (*piece.Bitfield, <-chan int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[dgst]
	if !ok {
		return nil, nil, p2p.ErrUnknownBlob
	}
	bf, err := piece.ParseBitfield(b.have.Bytes(), b.have.Len())
	if err != nil {
		return nil, nil, err
	}
	w := &watcher{ch: make(chan int, bf.Len()-bf.Count())}
	if bf.Full() {
		close(w.ch)
		return bf, w.ch, nil
	}
	b.watchers[w] = struct{}{}
	w.stop = context.AfterFunc(ctx, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if _, ok := b.watchers[w]; ok {
			m.endLocked(b, w)
		}
	})
	return bf, w.ch, nil
}

func (m *MemorySource) endLocked(b *blob, w *watcher) {
	delete(b.watchers, w)
	w.stop()
	close(w.ch)
}

// Piece implements p2p.Source.
func (m *MemorySource) Piece(_ context.Context, dgst digest.Digest, n int) (io.ReadCloser, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.blobs[dgst]
	if !ok {
		return nil, 0, p2p.ErrUnknownBlob
	}
	if !b.have.Has(n) {
		return nil, 0, p2p.ErrNoPiece
	}
	data := b.pieces[n]
	if m.corrupt {
		data = bytes.Clone(data)
		data[0] ^= 0xff
	}
	return io.NopCloser(bytes.NewReader(data)), int64(len(data)), nil
}
