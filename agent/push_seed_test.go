package agent

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
)

// A holders' copy that fails its digest is discarded and the digest
// distrusted; a good one is committed and trusted.
func TestCheckedFill(t *testing.T) {
	cfg := store.DefaultConfig()
	cfg.Dir = filepath.Join(t.TempDir(), "store")
	st, err := store.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := &Agent{log: slog.New(slog.DiscardHandler)}
	good := []byte("the bytes the origin has")
	d := digest.FromBytes(good)
	write := func(b []byte) store.Filler {
		return func(_ context.Context, w store.Writer) error {
			_, err := w.WriteAt(b, 0)
			return err
		}
	}
	read := func(fill store.Filler) error {
		r, err := st.Fetch(t.Context(), d, int64(len(good)), fill)
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = r.ReadAt(make([]byte, len(good)), 0)
		return err
	}

	err = read(a.checkedFill(write([]byte("the bytes a liar sent us")), d, int64(len(good))))
	if !errors.Is(err, store.ErrDigestMismatch) {
		t.Fatalf("bad copy: %v, want ErrDigestMismatch", err)
	}
	if !a.distrust.has(d) {
		t.Error("the digest is not distrusted after a bad copy")
	}
	if _, err := st.Stat(t.Context(), d); err == nil {
		t.Error("the store kept the bad copy")
	}
	if err := read(a.checkedFill(write(good), d, int64(len(good)))); err != nil {
		t.Fatalf("good copy: %v", err)
	}
}

func TestDigestSetBounded(t *testing.T) {
	var s digestSet
	first := digest.FromString("first")
	s.add(first)
	if !s.has(first) || s.has(digest.FromString("other")) {
		t.Fatal("set membership wrong")
	}
	for i := range maxDistrust {
		s.add(digest.FromString(string(rune(i)) + "x"))
	}
	if len(s.m) > maxDistrust {
		t.Errorf("set holds %d digests, bound %d", len(s.m), maxDistrust)
	}
}
