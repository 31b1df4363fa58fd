package wire

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
)

// Limits on what a peer may send.
const (
	// MaxMessage bounds every frame but a Bitfield.
	MaxMessage = 64 << 10
	// MaxBitfieldMessage bounds a Bitfield frame: type, status and one bit
	// per piece of the largest blob.
	MaxBitfieldMessage = 2 + piece.MaxPieces/8
	// MaxPieceLength bounds the raw bytes after a PieceHeader.
	MaxPieceLength = piece.MaxSize

	// MaxMetaPieces bounds the piece CIDs of one Meta: 128 KiB, every
	// piece of a 64 GiB blob cut by the default policy. A client asks
	// again from where an answer stopped for more.
	MaxMetaPieces = 4096
	// MaxMetaPeers bounds the peers of one Meta; MaxPeerID, MaxPeerAddrs
	// and MaxAddr bound each of them (a peer ID's and a multiaddr's
	// binary forms).
	MaxMetaPeers = 32
	MaxPeerID    = 64
	MaxPeerAddrs = 8
	MaxAddr      = 255
	// MaxMetaMessage bounds a Meta frame: type, status, four uvarints,
	// the CIDs' sha256 sums and the peers with their length prefixes.
	MaxMetaMessage = 2 + 4*binary.MaxVarintLen64 + 32*MaxMetaPieces +
		1 + MaxMetaPeers*(1+MaxPeerID+1+MaxPeerAddrs*(2+MaxAddr))
	// maxFrame bounds every frame, before its type is known.
	maxFrame = max(MaxMessage, MaxBitfieldMessage, MaxMetaMessage)
	// maxBlobSize bounds a Meta's blob size: MaxPieces of MaxSize.
	maxBlobSize = piece.MaxPieces * piece.MaxSize
)

var (
	ErrMalformed = errors.New("wire: malformed message")
	ErrTooLarge  = errors.New("wire: message too large")
)

// Type identifies a message.
type Type byte

const (
	TypePieceRequest Type = 1
	TypePieceHeader  Type = 2
	TypeWatchRequest Type = 3
	TypeBitfield     Type = 4
	TypeHave         Type = 5
	TypeDone         Type = 6
	TypeMetaRequest  Type = 7
	TypeMeta         Type = 8
)

// Status is a server's answer to a request.
type Status byte

const (
	StatusOK          Status = 0
	StatusNoPiece     Status = 1
	StatusBusy        Status = 2
	StatusUnknownBlob Status = 3
	StatusBadRequest  Status = 4
	StatusInternal    Status = 5
	// StatusRationed: the server holds the piece but gives it to a few
	// peers only (a seeder spreading new pieces); get it from one of them.
	// Other pieces may still be asked for.
	StatusRationed Status = 6
	maxStatus             = StatusRationed
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusNoPiece:
		return "no piece"
	case StatusBusy:
		return "busy"
	case StatusUnknownBlob:
		return "unknown blob"
	case StatusBadRequest:
		return "bad request"
	case StatusInternal:
		return "internal error"
	case StatusRationed:
		return "rationed"
	}
	return fmt.Sprintf("status(%d)", byte(s))
}

// Message is one of the types below. The unexported method seals the set.
type Message interface {
	Type() Type
	appendPayload(b []byte) ([]byte, error)
}

// PieceRequest asks for piece Index of the blob Digest.
type PieceRequest struct {
	Digest digest.Digest
	Index  int
}

// PieceHeader answers a PieceRequest; with StatusOK, Length raw bytes follow.
type PieceHeader struct {
	Status Status
	Length int64
}

// WatchRequest subscribes to the pieces of Digest, a blob of Pieces pieces.
type WatchRequest struct {
	Digest digest.Digest
	Pieces int
}

// Bitfield answers a WatchRequest: the pieces held now (piece.Bitfield
// bytes), present only with StatusOK.
type Bitfield struct {
	Status Status
	Bits   []byte
}

// Have announces one more verified piece.
type Have struct{ Index int }

// Done ends a subscription: the server holds the whole blob.
type Done struct{}

func (PieceRequest) Type() Type { return TypePieceRequest }
func (PieceHeader) Type() Type  { return TypePieceHeader }
func (WatchRequest) Type() Type { return TypeWatchRequest }
func (Bitfield) Type() Type     { return TypeBitfield }
func (Have) Type() Type         { return TypeHave }
func (Done) Type() Type         { return TypeDone }
func (MetaRequest) Type() Type  { return TypeMetaRequest }
func (Meta) Type() Type         { return TypeMeta }

func (m PieceRequest) appendPayload(b []byte) ([]byte, error) {
	if m.Index < 0 || m.Index >= piece.MaxPieces {
		return nil, fmt.Errorf("%w: piece index %d", ErrMalformed, m.Index)
	}
	b, err := appendDigest(b, m.Digest)
	return binary.AppendUvarint(b, uint64(m.Index)), err
}

func (m PieceHeader) appendPayload(b []byte) ([]byte, error) {
	if m.Status > maxStatus || m.Length < 0 || m.Length > MaxPieceLength || (m.Status != StatusOK && m.Length != 0) {
		return nil, fmt.Errorf("%w: piece header %s length %d", ErrMalformed, m.Status, m.Length)
	}
	return binary.AppendUvarint(append(b, byte(m.Status)), uint64(m.Length)), nil
}

func (m WatchRequest) appendPayload(b []byte) ([]byte, error) {
	if m.Pieces < 1 || m.Pieces > piece.MaxPieces {
		return nil, fmt.Errorf("%w: %d pieces", ErrMalformed, m.Pieces)
	}
	b, err := appendDigest(b, m.Digest)
	return binary.AppendUvarint(b, uint64(m.Pieces)), err
}

func (m Bitfield) appendPayload(b []byte) ([]byte, error) {
	if m.Status > maxStatus || len(m.Bits) > piece.MaxPieces/8 || (m.Status != StatusOK && len(m.Bits) != 0) {
		return nil, fmt.Errorf("%w: bitfield %s of %d bytes", ErrMalformed, m.Status, len(m.Bits))
	}
	return append(append(b, byte(m.Status)), m.Bits...), nil
}

func (m Have) appendPayload(b []byte) ([]byte, error) {
	if m.Index < 0 || m.Index >= piece.MaxPieces {
		return nil, fmt.Errorf("%w: piece index %d", ErrMalformed, m.Index)
	}
	return binary.AppendUvarint(b, uint64(m.Index)), nil
}

func (Done) appendPayload(b []byte) ([]byte, error) { return b, nil }

func appendDigest(b []byte, d digest.Digest) ([]byte, error) {
	if d.Validate() != nil || d.Algorithm() != digest.SHA256 {
		return b, fmt.Errorf("%w: digest %q is not a sha256 digest", ErrMalformed, d)
	}
	var raw [32]byte
	if _, err := hex.Decode(raw[:], []byte(d.Encoded())); err != nil {
		return b, fmt.Errorf("%w: digest %q: %v", ErrMalformed, d, err)
	}
	return append(b, raw[:]...), nil
}

// Append appends m's frame to dst.
func Append(dst []byte, m Message) ([]byte, error) {
	var scratch [48]byte
	body, err := m.appendPayload(append(scratch[:0], byte(m.Type())))
	if err != nil {
		return dst, err
	}
	dst = binary.AppendUvarint(dst, uint64(len(body)))
	return append(dst, body...), nil
}

// Write writes m's frame to w in one Write call.
func Write(w io.Writer, m Message) error {
	b, err := Append(nil, m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Decode decodes the first frame of b and returns the bytes after it.
func Decode(b []byte) (Message, []byte, error) {
	length, n, err := uvarint(b)
	if err != nil {
		return nil, nil, err
	}
	b = b[n:]
	if err := checkLength(length, b); err != nil {
		return nil, nil, err
	}
	if uint64(len(b)) < length {
		return nil, nil, fmt.Errorf("%w: frame of %d bytes, %d present", ErrMalformed, length, len(b))
	}
	m, err := decodeBody(Type(b[0]), b[1:length])
	if err != nil {
		return nil, nil, err
	}
	return m, b[length:], nil
}

// Reader is what Read needs; a *bufio.Reader is one.
type Reader interface {
	io.Reader
	io.ByteReader
}

// Read reads one frame. It returns io.EOF only if r ends before the frame
// starts.
func Read(r Reader) (Message, error) {
	length, err := readUvarint(r)
	if err != nil {
		return nil, err
	}
	if err := checkLength(length, nil); err != nil && !errors.Is(err, errTruncated) {
		return nil, err
	}
	typ, err := r.ReadByte()
	if err != nil {
		return nil, unexpected(err)
	}
	if err := checkLength(length, []byte{typ}); err != nil {
		return nil, err
	}
	// The length is bounded above, so this allocation is too.
	body := make([]byte, length-1)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, unexpected(err)
	}
	return decodeBody(Type(typ), body)
}

var errTruncated = fmt.Errorf("%w: truncated frame", ErrMalformed)

// checkLength validates a frame length; the limit depends on the type, the
// first byte of rest, and errTruncated says it is missing.
func checkLength(length uint64, rest []byte) error {
	switch {
	case length == 0:
		return fmt.Errorf("%w: empty frame", ErrMalformed)
	case length > maxFrame:
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, length)
	case len(rest) == 0:
		return errTruncated
	case length > limitOf(Type(rest[0])):
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, length)
	}
	return nil
}

// limitOf is the largest frame of type t.
func limitOf(t Type) uint64 {
	switch t {
	case TypeBitfield:
		return MaxBitfieldMessage
	case TypeMeta:
		return MaxMetaMessage
	}
	return MaxMessage
}

func decodeBody(t Type, p []byte) (Message, error) {
	var (
		m   Message
		err error
	)
	switch t {
	case TypePieceRequest:
		var r PieceRequest
		r.Digest, p, err = digestOf(p)
		if err == nil {
			r.Index, p, err = indexOf(p, piece.MaxPieces-1)
		}
		m = r
	case TypePieceHeader:
		var h PieceHeader
		h.Status, p, err = statusOf(p)
		var n int
		if err == nil {
			n, p, err = indexOf(p, MaxPieceLength)
			h.Length = int64(n)
		}
		if err == nil && h.Status != StatusOK && h.Length != 0 {
			err = fmt.Errorf("%w: refusal %s carries %d bytes", ErrMalformed, h.Status, h.Length)
		}
		m = h
	case TypeWatchRequest:
		var w WatchRequest
		w.Digest, p, err = digestOf(p)
		if err == nil {
			w.Pieces, p, err = indexOf(p, piece.MaxPieces)
		}
		if err == nil && w.Pieces == 0 {
			err = fmt.Errorf("%w: zero pieces", ErrMalformed)
		}
		m = w
	case TypeBitfield:
		var b Bitfield
		b.Status, p, err = statusOf(p)
		if err == nil && b.Status != StatusOK && len(p) != 0 {
			err = fmt.Errorf("%w: refusal %s carries a bitfield", ErrMalformed, b.Status)
		}
		if err == nil && len(p) > 0 {
			b.Bits, p = p, nil
		}
		m = b
	case TypeHave:
		var h Have
		h.Index, p, err = indexOf(p, piece.MaxPieces-1)
		m = h
	case TypeDone:
		m = Done{}
	case TypeMetaRequest:
		var r MetaRequest
		r.Digest, p, err = digestOf(p)
		if err == nil {
			r.From, p, err = indexOf(p, piece.MaxPieces)
		}
		m = r
	case TypeMeta:
		m, p, err = decodeMeta(p)
	default:
		return nil, fmt.Errorf("%w: unknown type %d", ErrMalformed, t)
	}
	if err != nil {
		return nil, err
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after type %d", ErrMalformed, len(p), t)
	}
	return m, nil
}

func digestOf(p []byte) (digest.Digest, []byte, error) {
	if len(p) < 32 {
		return "", nil, fmt.Errorf("%w: short digest", ErrMalformed)
	}
	return digest.NewDigestFromBytes(digest.SHA256, p[:32]), p[32:], nil
}

func statusOf(p []byte) (Status, []byte, error) {
	if len(p) < 1 || Status(p[0]) > maxStatus {
		return 0, nil, fmt.Errorf("%w: bad status", ErrMalformed)
	}
	return Status(p[0]), p[1:], nil
}

func indexOf(p []byte, max int) (int, []byte, error) {
	v, n, err := uvarint(p)
	if err != nil {
		return 0, nil, err
	}
	if v > uint64(max) {
		return 0, nil, fmt.Errorf("%w: value %d above %d", ErrMalformed, v, max)
	}
	return int(v), p[n:], nil
}

// uvarint decodes a minimally encoded uvarint.
func uvarint(b []byte) (uint64, int, error) {
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, 0, fmt.Errorf("%w: truncated varint", ErrMalformed)
	case n < 0:
		return 0, 0, fmt.Errorf("%w: varint overflows", ErrMalformed)
	case n > 1 && b[n-1] == 0:
		return 0, 0, fmt.Errorf("%w: varint not minimally encoded", ErrMalformed)
	}
	return v, n, nil
}

func readUvarint(r io.ByteReader) (uint64, error) {
	var buf [binary.MaxVarintLen64]byte
	for i := range buf {
		c, err := r.ReadByte()
		if err != nil {
			if i == 0 {
				return 0, err // io.EOF: a clean end between frames
			}
			return 0, unexpected(err)
		}
		buf[i] = c
		if c < 0x80 {
			v, _, err := uvarint(buf[:i+1])
			return v, err
		}
	}
	return 0, fmt.Errorf("%w: varint overflows", ErrMalformed)
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
