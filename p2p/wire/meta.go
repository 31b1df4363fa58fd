package wire

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
)

// The messages of /shoal/meta: a peer's metainfo and the peers it knows.

// MetaRequest asks what a peer knows of the blob Digest: its shape, the
// CIDs of its pieces From, From+1, … and peers that hold or fetch it.
type MetaRequest struct {
	Digest digest.Digest
	From   int
}

// Meta answers a MetaRequest. With StatusOK it carries the blob's Size and
// PieceSize, the CIDs the server knows of pieces From, From+1, … (at most
// MaxMetaPieces, maybe none) and up to MaxMetaPeers peers; with any other
// status, nothing.
type Meta struct {
	Status    Status
	Size      int64
	PieceSize int64
	From      int
	Pieces    []cid.Cid // raw sha2-256 CIDv1s, as piece.Sum makes them
	Peers     []Peer
}

// Peer is a peer as a Meta names it: the binary forms of its ID and of the
// multiaddrs to dial it at, left for the caller to parse (this package
// knows nothing of libp2p).
type Peer struct {
	ID    []byte
	Addrs [][]byte
}

func (m MetaRequest) appendPayload(b []byte) ([]byte, error) {
	if m.From < 0 || m.From > piece.MaxPieces {
		return nil, fmt.Errorf("%w: meta request from piece %d", ErrMalformed, m.From)
	}
	b, err := appendDigest(b, m.Digest)
	return binary.AppendUvarint(b, uint64(m.From)), err
}

func (m Meta) appendPayload(b []byte) ([]byte, error) {
	if m.Status > maxStatus {
		return nil, fmt.Errorf("%w: meta %s", ErrMalformed, m.Status)
	}
	if m.Status != StatusOK {
		if m.Size != 0 || m.PieceSize != 0 || m.From != 0 || m.Pieces != nil || m.Peers != nil {
			return nil, fmt.Errorf("%w: refusal %s carries metainfo", ErrMalformed, m.Status)
		}
		return append(b, byte(m.Status)), nil
	}
	if err := checkShape(m.Size, m.PieceSize, m.From, len(m.Pieces)); err != nil {
		return nil, err
	}
	if len(m.Peers) > MaxMetaPeers {
		return nil, fmt.Errorf("%w: %d peers", ErrMalformed, len(m.Peers))
	}
	b = append(b, byte(m.Status))
	b = binary.AppendUvarint(b, uint64(m.Size))
	b = binary.AppendUvarint(b, uint64(m.PieceSize))
	b = binary.AppendUvarint(b, uint64(m.From))
	b = binary.AppendUvarint(b, uint64(len(m.Pieces)))
	for n, c := range m.Pieces {
		sum, err := sumOf(c)
		if err != nil {
			return nil, fmt.Errorf("%w: piece %d: %w", ErrMalformed, m.From+n, err)
		}
		b = append(b, sum...)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Peers)))
	for _, p := range m.Peers {
		if len(p.ID) == 0 || len(p.ID) > MaxPeerID || len(p.Addrs) > MaxPeerAddrs {
			return nil, fmt.Errorf("%w: peer of %d ID bytes and %d addresses", ErrMalformed, len(p.ID), len(p.Addrs))
		}
		b = append(binary.AppendUvarint(b, uint64(len(p.ID))), p.ID...)
		b = binary.AppendUvarint(b, uint64(len(p.Addrs)))
		for _, a := range p.Addrs {
			if len(a) == 0 || len(a) > MaxAddr {
				return nil, fmt.Errorf("%w: address of %d bytes", ErrMalformed, len(a))
			}
			b = append(binary.AppendUvarint(b, uint64(len(a))), a...)
		}
	}
	return b, nil
}

// checkShape checks a Meta's blob shape and the span of its pieces.
func checkShape(size, pieceSize int64, from, pieces int) error {
	if size < 1 || size > maxBlobSize || pieceSize < 1 || pieceSize > piece.MaxSize {
		return fmt.Errorf("%w: blob of %d bytes in pieces of %d", ErrMalformed, size, pieceSize)
	}
	count := piece.Count(size, pieceSize)
	if count > piece.MaxPieces || from < 0 || pieces < 0 || pieces > MaxMetaPieces || from > count || pieces > count-from {
		return fmt.Errorf("%w: pieces %d to %d of %d", ErrMalformed, from, from+pieces, count)
	}
	return nil
}

// sumOf is the sha256 sum a piece CID names.
func sumOf(c cid.Cid) ([]byte, error) {
	if !piece.IsCID(c) {
		return nil, errors.New("not a raw sha2-256 CIDv1")
	}
	dec, err := multihash.Decode(c.Hash())
	if err != nil {
		return nil, err
	}
	return dec.Digest, nil
}

func decodeMeta(p []byte) (Meta, []byte, error) {
	var (
		m   Meta
		err error
	)
	if m.Status, p, err = statusOf(p); err != nil || m.Status != StatusOK {
		if err == nil && len(p) != 0 {
			err = fmt.Errorf("%w: refusal %s carries metainfo", ErrMalformed, m.Status)
		}
		return m, p, err
	}
	size, n, err := uvarint(p)
	if err != nil {
		return m, p, err
	}
	if size > maxBlobSize {
		return m, p, fmt.Errorf("%w: blob of %d bytes", ErrMalformed, size)
	}
	p = p[n:]
	var psize, count int
	if psize, p, err = indexOf(p, piece.MaxSize); err != nil {
		return m, p, err
	}
	if m.From, p, err = indexOf(p, piece.MaxPieces); err != nil {
		return m, p, err
	}
	if count, p, err = indexOf(p, MaxMetaPieces); err != nil {
		return m, p, err
	}
	m.Size, m.PieceSize = int64(size), int64(psize)
	if err := checkShape(m.Size, m.PieceSize, m.From, count); err != nil {
		return m, p, err
	}
	if len(p) < 32*count {
		return m, p, fmt.Errorf("%w: %d piece sums in %d bytes", ErrMalformed, count, len(p))
	}
	if count > 0 {
		m.Pieces = make([]cid.Cid, count)
	}
	for n := range m.Pieces {
		mh, err := multihash.Encode(p[:32], multihash.SHA2_256)
		if err != nil {
			return m, p, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		m.Pieces[n] = cid.NewCidV1(cid.Raw, mh)
		p = p[32:]
	}
	var peers int
	if peers, p, err = indexOf(p, MaxMetaPeers); err != nil {
		return m, p, err
	}
	if peers > 0 {
		m.Peers = make([]Peer, peers)
	}
	for i := range m.Peers {
		if m.Peers[i].ID, p, err = bytesOf(p, MaxPeerID); err != nil {
			return m, p, err
		}
		var addrs int
		if addrs, p, err = indexOf(p, MaxPeerAddrs); err != nil {
			return m, p, err
		}
		if addrs > 0 {
			m.Peers[i].Addrs = make([][]byte, addrs)
		}
		for j := range m.Peers[i].Addrs {
			if m.Peers[i].Addrs[j], p, err = bytesOf(p, MaxAddr); err != nil {
				return m, p, err
			}
		}
	}
	return m, p, nil
}

// bytesOf decodes a uvarint length, 1 to max, and that many bytes (copied:
// a decoded message does not alias the frame).
func bytesOf(p []byte, max int) ([]byte, []byte, error) {
	n, p, err := indexOf(p, max)
	if err != nil {
		return nil, nil, err
	}
	if n == 0 || len(p) < n {
		return nil, nil, fmt.Errorf("%w: field of %d bytes, %d present", ErrMalformed, n, len(p))
	}
	return append([]byte(nil), p[:n]...), p[n:], nil
}
