package swarm

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
)

// memStore is a Store of committed blobs held in memory.
type memStore struct {
	mu    sync.Mutex
	blobs map[digest.Digest][]byte
}

var _ Store = (*memStore)(nil)

func newMemStore() *memStore { return &memStore{blobs: make(map[digest.Digest][]byte)} }

func (m *memStore) put(data []byte) digest.Digest {
	d := digest.FromBytes(data)
	m.mu.Lock()
	m.blobs[d] = data
	m.mu.Unlock()
	return d
}

func (m *memStore) remove(d digest.Digest) {
	m.mu.Lock()
	delete(m.blobs, d)
	m.mu.Unlock()
}

func (m *memStore) Open(_ context.Context, d digest.Digest) (store.Reader, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	data, ok := m.blobs[d]
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
