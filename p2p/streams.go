package p2p

import (
	"bufio"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// maxIdleStreams bounds the idle piece streams kept per peer: as many as a
// client has requests in flight to one peer across its downloads.
const maxIdleStreams = 16

// pieceStream is a client's piece stream with its reader, kept between
// requests: a stream that is reused skips yamux's open and close frames and
// multistream's negotiation, and keeps the receive window it has grown to.
type pieceStream struct {
	s     network.Stream
	br    *bufio.Reader
	since time.Time // idle since
}

// streamPool holds idle piece streams per peer.
type streamPool struct {
	mu   sync.Mutex
	idle map[peer.ID][]*pieceStream
}

// get returns the most recently used idle stream to p that the server will
// not have timed out yet, or nil. Older ones are closed.
func (sp *streamPool) get(p peer.ID) *pieceStream {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for l := sp.idle[p]; len(l) > 0; l = sp.idle[p] {
		ps := l[len(l)-1]
		sp.idle[p] = l[:len(l)-1]
		if len(sp.idle[p]) == 0 {
			delete(sp.idle, p)
		}
		if time.Since(ps.since) < pieceIdleTimeout/2 && !ps.s.Conn().IsClosed() {
			return ps
		}
		ps.s.Close()
	}
	return nil
}

// put keeps ps for the next request to its peer, or closes it when enough
// are idle or the pool is closed.
func (sp *streamPool) put(ps *pieceStream) {
	p := ps.s.Conn().RemotePeer()
	ps.since = time.Now()
	sp.mu.Lock()
	if sp.idle == nil || len(sp.idle[p]) >= maxIdleStreams {
		sp.mu.Unlock()
		ps.s.Close()
		return
	}
	sp.idle[p] = append(sp.idle[p], ps)
	sp.mu.Unlock()
}

// drop closes the idle streams to p, e.g. when its connection went away.
func (sp *streamPool) drop(p peer.ID) {
	sp.mu.Lock()
	l := sp.idle[p]
	delete(sp.idle, p)
	sp.mu.Unlock()
	for _, ps := range l {
		ps.s.Close()
	}
}

// close closes every idle stream; later puts close theirs at once.
func (sp *streamPool) close() {
	sp.mu.Lock()
	idle := sp.idle
	sp.idle = nil
	sp.mu.Unlock()
	for _, l := range idle {
		for _, ps := range l {
			ps.s.Close()
		}
	}
}
