package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
)

var testDigest = digest.FromString("shoal")

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, m := range []Message{
		PieceRequest{Digest: testDigest, Index: 0},
		PieceRequest{Digest: testDigest, Index: piece.MaxPieces - 1},
		PieceHeader{Status: StatusOK, Length: piece.MaxSize},
		PieceHeader{Status: StatusBusy},
		PieceHeader{Status: StatusRationed},
		WatchRequest{Digest: testDigest, Pieces: 1},
		WatchRequest{Digest: testDigest, Pieces: piece.MaxPieces},
		Bitfield{Status: StatusOK, Bits: []byte{0xa0}},
		Bitfield{Status: StatusOK, Bits: make([]byte, piece.MaxPieces/8)},
		Bitfield{Status: StatusUnknownBlob},
		Have{Index: 300},
		Done{},
		MetaRequest{Digest: testDigest, From: 0},
		MetaRequest{Digest: testDigest, From: piece.MaxPieces},
		Meta{Status: StatusUnknownBlob},
		Meta{Status: StatusOK, Size: 1, PieceSize: 1},
		testMeta(3, 2),
		fullMeta(),
	} {
		b, err := Append(nil, m)
		if err != nil {
			t.Fatalf("Append(%#v): %v", m, err)
		}
		got, rest, err := Decode(b)
		if err != nil || len(rest) != 0 || !reflect.DeepEqual(got, m) {
			t.Errorf("Decode(Append(%T)) = %#v, %d left, %v", m, got, len(rest), err)
		}
		got, err = Read(bufio.NewReader(bytes.NewReader(b)))
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("Read(Append(%T)) = %#v, %v", m, got, err)
		}
	}
}

func TestAppendRejects(t *testing.T) {
	t.Parallel()
	for name, m := range map[string]Message{
		"negative index":     PieceRequest{Digest: testDigest, Index: -1},
		"index too large":    Have{Index: piece.MaxPieces},
		"not sha256":         PieceRequest{Digest: digest.SHA512.FromString("x")},
		"bad digest":         WatchRequest{Digest: "sha256:zz", Pieces: 1},
		"zero pieces":        WatchRequest{Digest: testDigest},
		"piece too long":     PieceHeader{Length: piece.MaxSize + 1},
		"refusal with bytes": PieceHeader{Status: StatusBusy, Length: 1},
		"unknown status":     PieceHeader{Status: 99},
		"bitfield too long":  Bitfield{Bits: make([]byte, piece.MaxPieces/8+1)},
		"refusal with bits":  Bitfield{Status: StatusBusy, Bits: []byte{1}},
		"meta from past max": MetaRequest{Digest: testDigest, From: piece.MaxPieces + 1},
		"meta refusal shape": Meta{Status: StatusBusy, Size: 1},
		"meta no size":       Meta{PieceSize: 1},
		"meta piece size":    Meta{Size: 10, PieceSize: piece.MaxSize + 1},
		"meta past the blob": Meta{Size: 10, PieceSize: 5, From: 1, Pieces: testMeta(2, 0).Pieces},
		"meta bad cid":       Meta{Size: 10, PieceSize: 5, Pieces: []cid.Cid{cid.NewCidV0(testMeta(1, 0).Pieces[0].Hash())}},
		"meta many pieces":   Meta{Size: MaxMetaPieces + 1, PieceSize: 1, Pieces: make([]cid.Cid, MaxMetaPieces+1)},
		"meta many peers":    Meta{Size: 1, PieceSize: 1, Peers: make([]Peer, MaxMetaPeers+1)},
		"meta empty id":      Meta{Size: 1, PieceSize: 1, Peers: []Peer{{}}},
		"meta long address":  Meta{Size: 1, PieceSize: 1, Peers: []Peer{{ID: []byte{1}, Addrs: [][]byte{make([]byte, MaxAddr+1)}}}},
		"meta many addrs":    Meta{Size: 1, PieceSize: 1, Peers: []Peer{{ID: []byte{1}, Addrs: make([][]byte, MaxPeerAddrs+1)}}},
	} {
		if _, err := Append(nil, m); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Append = %v, want ErrMalformed", name, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	huge := []byte{0x80, 0x80, 0x80, 0x80, 0x08} // 2^31
	big := append(appendLen(MaxMessage+1), byte(TypeHave))
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"empty frame":        {[]byte{0}, ErrMalformed},
		"huge frame":         {huge, ErrTooLarge},
		"big non-bitfield":   {big, ErrTooLarge},
		"unknown type":       {[]byte{1, 99}, ErrMalformed},
		"non-minimal varint": {[]byte{0x82, 0x00, byte(TypeHave), 0}, ErrMalformed},
		"non-minimal index":  {[]byte{3, byte(TypeHave), 0x80, 0x00}, ErrMalformed},
		"trailing bytes":     {[]byte{2, byte(TypeDone), 0}, ErrMalformed},
		"short digest":       {[]byte{3, byte(TypePieceRequest), 1, 2}, ErrMalformed},
		"bad status":         {[]byte{3, byte(TypePieceHeader), 9, 0}, ErrMalformed},
		"index overflow":     {[]byte{5, byte(TypeHave), 0x80, 0x80, 0x80, 0x01}, ErrMalformed},
		"varint overflow":    {bytes.Repeat([]byte{0xff}, 11), ErrMalformed},
		"big meta":           {append(appendLen(MaxMetaMessage+1), byte(TypeMeta)), ErrTooLarge},
		"meta refusal data":  {[]byte{3, byte(TypeMeta), byte(StatusBusy), 1}, ErrMalformed},
		"meta short sums":    {[]byte{8, byte(TypeMeta), 0, 64, 32, 0, 2, 1, 2}, ErrMalformed},
		"meta past the blob": {[]byte{7, byte(TypeMeta), 0, 10, 5, 3, 0, 0}, ErrMalformed},
		"meta no peers":      {[]byte{6, byte(TypeMeta), 0, 10, 5, 0, 0}, ErrMalformed},
		"meta empty id":      {[]byte{9, byte(TypeMeta), 0, 10, 5, 0, 0, 1, 0, 0}, ErrMalformed},
		"meta short address": {[]byte{12, byte(TypeMeta), 0, 10, 5, 0, 0, 1, 1, 7, 1, 5, 1}, ErrMalformed},
		"meta huge blob":     {[]byte{12, byte(TypeMeta), 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 1, 0, 0}, ErrMalformed},
	} {
		if _, _, err := Decode(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: Decode = %v, want %v", name, err, tc.want)
		}
		if _, err := Read(bufio.NewReader(bytes.NewReader(tc.in))); !errors.Is(err, tc.want) {
			t.Errorf("%s: Read = %v, want %v", name, err, tc.want)
		}
	}
}

func TestReadEOF(t *testing.T) {
	t.Parallel()
	if _, err := Read(bufio.NewReader(bytes.NewReader(nil))); err != io.EOF {
		t.Errorf("Read(empty) = %v, want io.EOF", err)
	}
	if _, err := Read(bufio.NewReader(bytes.NewReader([]byte{5, byte(TypeHave)}))); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Read(truncated) = %v, want io.ErrUnexpectedEOF", err)
	}
}

// testMeta is a Meta of pieces CIDs (a blob of pieces+1 pieces) and peers
// peers of two addresses each.
func testMeta(pieces, peers int) Meta {
	m := Meta{Status: StatusOK, Size: int64(pieces+1) * 1000, PieceSize: 1000, From: 1}
	for n := range pieces {
		m.Pieces = append(m.Pieces, piece.Sum([]byte{byte(n)}))
	}
	for i := range peers {
		m.Peers = append(m.Peers, Peer{ID: []byte{0, 4, 1, 2, 3, byte(i)}, Addrs: [][]byte{{4, 127, 0, 0, 1}, {4, 10, 0, 0, byte(i)}}})
	}
	return m
}

// fullMeta is the largest Meta there is.
func fullMeta() Meta {
	m := Meta{Status: StatusOK, Size: maxBlobSize, PieceSize: piece.MaxSize, From: 1}
	for n := range MaxMetaPieces {
		m.Pieces = append(m.Pieces, piece.Sum([]byte{byte(n), byte(n >> 8)}))
	}
	for range MaxMetaPeers {
		p := Peer{ID: bytes.Repeat([]byte{1}, MaxPeerID)}
		for range MaxPeerAddrs {
			p.Addrs = append(p.Addrs, bytes.Repeat([]byte{2}, MaxAddr))
		}
		m.Peers = append(m.Peers, p)
	}
	return m
}

// The largest Meta fits its limit, and the limit is not far above it.
func TestMetaLimit(t *testing.T) {
	t.Parallel()
	b, err := Append(nil, fullMeta())
	if err != nil {
		t.Fatal(err)
	}
	if body := len(b) - len(appendLen(len(b))); body > MaxMetaMessage || body < MaxMetaMessage-64 {
		t.Errorf("the largest Meta has %d bytes, limit %d", body, MaxMetaMessage)
	}
}

func appendLen(n int) []byte {
	var b []byte
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

// FuzzDecode checks that no input panics either decoder, that both agree,
// and that whatever decodes re-encodes to the very same bytes.
func FuzzDecode(f *testing.F) {
	for _, m := range []Message{
		PieceRequest{Digest: testDigest, Index: 7},
		PieceHeader{Status: StatusOK, Length: 4 << 20},
		PieceHeader{Status: StatusNoPiece},
		WatchRequest{Digest: testDigest, Pieces: 500},
		Bitfield{Status: StatusOK, Bits: []byte{0xff, 0x80}},
		Have{Index: 129},
		Done{},
		MetaRequest{Digest: testDigest, From: 3},
		Meta{Status: StatusBusy},
		testMeta(2, 2),
	} {
		b, err := Append(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f, byte(TypeBitfield)})
	f.Add([]byte{0x80, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, rest, err := Decode(in)
		rm, rerr := Read(bufio.NewReader(bytes.NewReader(in)))
		if (err == nil) != (rerr == nil) {
			t.Fatalf("Decode err %v, Read err %v", err, rerr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(m, rm) {
			t.Fatalf("Decode %#v, Read %#v", m, rm)
		}
		out, err := Append(nil, m)
		if err != nil {
			t.Fatalf("re-encoding %#v: %v", m, err)
		}
		if frame := in[:len(in)-len(rest)]; !bytes.Equal(out, frame) {
			t.Fatalf("re-encoded %x, decoded from %x", out, frame)
		}
	})
}
