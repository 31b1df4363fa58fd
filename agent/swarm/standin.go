package swarm

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/p2p/piece"
)

// standIn wraps the writer a download hands to the origin fallback: as the
// origin's bytes complete each piece, in order, the node checks the piece
// against its CID (or names it, past the CIDs known, as the seeder does)
// and announces it, so that peers still downloading fetch it from this
// node and learn its CID over /shoal/meta.
type standIn struct {
	store.Writer
	s    *Swarm
	b    *blob
	dgst digest.Digest
	mu   sync.Mutex
	next int // the first piece not looked at yet
}

func (s *Swarm) standIn(dgst digest.Digest, w store.Writer) store.Writer {
	b := s.lookup(dgst)
	if b == nil {
		return w
	}
	return &standIn{Writer: w, s: s, b: b, dgst: dgst}
}

func (w *standIn) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.Writer.WriteAt(p, off)
	if n > 0 {
		w.publish()
	}
	return n, err
}

func (w *standIn) publish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	missing := w.Writer.Missing()
	info, _ := w.b.known()
	if info == nil {
		return
	}
	for ; w.next < info.Count(); w.next++ {
		n := w.next
		off, length := info.Span(n)
		for _, m := range missing {
			if m.Off < off+length && off < m.Off+m.Len {
				return // not all written yet
			}
		}
		w.b.mu.Lock()
		held := w.b.have.Has(n)
		w.b.mu.Unlock()
		if held {
			continue
		}
		buf := w.s.buffer(length)
		if _, err := w.Writer.ReadAt(buf, off); err != nil {
			w.s.release(buf)
			return
		}
		c := piece.Sum(buf)
		w.s.release(buf)
		switch {
		case n < len(info.Pieces):
			if !info.Pieces[n].Equals(c) {
				return // the digest check will tell
			}
		case n == len(info.Pieces):
			next := *info
			next.Pieces = append(slices.Clone(info.Pieces), c)
			info = &next
			w.b.setInfo(info)
		default:
			return
		}
		w.b.markHave(n)
	}
}

// stallAfter is how long this session goes without progress before it
// turns to the origin: the stall timeout and its standBy; a quarter of the
// stall timeout (the standBy unchanged) while it follows no seeder (gone
// with the tracker, or never handed out) and lacks pieces that no peer it
// follows holds. Nobody is left to bring those in then, and every second
// waited is a second of the rollout. The standBy keeps its length: the
// first node's origin fetch has to land before the next one's starts.
func (ss *session) stallAfter() time.Duration {
	base := ss.s.cfg.StallTimeout
	if !ss.followsSeeder() && len(ss.lacking()) > 0 {
		base /= 4
	}
	return base + ss.standBy()
}

func (ss *session) followsSeeder() bool {
	for _, r := range ss.peers {
		if r.seeder {
			return true
		}
	}
	return false
}

// standBy is how much longer than the stall timeout this session waits
// before it falls back to the origin: nothing for the first of the peers
// it follows and itself, ranked by a hash of their IDs with the digest, a
// half stall timeout more for each next one. Peers stalling at once then
// go to the origin one after the other, and the first one's pieces, which
// it names and announces as they arrive (standIn), keep the others going.
func (ss *session) standBy() time.Duration {
	key := func(id string) [32]byte { return sha256.Sum256([]byte(string(ss.src.Digest) + id)) }
	mine := key(ss.s.self.ID)
	rank := 0
	for id, r := range ss.peers {
		if r.seeder {
			continue
		}
		if k := key(id.String()); bytes.Compare(k[:], mine[:]) < 0 {
			rank++
		}
	}
	return time.Duration(rank) * ss.s.cfg.StallTimeout / 2
}
