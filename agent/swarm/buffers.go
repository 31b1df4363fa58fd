package swarm

import "sync"

// Buffers lends piece buffers: Get returns a slice of size bytes, Put takes
// it back. The simulator, which moves no bytes, lends one shared buffer.
type Buffers interface {
	Get(size int64) []byte
	Put(b []byte)
}

// WithBuffers sets where piece buffers come from (default: a free list of
// the swarm's own).
func WithBuffers(b Buffers) Option { return func(s *Swarm) { s.pool = b } }

func (s *Swarm) buffer(size int64) []byte {
	if s.pool != nil {
		return s.pool.Get(size)
	}
	return s.bufs.get(size)
}

func (s *Swarm) release(b []byte) {
	if s.pool != nil {
		s.pool.Put(b)
		return
	}
	s.bufs.put(b)
}

// maxFreeBuffers bounds the bytes of piece buffers kept for reuse.
const maxFreeBuffers = 64 << 20

// buffers is a free list of piece buffers. Not a sync.Pool: every GC cycle
// empties one, and a download allocating a fresh piece-sized buffer per
// piece faults in new pages and drives the GC for nothing.
type buffers struct {
	mu    sync.Mutex
	free  [][]byte
	bytes int64
}

func (p *buffers) get(size int64) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.free) - 1; i >= 0; i-- {
		if b := p.free[i]; int64(cap(b)) >= size {
			p.free = append(p.free[:i], p.free[i+1:]...)
			p.bytes -= int64(cap(b))
			return b[:size]
		}
	}
	return make([]byte, size)
}

func (p *buffers) put(b []byte) {
	if cap(b) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+int64(cap(b)) > maxFreeBuffers {
		return
	}
	p.free = append(p.free, b[:cap(b)])
	p.bytes += int64(cap(b))
}
