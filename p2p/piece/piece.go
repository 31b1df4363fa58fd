package piece

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/bits"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	"github.com/opencontainers/go-digest"
)

// Policy numbers the piece size policy below (SizeFor). Nodes of two
// policies cut the same blob differently, piece n of one is not piece n of
// the other, so they must never exchange pieces: the p2p protocol IDs carry
// it as their major version and the tracker's API as the "pieces" field and
// parameter. Policy 1 cut blobs of up to 500 MiB in 1 MiB pieces.
const Policy = 2

// Piece size policy: about size ÷ TargetCount, a power of two, clamped to
// [MinSize, MaxSize].
const (
	MinSize     = 256 << 10
	MaxSize     = 16 << 20
	TargetCount = 500
	// MaxPieces bounds the piece list a decoder accepts (a 256 GiB blob at
	// the smallest piece size).
	MaxPieces = 1 << 20
)

var (
	ErrMismatch  = errors.New("piece: content does not match its CID")
	ErrInvalid   = errors.New("piece: invalid metainfo")
	ErrNotSHA256 = errors.New("piece: only sha256 digests are supported")
)

// SizeFor returns the piece size for a blob of the given size.
func SizeFor(blobSize int64) int64 {
	want := blobSize / TargetCount
	if want <= MinSize {
		return MinSize
	}
	p := int64(1) << bits.Len64(uint64(want-1))
	return min(p, MaxSize)
}

// Count returns how many pieces a blob of size has with pieceSize.
func Count(size, pieceSize int64) int {
	if size <= 0 || pieceSize <= 0 {
		return 0
	}
	return int((size + pieceSize - 1) / pieceSize)
}

// Sum names data: CIDv1, raw codec, sha2-256.
func Sum(data []byte) cid.Cid {
	h := sha256.Sum256(data)
	return fromSHA256(h[:])
}

func fromSHA256(sum []byte) cid.Cid {
	mh, err := multihash.Encode(sum, multihash.SHA2_256)
	if err != nil {
		panic(err) // unreachable: sha2-256 is a known code and sum is 32 bytes
	}
	return cid.NewCidV1(cid.Raw, mh)
}

// IsCID reports whether c has the form of a piece's name, as Sum makes it:
// CIDv1, raw codec, a full-length sha2-256 multihash.
func IsCID(c cid.Cid) bool { return c.Prefix() == rawSHA256 }

var rawSHA256 = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: multihash.SHA2_256, MhLength: sha256.Size}

// Verify checks that data is the content named by c.
func Verify(c cid.Cid, data []byte) error {
	if !Sum(data).Equals(c) {
		return fmt.Errorf("%w: %s", ErrMismatch, c)
	}
	return nil
}

// DigestCID converts an OCI sha256 digest to the CID of the same bytes.
func DigestCID(d digest.Digest) (cid.Cid, error) {
	if err := d.Validate(); err != nil {
		return cid.Undef, fmt.Errorf("piece: %w", err)
	}
	if d.Algorithm() != digest.SHA256 {
		return cid.Undef, ErrNotSHA256
	}
	sum, err := hex.DecodeString(d.Encoded())
	if err != nil {
		return cid.Undef, fmt.Errorf("piece: %w", err)
	}
	return fromSHA256(sum), nil
}

// CIDDigest converts a raw sha2-256 CID to the OCI digest of the same bytes.
func CIDDigest(c cid.Cid) (digest.Digest, error) {
	if !c.Defined() {
		return "", fmt.Errorf("%w: undefined CID", ErrInvalid)
	}
	dec, err := multihash.Decode(c.Hash())
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.Code != multihash.SHA2_256 || len(dec.Digest) != sha256.Size {
		return "", ErrNotSHA256
	}
	return digest.NewDigestFromBytes(digest.SHA256, dec.Digest), nil
}

// Info is a blob's metainfo.
type Info struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	PieceSize int64         `json:"pieceSize"`
	Pieces    []cid.Cid     `json:"pieces"`
}

// Count is the number of pieces of the whole blob, known or not.
func (i *Info) Count() int { return Count(i.Size, i.PieceSize) }

// Complete reports whether every piece's CID is known.
func (i *Info) Complete() bool { return len(i.Pieces) == i.Count() }

// Span returns the byte offset and length of piece n.
func (i *Info) Span(n int) (off, length int64) {
	off = int64(n) * i.PieceSize
	return off, min(i.PieceSize, i.Size-off)
}

// Validate checks the invariants a decoded Info must hold.
func (i *Info) Validate() error {
	switch {
	case i.Digest.Validate() != nil:
		return fmt.Errorf("%w: bad digest %q", ErrInvalid, i.Digest)
	case i.Digest.Algorithm() != digest.SHA256:
		return ErrNotSHA256
	case i.Size <= 0:
		return fmt.Errorf("%w: size %d", ErrInvalid, i.Size)
	case i.PieceSize < 1 || i.PieceSize > MaxSize:
		return fmt.Errorf("%w: piece size %d", ErrInvalid, i.PieceSize)
	case i.Count() > MaxPieces:
		return fmt.Errorf("%w: %d pieces", ErrInvalid, i.Count())
	case len(i.Pieces) > i.Count():
		return fmt.Errorf("%w: %d piece CIDs for %d pieces", ErrInvalid, len(i.Pieces), i.Count())
	}
	for n, c := range i.Pieces {
		if !IsCID(c) {
			return fmt.Errorf("%w: piece %d: not a raw sha2-256 CIDv1", ErrInvalid, n)
		}
	}
	return nil
}

// Marshal encodes the Info as JSON (CIDs as base32 strings).
func (i *Info) Marshal() ([]byte, error) { return json.Marshal(i) }

// Unmarshal decodes and validates an Info from untrusted bytes.
func Unmarshal(data []byte) (*Info, error) {
	var i Info
	if err := json.Unmarshal(data, &i); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := i.Validate(); err != nil {
		return nil, err
	}
	return &i, nil
}

// CID content-addresses a complete Info.
func (i *Info) CID() (cid.Cid, error) {
	if !i.Complete() {
		return cid.Undef, fmt.Errorf("%w: incomplete", ErrInvalid)
	}
	b, err := i.Marshal()
	if err != nil {
		return cid.Undef, err
	}
	return Sum(b), nil
}

// Hasher computes piece CIDs of a blob streamed in order. Write the blob's
// bytes; each time a piece is complete, onPiece is called with its index and
// CID. Close flushes the last, short piece.
type Hasher struct {
	pieceSize int64
	n         int
	filled    int64
	h         hash.Hash
	onPiece   func(n int, c cid.Cid)
}

// NewHasher returns a Hasher for pieces of pieceSize bytes.
func NewHasher(pieceSize int64, onPiece func(n int, c cid.Cid)) *Hasher {
	return &Hasher{pieceSize: pieceSize, h: sha256.New(), onPiece: onPiece}
}

func (h *Hasher) Write(p []byte) (int, error) {
	written := len(p)
	for len(p) > 0 {
		take := min(int64(len(p)), h.pieceSize-h.filled)
		h.h.Write(p[:take])
		h.filled += take
		p = p[take:]
		if h.filled == h.pieceSize {
			h.emit()
		}
	}
	return written, nil
}

// Close emits the final short piece, if any.
func (h *Hasher) Close() error {
	if h.filled > 0 {
		h.emit()
	}
	return nil
}

func (h *Hasher) emit() {
	h.onPiece(h.n, fromSHA256(h.h.Sum(nil)))
	h.n++
	h.filled = 0
	h.h.Reset()
}
