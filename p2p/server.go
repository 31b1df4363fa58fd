package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"
	"golang.org/x/time/rate"

	"github.com/shoal-dev/shoal/p2p/wire"
)

// chunk is the unit of paced reads and writes: large enough that a deadline
// and a limiter call per chunk cost nothing next to the bytes, small enough
// to keep a rate limit smooth.
const chunk = 256 << 10

// servePiece answers the PieceRequests of one stream, one after another,
// until the client closes it, stays idle for pieceIdleTimeout or a transfer
// fails.
func (h *Host) servePiece(s network.Stream) {
	if !h.enter() {
		s.Reset()
		return
	}
	defer h.leave()
	br := bufio.NewReaderSize(s, 64)
	_ = s.SetReadDeadline(time.Now().Add(h.cfg.RequestTimeout))
	for first := true; ; first = false {
		req, err := expect[wire.PieceRequest](wire.Read(br))
		switch {
		case err == nil:
		case !first && (errors.Is(err, io.EOF) || isTimeout(err)):
			// The client is done with the stream, or left it idle.
			s.Close()
			return
		default:
			h.broke(s, "reading piece request", err)
			return
		}
		if !first && !h.admits(s) {
			s.Reset() // dropped by the tracker since the stream opened
			return
		}
		if !h.answerPiece(s, req) {
			return
		}
		_ = s.SetReadDeadline(time.Now().Add(pieceIdleTimeout))
	}
}

// pieceIdleTimeout is how long a piece stream may wait for its next
// request; clients reuse a stream only while it has been idle for less than
// half of this. A download asks for pieces all the time, so short is
// enough, and it lets a seeder serving thousands of agents shed their
// streams (a goroutine and a 256 KiB window each) soon after a rollout.
const pieceIdleTimeout = 10 * time.Second

// answerPiece answers one request. It reports false when the stream was
// reset and must not carry another request.
func (h *Host) answerPiece(s network.Stream, req wire.PieceRequest) bool {
	p := s.Conn().RemotePeer()
	sent, err := h.gate().Serve(WithRequester(h.ctx, p), h.src, req.Digest, req.Index, func(rc io.Reader, size int64) (int64, error) {
		h.m.uploadsActive.Inc()
		defer h.m.uploadsActive.Dec()
		h.protectServing(p)
		defer h.unprotectServing(p)
		sent, err := h.upload(s, rc, size)
		h.m.uploadBytes.Add(float64(sent))
		if err != nil && !errors.Is(err, errBeforeHeader) {
			err = &uploadError{err}
		}
		return sent, err
	})
	h.m.uploads.WithLabelValues(resultOf(err)).Inc()
	h.log.Debug("piece served", "peer", p, "digest", req.Digest, "piece", req.Index, "result", resultOf(err))
	var ue *uploadError
	switch {
	case err == nil:
		return true
	case errors.As(err, &ue):
		// Part of the piece may be out: only a reset tells the client.
		h.log.Debug("upload failed", "peer", p, "digest", req.Digest, "piece", req.Index, "bytes", sent, "err", ue.err)
		s.Reset()
		return false
	case errors.Is(err, ErrNoPiece):
		return h.refusePiece(s, wire.StatusNoPiece)
	case errors.Is(err, ErrUnknownBlob):
		return h.refusePiece(s, wire.StatusUnknownBlob)
	case errors.Is(err, ErrRationed):
		return h.refusePiece(s, wire.StatusRationed)
	case errors.Is(err, ErrBusy):
		return h.refusePiece(s, wire.StatusBusy)
	default:
		h.log.Error("serving piece", "peer", p, "digest", req.Digest, "piece", req.Index, "err", err)
		return h.refusePiece(s, wire.StatusInternal)
	}
}

// uploadError marks a failure once the header may be out.
type uploadError struct{ err error }

func (e *uploadError) Error() string { return e.err.Error() }
func (e *uploadError) Unwrap() error { return e.err }

// UploadGate is the piece server's admission, in the order every upload
// takes: the source answers first (a piece it refuses or rations is refused
// at once), then one of MaxUploads slots is taken, waiting in line for up
// to UploadQueue behind at most MaxQueued others, then the bytes go out.
// The Host serves through one; the simulator runs the same gate over its
// simulated transfers.
type UploadGate struct {
	slots     chan struct{} // one token per upload under way
	queued    *atomic.Int64 // requests waiting for a slot
	wait      time.Duration
	maxQueued int64
	clock     clock.Clock
	done      <-chan struct{} // closing: waits end
}

// NewUploadGate returns a gate with cfg's slots and queue on clk; waits
// end when done closes.
func NewUploadGate(cfg Config, clk clock.Clock, done <-chan struct{}) *UploadGate {
	return &UploadGate{slots: make(chan struct{}, cfg.MaxUploads), queued: new(atomic.Int64), wait: cfg.UploadQueue, maxQueued: int64(cfg.MaxQueued), clock: clk, done: done}
}

func (h *Host) gate() *UploadGate {
	return &UploadGate{slots: h.uploads, queued: &h.queued, wait: h.cfg.UploadQueue, maxQueued: int64(h.cfg.MaxQueued), clock: h.clock, done: h.ctx.Done()}
}

// Serve answers one request for piece n of dgst from src: it opens the
// piece, takes a slot (ErrBusy if none comes in time) and calls send with
// the piece and its length, returning what send returns. Src's refusals
// (ErrNoPiece, ErrUnknownBlob, ErrRationed) come back as they are. The
// slot is given back before the piece is closed (a seeder's ration counts
// an upload as ended when its piece closes).
func (g *UploadGate) Serve(ctx context.Context, src Source, dgst digest.Digest, n int, send func(io.Reader, int64) (int64, error)) (int64, error) {
	rc, size, err := src.Piece(ctx, dgst, n)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	// A seeder has counted this upload against the piece's ration already;
	// if the wait runs out, its close starts the relax period as an upload
	// would, so the piece is not held back for long.
	if !g.take() {
		return 0, ErrBusy
	}
	defer func() { <-g.slots }()
	return send(rc, size)
}

// take takes one of the slots, waiting in line for up to the queue's wait
// when all are taken. It reports false when the line is full, the wait ran
// out or the gate is closing.
func (g *UploadGate) take() bool {
	select {
	case g.slots <- struct{}{}:
		return true
	default:
	}
	if g.wait <= 0 {
		return false
	}
	if g.queued.Add(1) > g.maxQueued {
		g.queued.Add(-1)
		return false
	}
	defer g.queued.Add(-1)
	t := g.clock.Timer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}: // blocked senders get the channel in turn
		return true
	case <-t.C:
		return false
	case <-g.done:
		return false
	}
}

type requesterKey struct{}

// WithRequester returns ctx carrying the peer a piece is served to, which
// the Source's Piece reads with Requester: a seeder spreads the first
// copies of its pieces over the peers asking for them.
func WithRequester(ctx context.Context, p peer.ID) context.Context {
	return context.WithValue(ctx, requesterKey{}, p)
}

// Requester returns the peer WithRequester put in ctx.
func Requester(ctx context.Context) (peer.ID, bool) {
	p, ok := ctx.Value(requesterKey{}).(peer.ID)
	return p, ok
}

// errBeforeHeader marks source failures that can still be answered with a status.
var errBeforeHeader = errors.New("source failed")

// upload sends the header and the size bytes of rc.
func (h *Host) upload(s network.Stream, rc io.Reader, size int64) (int64, error) {
	if size < 0 || size > wire.MaxPieceLength {
		return 0, fmt.Errorf("%w: piece of %d bytes", errBeforeHeader, size)
	}
	// The header goes out with the bytes that fill its TLS record.
	hdr, err := wire.Append(make([]byte, 0, 16<<10-64), wire.PieceHeader{Status: wire.StatusOK, Length: size})
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errBeforeHeader, err)
	}
	w := &pacedWriter{s: s, ctx: h.ctx, lim: h.upRate, stall: h.cfg.StallTimeout, left: size, head: hdr}
	if size == 0 {
		if err := w.flushHead(); err != nil {
			return 0, err
		}
	}
	// Sources that are io.WriterTo (bytes.Reader, os.File) skip the buffer.
	buf := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(buf)
	if _, err := io.CopyBuffer(w, rc, *buf); err != nil {
		return size - w.left, err
	}
	if w.left != 0 {
		return size - w.left, fmt.Errorf("source ended %d bytes short", w.left)
	}
	return size, nil
}

// refusePiece answers with a status and no bytes; the stream stays open for
// the next request unless the write failed.
func (h *Host) refusePiece(s network.Stream, st wire.Status) bool {
	_ = s.SetWriteDeadline(time.Now().Add(h.cfg.StallTimeout))
	if err := wire.Write(s, wire.PieceHeader{Status: st}); err != nil {
		s.Reset()
		return false
	}
	return true
}

// pacedWriter writes at most left bytes in chunks, each under the rate limit
// and a fresh stall deadline.
type pacedWriter struct {
	s     network.Stream
	ctx   context.Context
	lim   *rate.Limiter
	stall time.Duration
	left  int64
	head  []byte // the header, sent with the first bytes: one frame, not two
}

func (w *pacedWriter) flushHead() error {
	_ = w.s.SetWriteDeadline(time.Now().Add(w.stall))
	_, err := w.s.Write(w.head)
	w.head = nil
	return err
}

var errTooLong = errors.New("source gave more bytes than it announced")

func (w *pacedWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if w.left == 0 {
			return written, errTooLong
		}
		n := int(min(int64(len(p)), chunk, w.left))
		if w.head != nil {
			n = min(n, cap(w.head)-len(w.head))
		}
		if w.lim != nil {
			if err := w.lim.WaitN(w.ctx, n); err != nil {
				return written, err
			}
		}
		_ = w.s.SetWriteDeadline(time.Now().Add(w.stall))
		frame := p[:n]
		if w.head != nil {
			frame, w.head = append(w.head, frame...), nil
		}
		m, err := w.s.Write(frame)
		m = max(0, m-(len(frame)-n)) // header bytes are not piece bytes
		written += m
		w.left -= int64(m)
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// serveHave answers one WatchRequest and pushes Have messages until the
// blob is complete, the client goes away or the host closes.
func (h *Host) serveHave(s network.Stream) {
	if !h.enter() {
		s.Reset()
		return
	}
	defer h.leave()
	_ = s.SetReadDeadline(time.Now().Add(h.cfg.RequestTimeout))
	br := bufio.NewReaderSize(s, 64)
	req, err := expect[wire.WatchRequest](wire.Read(br))
	if err != nil {
		h.broke(s, "reading watch request", err)
		return
	}
	_ = s.SetReadDeadline(time.Time{})
	p := s.Conn().RemotePeer()
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	bf, ch, err := h.src.Watch(ctx, p, req.Digest)
	switch {
	case errors.Is(err, ErrUnknownBlob):
		h.refuseWatch(s, wire.StatusUnknownBlob)
		return
	case err != nil:
		h.log.Error("serving watch", "peer", p, "digest", req.Digest, "err", err)
		h.refuseWatch(s, wire.StatusInternal)
		return
	case bf.Len() != req.Pieces:
		h.log.Debug("watch for a different piece count", "peer", p, "digest", req.Digest, "want", req.Pieces, "have", bf.Len())
		h.refuseWatch(s, wire.StatusBadRequest)
		return
	}
	h.m.watchesServed.Inc()
	defer h.m.watchesServed.Dec()
	_ = s.SetWriteDeadline(time.Now().Add(h.cfg.StallTimeout))
	if err := wire.Write(s, wire.Bitfield{Status: wire.StatusOK, Bits: bf.Bytes()}); err != nil {
		s.Reset()
		return
	}
	// The client stays silent; its close or reset ends the subscription.
	if !h.enter() {
		s.Reset()
		return
	}
	go func() {
		defer h.leave()
		var b [1]byte
		if n, _ := br.Read(b[:]); n > 0 {
			h.broke(s, "watching", fmt.Errorf("%w: client sent data after its request", wire.ErrMalformed))
		}
		cancel()
	}()
	for n := range ch {
		if bf.Has(n) {
			continue
		}
		if !bf.Set(n) {
			h.log.Error("source announced a piece out of range", "digest", req.Digest, "piece", n, "pieces", bf.Len())
			continue
		}
		_ = s.SetWriteDeadline(time.Now().Add(h.cfg.StallTimeout))
		if err := wire.Write(s, wire.Have{Index: n}); err != nil {
			s.Reset()
			return
		}
	}
	if ctx.Err() != nil {
		s.Reset()
		return
	}
	_ = s.SetWriteDeadline(time.Now().Add(h.cfg.StallTimeout))
	if err := wire.Write(s, wire.Done{}); err != nil {
		s.Reset()
		return
	}
	s.Close()
}

func (h *Host) refuseWatch(s network.Stream, st wire.Status) {
	_ = s.SetWriteDeadline(time.Now().Add(h.cfg.StallTimeout))
	if err := wire.Write(s, wire.Bitfield{Status: st}); err != nil {
		s.Reset()
		return
	}
	s.Close()
}

// expect narrows a decoded message to the type the protocol calls for.
func expect[T wire.Message](m wire.Message, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("%w: unexpected message type %d", wire.ErrMalformed, m.Type())
	}
	return t, nil
}

// isTimeout reports a deadline that ran out.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isProtocolError tells a peer's breach of the protocol from I/O failures.
func isProtocolError(err error) bool {
	return errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrTooLarge)
}

// broke resets a stream that failed while reading from the peer. A breach of
// the protocol is logged and counted; I/O errors, which are not the peer's
// fault, only at debug level.
func (h *Host) broke(s network.Stream, what string, err error) {
	s.Reset()
	if !isProtocolError(err) {
		h.log.Debug(what, "peer", s.Conn().RemotePeer(), "protocol", s.Protocol(), "err", err)
		return
	}
	h.m.protocolErrors.Inc()
	h.log.Warn("peer broke the protocol", "peer", s.Conn().RemotePeer(), "protocol", s.Protocol(), "during", what, "err", err)
}

// resultOf names an outcome for the result label.
func resultOf(err error) string {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, ErrNoPiece):
		return resultNoPiece
	case errors.Is(err, ErrUnknownBlob):
		return resultUnknownBlob
	case errors.Is(err, ErrBusy):
		return resultBusy
	case errors.Is(err, ErrRationed):
		return resultRationed
	case errors.Is(err, ErrBadPiece):
		return resultBadPiece
	}
	return resultError
}
