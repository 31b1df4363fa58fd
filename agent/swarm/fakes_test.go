package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// memStore is a Store held in memory: committed blobs, and blobs being
// ingested (readable, not committed).
type memStore struct {
	mu        sync.Mutex
	blobs     map[digest.Digest][]byte
	ingesting map[digest.Digest][]byte
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{blobs: make(map[digest.Digest][]byte), ingesting: make(map[digest.Digest][]byte)}
}

// ingest makes data readable as a blob still being fetched.
func (m *memStore) ingest(data []byte) digest.Digest {
	d := digest.FromBytes(data)
	m.mu.Lock()
	m.ingesting[d] = data
	m.mu.Unlock()
	return d
}

func (m *memStore) put(data []byte) digest.Digest {
	d := digest.FromBytes(data)
	m.mu.Lock()
	m.blobs[d] = data
	delete(m.ingesting, d)
	m.mu.Unlock()
	return d
}

func (m *memStore) remove(d digest.Digest) {
	m.mu.Lock()
	delete(m.blobs, d)
	m.mu.Unlock()
}

func (m *memStore) OpenWritten(_ context.Context, d digest.Digest) (store.Reader, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.blobs[d]
	if !ok {
		data, ok = m.ingesting[d]
	}
	if !ok {
		return nil, fmt.Errorf("%s: %w", d, store.ErrNotFound)
	}
	return memReader{bytes.NewReader(data)}, nil
}

func (m *memStore) Stat(_ context.Context, d digest.Digest) (store.Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.blobs[d]
	if !ok {
		return store.Info{}, fmt.Errorf("%s: %w", d, store.ErrNotFound)
	}
	return store.Info{Digest: d, Size: int64(len(data))}, nil
}

func (m *memStore) Walk(_ context.Context, fn func(store.Info) error) error {
	m.mu.Lock()
	infos := make([]store.Info, 0, len(m.blobs))
	for d, data := range m.blobs {
		infos = append(infos, store.Info{Digest: d, Size: int64(len(data))})
	}
	m.mu.Unlock()
	for _, i := range infos {
		if err := fn(i); err != nil {
			return err
		}
	}
	return nil
}

type memReader struct{ *bytes.Reader }

func (memReader) Close() error { return nil }

// memWriter is a store.Writer over a byte slice; pre marks bytes an
// earlier run wrote.
type memWriter struct {
	mu      sync.Mutex
	data    []byte
	written []bool
}

func newMemWriter(size int) *memWriter {
	return &memWriter{data: make([]byte, size), written: make([]bool, size)}
}

func (w *memWriter) pre(off int, p []byte) {
	copy(w.data[off:], p)
	for i := range p {
		w.written[off+i] = true
	}
}

func (w *memWriter) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range p {
		if !w.written[int(off)+i] {
			w.data[int(off)+i] = p[i]
			w.written[int(off)+i] = true
		}
	}
	return len(p), nil
}

func (w *memWriter) ReadAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return copy(p, w.data[off:]), nil
}

func (w *memWriter) Size() int64 { return int64(len(w.data)) }

func (w *memWriter) Missing() []store.Range {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []store.Range
	for i := 0; i < len(w.written); i++ {
		if w.written[i] {
			continue
		}
		j := i
		for j < len(w.written) && !w.written[j] {
			j++
		}
		out = append(out, store.Range{Off: int64(i), Len: int64(j - i)})
		i = j
	}
	return out
}

func (w *memWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.data)
}

// fakeTracker hands out a fixed metainfo and peers and records announces.
type fakeTracker struct {
	info  *piece.Info
	peers []tracker.Peer

	mu        sync.Mutex
	announced []tracker.Announce
}

func (f *fakeTracker) MetaInfoAfter(ctx context.Context, src tracker.Source, known *piece.Info) (*piece.Info, error) {
	return f.MetaInfo(ctx, src, len(known.Pieces))
}

func (f *fakeTracker) MetaInfo(ctx context.Context, _ tracker.Source, have int) (*piece.Info, error) {
	if have < len(f.info.Pieces) {
		return f.info, nil
	}
	<-ctx.Done() // nothing more will be known
	return nil, ctx.Err()
}

func (f *fakeTracker) Peers(context.Context, digest.Digest, string) ([]tracker.Peer, error) {
	return f.peers, nil
}

func (f *fakeTracker) Announce(_ context.Context, a tracker.Announce) (time.Duration, error) {
	f.mu.Lock()
	f.announced = append(f.announced, a)
	f.mu.Unlock()
	return time.Second, nil
}

// errHang makes a scripted peer hold a request until it is cancelled.
var errHang = errors.New("hang")

// scripted is a Transport of peers that hold the whole blob and answer
// each piece request as answer says (nil: the piece's bytes), recording
// when, on the swarm's clock, each was asked.
type scripted struct {
	clk    clock.Clock
	data   []byte
	info   *piece.Info
	answer func(p peer.ID, n int) error
	// watched, if set, is called before a peer's bitfield is returned.
	watched func(p peer.ID)

	mu   sync.Mutex
	asks []ask
}

type ask struct {
	p  peer.ID
	n  int
	at time.Time
}

func (s *scripted) Connect(context.Context, peer.AddrInfo) error { return nil }

func (s *scripted) Follow(_ context.Context, p peer.ID, _ digest.Digest, count int, w p2p.Watcher) error {
	if s.watched != nil {
		s.watched(p)
	}
	bits := piece.NewBitfield(count)
	for n := range count {
		bits.Set(n)
	}
	w.Bits(bits)
	w.Ended() // a complete peer: Done at once
	return nil
}

func (s *scripted) Fetch(ctx context.Context, p peer.ID, _ digest.Digest, n int, _ cid.Cid, buf []byte) ([]byte, error) {
	s.mu.Lock()
	s.asks = append(s.asks, ask{p, n, s.clk.Now()})
	s.mu.Unlock()
	switch err := s.answer(p, n); {
	case errors.Is(err, errHang):
		<-ctx.Done()
		return buf, ctx.Err()
	case err != nil:
		return buf, err
	}
	off, length := s.info.Span(n)
	return append(buf[:0], s.data[off:off+length]...), nil
}

func (s *scripted) asked() []ask {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.asks)
}

// randomPeer is a handout entry with a real peer ID.
func randomPeer(t testing.TB, seeder bool) tracker.Peer {
	t.Helper()
	id, err := test.RandPeerID()
	if err != nil {
		t.Fatal(err)
	}
	return tracker.Peer{ID: id.String(), Addrs: []string{"/ip4/127.0.0.1/tcp/1"}, Seeder: seeder, Complete: true}
}
