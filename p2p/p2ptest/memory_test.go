package p2ptest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/p2ptest"
	"github.com/shoal-dev/shoal/p2p/piece"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func read(t *testing.T, m *p2ptest.MemorySource, d digest.Digest, n int) ([]byte, error) {
	t.Helper()
	rc, size, err := m.Piece(context.Background(), d, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if int64(len(b)) != size {
		t.Fatalf("piece %d: read %d bytes, announced %d", n, len(b), size)
	}
	return b, err
}

func TestMemorySource(t *testing.T) {
	t.Parallel()
	data := []byte("0123456789abcdefghij-")
	info := p2ptest.NewMemorySource().AddBlob(data, 10)
	m := p2ptest.NewMemorySource()
	if err := m.Register(info); err != nil {
		t.Fatal(err)
	}
	if _, err := read(t, m, info.Digest, 0); !errors.Is(err, p2p.ErrNoPiece) {
		t.Fatalf("Piece before Put = %v, want ErrNoPiece", err)
	}
	if _, err := read(t, m, digest.FromString("x"), 0); !errors.Is(err, p2p.ErrUnknownBlob) {
		t.Fatalf("Piece of an unknown blob = %v, want ErrUnknownBlob", err)
	}
	for name, tc := range map[string]struct {
		n    int
		data []byte
	}{
		"wrong bytes":  {0, []byte("0123456780")},
		"wrong length": {0, []byte("012")},
		"out of range": {3, []byte("-")},
	} {
		if err := m.Put(info.Digest, tc.n, tc.data); err == nil {
			t.Errorf("Put %s succeeded", name)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	bf, early, err := m.Watch(ctx, "", info.Digest)
	if err != nil || bf.Count() != 0 || bf.Len() != 3 {
		t.Fatalf("Watch = %v, %v", bf, err)
	}
	_, dropped, _ := m.Watch(ctx, "", info.Digest)
	if err := m.Put(info.Digest, 2, data[20:]); err != nil {
		t.Fatal(err)
	}
	cancel() // dropped ends here; early too, after what it has buffered
	for range dropped {
	}

	_, late, _ := m.Watch(context.Background(), "", info.Digest)
	m.Put(info.Digest, 0, data[:10])
	m.Put(info.Digest, 0, data[:10]) // a duplicate is not announced again
	m.Put(info.Digest, 1, data[10:20])
	var got []int
	for n := range late {
		got = append(got, n)
	}
	if len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Fatalf("late watcher got %v, want [0 1] then close", got)
	}
	if n, ok := <-early; !ok || n != 2 {
		t.Fatalf("early watcher got %d, %v; want 2", n, ok)
	}
	for range early {
	}

	for n := range 3 {
		b, err := read(t, m, info.Digest, n)
		if err != nil || piece.Verify(info.Pieces[n], b) != nil {
			t.Fatalf("piece %d: %v", n, err)
		}
	}
	m.SetCorrupt(true)
	b, _ := read(t, m, info.Digest, 1)
	if piece.Verify(info.Pieces[1], b) == nil || bytes.Equal(b, data[10:20]) {
		t.Fatal("corrupt mode served the right bytes")
	}
	m.SetCorrupt(false)
	if b, _ := read(t, m, info.Digest, 1); !bytes.Equal(b, data[10:20]) {
		t.Fatal("corruption leaked into the stored piece")
	}
	if bf, ch, err := m.Watch(context.Background(), "", info.Digest); err != nil || !bf.Full() {
		t.Fatalf("Watch of a complete blob = %v, %v", bf, err)
	} else if _, ok := <-ch; ok {
		t.Fatal("complete blob announced a piece")
	}
}
