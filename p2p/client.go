package p2p

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multihash"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/p2p/wire"
)

// Fetch asks p for piece n of dgst, reads it into buf (grown if needed) and
// checks it against want. It returns the piece bytes, or an error wrapping
// ErrNoPiece, ErrBusy, ErrRationed or ErrUnknownBlob when the peer refuses, ErrBadPiece
// when the bytes do not match want (drop the peer for this blob),
// ErrProtocol when the peer breaks the protocol. The stream is reset on
// any error; ctx bounds the whole fetch.
func (h *Host) Fetch(ctx context.Context, p peer.ID, dgst digest.Digest, n int, want cid.Cid, buf []byte) ([]byte, error) {
	if !piece.IsCID(want) {
		return buf, fmt.Errorf("p2p: fetch piece %d: %s is not a raw sha2-256 CIDv1", n, want)
	}
	if !h.enter() {
		return buf, ErrClosed
	}
	defer h.leave()
	start := time.Now()
	out, err := h.fetch(ctx, p, dgst, n, want, buf)
	h.m.fetches.WithLabelValues(resultOf(err)).Inc()
	if err != nil {
		return out, fmt.Errorf("p2p: fetch %s piece %d from %s: %w", dgst, n, p, err)
	}
	h.m.fetchSeconds.Observe(time.Since(start).Seconds())
	return out, nil
}

func (h *Host) fetch(ctx context.Context, p peer.ID, dgst digest.Digest, n int, want cid.Cid, buf []byte) ([]byte, error) {
	frame, err := wire.Append(nil, wire.PieceRequest{Digest: dgst, Index: n})
	if err != nil {
		return buf, err
	}
	for {
		ps := h.streams.get(p)
		reused := ps != nil
		if !reused {
			s, err := h.host.NewStream(ctx, p, PieceProtocol)
			if err != nil {
				return buf, err
			}
			// Small, so that the piece bytes mostly bypass it and land in buf.
			ps = &pieceStream{s: s, br: bufio.NewReaderSize(s, 64)}
		}
		var ex exchange
		buf, ex, err = h.fetchOn(ctx, ps, frame, want, buf)
		if ex == exchangeDone {
			h.streams.put(ps)
		} else {
			ps.s.Reset()
		}
		if err == nil {
			return buf, nil
		}
		// A stream that sat idle may have been closed by the server in the
		// meantime: that costs a retry on another one, not the request.
		if reused && ex == exchangeUnanswered && ctx.Err() == nil {
			continue
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return buf, err
	}
}

// exchange is how far one request on a stream got.
type exchange int

const (
	exchangeUnanswered exchange = iota // no header came back
	exchangeBroken                     // the stream is in an unknown state
	exchangeDone                       // answered in full: the stream can carry the next request
)

// fetchOn sends one request on ps and reads the answer. A refusal ends the
// exchange cleanly, with the refusal as the error.
func (h *Host) fetchOn(ctx context.Context, ps *pieceStream, frame []byte, want cid.Cid, buf []byte) ([]byte, exchange, error) {
	s, br := ps.s, ps.br
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	// done ends an exchange that left the stream clean, unless ctx already
	// started resetting it.
	done := func(err error) ([]byte, exchange, error) {
		if !stop() {
			return buf, exchangeBroken, cmp.Or(err, ctx.Err())
		}
		return buf, exchangeDone, err
	}
	defer stop()
	_ = s.SetWriteDeadline(time.Now().Add(h.cfg.StallTimeout))
	if _, err := s.Write(frame); err != nil {
		return buf, exchangeUnanswered, err
	}
	_ = s.SetReadDeadline(time.Now().Add(h.cfg.StallTimeout))
	hdr, err := expect[wire.PieceHeader](wire.Read(br))
	if err != nil {
		return buf, exchangeUnanswered, h.readError(s, err)
	}
	if err := statusError(hdr.Status); err != nil {
		return done(err) // a refusal carries no bytes
	}
	if int64(cap(buf)) < hdr.Length {
		buf = make([]byte, hdr.Length)
	}
	buf = buf[:hdr.Length]
	// Hashing each chunk as it lands overlaps the hash with the transfer
	// and reads bytes still in cache.
	sum := sha256.New()
	for off := 0; off < len(buf); {
		end := min(off+chunk, len(buf))
		if h.downRate != nil {
			if err := h.downRate.WaitN(ctx, end-off); err != nil {
				return buf, exchangeBroken, err
			}
		}
		_ = s.SetReadDeadline(time.Now().Add(h.cfg.StallTimeout))
		got, err := io.ReadFull(br, buf[off:end])
		h.m.downloadBytes.Add(float64(got))
		if err != nil {
			return buf, exchangeBroken, err
		}
		sum.Write(buf[off:end])
		off = end
	}
	// A piece that fails its hash may be the peer's lie or a broken stream:
	// either way the stream goes.
	if err := verify(want, sum.Sum(nil)); err != nil {
		return buf, exchangeBroken, err
	}
	return done(nil)
}

// verify is piece.Verify for a sum computed along the way.
func verify(want cid.Cid, sum []byte) error {
	mh, err := multihash.Encode(sum, multihash.SHA2_256)
	if err != nil {
		return err
	}
	if !cid.NewCidV1(cid.Raw, mh).Equals(want) {
		return fmt.Errorf("%w: got %s, want %s", ErrBadPiece, cid.NewCidV1(cid.Raw, mh), want)
	}
	return nil
}

// readError turns a failure to read a message from the peer into an error
// for the caller, logging and counting protocol breaches.
func (h *Host) readError(s network.Stream, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if !isProtocolError(err) {
		return err
	}
	h.m.protocolErrors.Inc()
	h.log.Warn("peer broke the protocol", "peer", s.Conn().RemotePeer(), "protocol", s.Protocol(), "err", err)
	return fmt.Errorf("%w: %w", ErrProtocol, err)
}

func statusError(st wire.Status) error {
	switch st {
	case wire.StatusOK:
		return nil
	case wire.StatusNoPiece:
		return ErrNoPiece
	case wire.StatusBusy:
		return ErrBusy
	case wire.StatusRationed:
		return ErrRationed
	case wire.StatusUnknownBlob:
		return ErrUnknownBlob
	}
	return fmt.Errorf("%w: %s", ErrRemote, st)
}

// Watcher hears one watch of a peer's pieces, in order and one call at a
// time: Bits with the pieces the peer holds when the watch opens, Have
// with each piece it announces later (each once), then Ended once when the
// watch is over. A watcher may block, which holds up only its own watch.
type Watcher interface {
	Bits(bits *piece.Bitfield)
	Have(n int)
	Ended()
}

// Follow subscribes w to p's pieces of dgst, a blob of pieces pieces: it
// calls w.Bits with the pieces p holds now before it returns nil, then,
// from a goroutine of the stream's own, w.Have with each piece p announces
// later, and when p says it holds the whole blob the pieces it left
// unannounced; w.Ended follows when p is done, the stream dies or ctx ends.
// On an error w hears nothing. Refusals wrap ErrUnknownBlob or ErrRemote.
func (h *Host) Follow(ctx context.Context, p peer.ID, dgst digest.Digest, pieces int, w Watcher) error {
	frame, err := wire.Append(nil, wire.WatchRequest{Digest: dgst, Pieces: pieces})
	if err != nil {
		return fmt.Errorf("p2p: watch %s on %s: %w", dgst, p, err)
	}
	if !h.enter() {
		return ErrClosed
	}
	if err := h.watch(ctx, p, frame, pieces, w); err != nil {
		h.leave()
		return fmt.Errorf("p2p: watch %s on %s: %w", dgst, p, err)
	}
	return nil
}

// Watch is Follow with the pieces p announces delivered on a channel,
// closed when the watch ends.
func (h *Host) Watch(ctx context.Context, p peer.ID, dgst digest.Digest, pieces int) (*piece.Bitfield, <-chan int, error) {
	c := &chanWatcher{ch: make(chan int, max(pieces, 0))}
	if err := h.Follow(ctx, p, dgst, pieces, c); err != nil {
		return nil, nil, err
	}
	return c.bits, c.ch, nil
}

// chanWatcher is Watch's Watcher. Its channel has room for every piece: a
// watch announces each piece once.
type chanWatcher struct {
	bits *piece.Bitfield
	ch   chan int
}

func (c *chanWatcher) Bits(bits *piece.Bitfield) { c.bits = bits }
func (c *chanWatcher) Have(n int)                { c.ch <- n }
func (c *chanWatcher) Ended()                    { close(c.ch) }

// watch opens the subscription; on success the goroutine it starts inherits
// the caller's enter.
func (h *Host) watch(ctx context.Context, p peer.ID, frame []byte, pieces int, w Watcher) (err error) {
	s, err := h.host.NewStream(ctx, p, HaveProtocol)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer func() {
		if err != nil {
			stop()
			s.Reset()
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%w)", ctx.Err(), err)
			}
		}
	}()
	if _, err := s.Write(frame); err != nil {
		return err
	}
	_ = s.SetReadDeadline(time.Now().Add(h.cfg.StallTimeout))
	br := bufio.NewReader(s)
	msg, err := expect[wire.Bitfield](wire.Read(br))
	if err != nil {
		return h.readError(s, err)
	}
	if err := statusError(msg.Status); err != nil {
		return err
	}
	bf, err := piece.ParseBitfield(msg.Bits, pieces)
	if err != nil {
		return h.readError(s, fmt.Errorf("%w: %w", wire.ErrMalformed, err))
	}
	seen, _ := piece.ParseBitfield(msg.Bits, pieces)
	// Announcements may be far apart (the peer may itself be downloading);
	// a dead peer is caught by yamux keepalives instead.
	_ = s.SetReadDeadline(time.Time{})
	w.Bits(bf)
	go h.follow(ctx, s, br, seen, w, stop)
	return nil
}

// follow relays Have messages to w until Done, an error or ctx's end.
func (h *Host) follow(ctx context.Context, s network.Stream, br *bufio.Reader, seen *piece.Bitfield, w Watcher, stop func() bool) {
	defer h.leave()
	defer w.Ended()
	defer stop()
	for {
		m, err := wire.Read(br)
		if err != nil {
			if ctx.Err() == nil {
				h.readError(s, err)
			}
			s.Reset()
			return
		}
		switch m := m.(type) {
		case wire.Have:
			if m.Index >= seen.Len() {
				h.readError(s, fmt.Errorf("%w: have %d of %d pieces", wire.ErrMalformed, m.Index, seen.Len()))
				s.Reset()
				return
			}
			if seen.Has(m.Index) {
				continue
			}
			seen.Set(m.Index)
			w.Have(m.Index) // once ctx ends, the reset stream fails the next read
		case wire.Done:
			s.Close()
			// The peer holds the whole blob, also the pieces it did not
			// announce because we had announced them to it.
			for i := range seen.Len() {
				if ctx.Err() != nil {
					return
				}
				if !seen.Has(i) {
					w.Have(i)
				}
			}
			return
		default:
			h.readError(s, fmt.Errorf("%w: unexpected message type %d", wire.ErrMalformed, m.Type()))
			s.Reset()
			return
		}
	}
}
