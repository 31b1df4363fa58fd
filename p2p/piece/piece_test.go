package piece

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	"github.com/opencontainers/go-digest"
)

func TestSizeFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		size, want int64
	}{
		{0, MinSize},
		{1, MinSize},
		{40 << 20, MinSize},
		{125 << 20, MinSize},
		{126 << 20, 512 << 10},
		{500 << 20, 1 << 20},
		{501 << 20, 2 << 20},
		{1 << 30, 4 << 20},
		{4 << 30, 16 << 20},
		{1 << 40, MaxSize},
	} {
		if got := SizeFor(tc.size); got != tc.want {
			t.Errorf("SizeFor(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func TestDigestCIDRoundTrip(t *testing.T) {
	t.Parallel()
	data := []byte("hello shoal")
	d := digest.FromBytes(data)
	c, err := DigestCID(d)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Equals(Sum(data)) {
		t.Fatalf("DigestCID(%s) = %s, want %s", d, c, Sum(data))
	}
	back, err := CIDDigest(c)
	if err != nil || back != d {
		t.Fatalf("CIDDigest = %s, %v; want %s", back, err, d)
	}
	if _, err := DigestCID(digest.SHA512.FromBytes(data)); !errors.Is(err, ErrNotSHA256) {
		t.Errorf("sha512 digest: err = %v, want ErrNotSHA256", err)
	}
	if _, err := DigestCID("sha256:zz"); err == nil {
		t.Error("malformed digest accepted")
	}
}

func TestIsCID(t *testing.T) {
	t.Parallel()
	sum := Sum([]byte("abc"))
	sha512, err := multihash.Sum([]byte("abc"), multihash.SHA2_512, -1)
	if err != nil {
		t.Fatal(err)
	}
	short, err := multihash.Sum([]byte("abc"), multihash.SHA2_256, 16)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		c    cid.Cid
		want bool
	}{
		{"Sum", sum, true},
		{"undefined", cid.Undef, false},
		{"CIDv0", cid.NewCidV0(sum.Hash()), false},
		{"dag-pb", cid.NewCidV1(cid.DagProtobuf, sum.Hash()), false},
		{"sha2-512", cid.NewCidV1(cid.Raw, sha512), false},
		{"truncated sha2-256", cid.NewCidV1(cid.Raw, short), false},
	}
	for _, tt := range tests {
		if got := IsCID(tt.c); got != tt.want {
			t.Errorf("%s: IsCID(%s) = %v, want %v", tt.name, tt.c, got, tt.want)
		}
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	c := Sum([]byte("abc"))
	if err := Verify(c, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := Verify(c, []byte("abd")); !errors.Is(err, ErrMismatch) {
		t.Fatalf("err = %v, want ErrMismatch", err)
	}
}

func TestHasherMatchesSum(t *testing.T) {
	t.Parallel()
	blob := make([]byte, 5*MinSize/2+17)
	rand.Read(blob)
	info := Info{Digest: digest.FromBytes(blob), Size: int64(len(blob)), PieceSize: MinSize}
	h := NewHasher(info.PieceSize, func(n int, c cid.Cid) {
		if n != len(info.Pieces) {
			t.Fatalf("piece %d emitted out of order", n)
		}
		info.Pieces = append(info.Pieces, c)
	})
	// Odd write sizes cross piece boundaries.
	for r := bytes.NewReader(blob); r.Len() > 0; {
		buf := make([]byte, 300_001)
		n, _ := r.Read(buf)
		h.Write(buf[:n])
	}
	h.Close()
	if !info.Complete() {
		t.Fatalf("%d of %d pieces", len(info.Pieces), info.Count())
	}
	for n, c := range info.Pieces {
		off, l := info.Span(n)
		if err := Verify(c, blob[off:off+l]); err != nil {
			t.Errorf("piece %d: %v", n, err)
		}
	}
	if err := info.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := info.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := info.CID()
	c2, _ := got.CID()
	if !c1.Equals(c2) {
		t.Fatal("metainfo CID changed across a round trip")
	}
}

func TestUnmarshalRejects(t *testing.T) {
	t.Parallel()
	good := Sum([]byte("x")).String()
	other := cid.NewCidV0(Sum([]byte("x")).Hash()).String()
	d := digest.FromString("x")
	for name, in := range map[string]string{
		"not json":       `{`,
		"bad digest":     `{"digest":"sha256:nope","size":1,"pieceSize":1048576,"pieces":[]}`,
		"zero size":      `{"digest":"` + d.String() + `","size":0,"pieceSize":1048576}`,
		"huge piece":     `{"digest":"` + d.String() + `","size":10,"pieceSize":1099511627776}`,
		"too many CIDs":  `{"digest":"` + d.String() + `","size":1,"pieceSize":1048576,"pieces":["` + good + `","` + good + `"]}`,
		"CIDv0 piece":    `{"digest":"` + d.String() + `","size":1,"pieceSize":1048576,"pieces":["` + other + `"]}`,
		"piece count":    `{"digest":"` + d.String() + `","size":1099511627776000,"pieceSize":1}`,
		"negative piece": `{"digest":"` + d.String() + `","size":10,"pieceSize":-1}`,
	} {
		if _, err := Unmarshal([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	d := digest.FromString("x")
	f.Add([]byte(`{"digest":"` + d.String() + `","size":3000000,"pieceSize":1048576,"pieces":["` + Sum([]byte("x")).String() + `"]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		i, err := Unmarshal(data)
		if err != nil {
			return
		}
		if len(i.Pieces) > i.Count() || i.Count() > MaxPieces {
			t.Fatalf("invalid Info accepted: %+v", i)
		}
		for n := range i.Pieces {
			if off, l := i.Span(n); off < 0 || l <= 0 || off+l > i.Size {
				t.Fatalf("piece %d span %d+%d outside %d", n, off, l, i.Size)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	data := make([]byte, MinSize)
	rand.Read(data)
	c := Sum(data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := Verify(c, data); err != nil {
			b.Fatal(err)
		}
	}
}

func TestBitfieldRoundTrip(t *testing.T) {
	t.Parallel()
	b := NewBitfield(70)
	for _, i := range []int{0, 7, 8, 63, 64, 69} {
		if !b.Set(i) {
			t.Fatalf("Set(%d) refused", i)
		}
	}
	if b.Set(70) || b.Set(-1) || b.Has(70) {
		t.Fatal("out-of-range piece accepted")
	}
	got, err := ParseBitfield(b.Bytes(), 70)
	if err != nil {
		t.Fatal(err)
	}
	if got.Count() != 6 || !got.Has(69) || got.Has(1) {
		t.Fatalf("round trip lost bits: %08b", got.Bytes())
	}
	if _, err := ParseBitfield([]byte{0xff}, 3); err == nil {
		t.Fatal("spare bits accepted")
	}
	if _, err := ParseBitfield([]byte{0xff}, 20); err == nil {
		t.Fatal("short bitfield accepted")
	}
}

func FuzzParseBitfield(f *testing.F) {
	f.Add([]byte{0xf0}, 4)
	f.Fuzz(func(t *testing.T, data []byte, n int) {
		b, err := ParseBitfield(data, n)
		if err != nil {
			return
		}
		if string(b.Bytes()) != string(data) {
			t.Fatalf("re-encoding differs: %x vs %x", b.Bytes(), data)
		}
	})
}
