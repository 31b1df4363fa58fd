package trackertest

import (
	"context"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSeederPlaysScriptsInOrder(t *testing.T) {
	t.Parallel()
	s := NewSeeder()
	info := InfoFor([]byte("0123456789"), 4)
	src := tracker.Source{Repo: "a/b", Digest: info.Digest}
	errFirst := errors.New("first")

	// Two scripts written before any Seed: each call plays one.
	s.Emit(info.Digest, Prefix(info, 1))
	s.Finish(info.Digest, errFirst)
	s.Complete(info)

	for _, want := range []struct {
		pieces int
		err    error
	}{{1, errFirst}, {3, nil}} {
		var got []*piece.Info
		err := s.Seed(context.Background(), src, func(i *piece.Info) { got = append(got, i) })
		if !errors.Is(err, want.err) || len(got) != 1 || len(got[0].Pieces) != want.pieces {
			t.Fatalf("Seed = %v with %d reports, want %v after %d pieces", err, len(got), want.err, want.pieces)
		}
	}
	if n := s.Calls(info.Digest); n != 2 {
		t.Errorf("Calls = %d, want 2", n)
	}

	// A Seed with no script waits for one, or for its context.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Seed(ctx, src, func(*piece.Info) {}) }()
	<-s.Started(info.Digest)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Seed = %v", err)
	}
	if !info.Complete() || len(Prefix(info, 2).Pieces) != 2 || len(info.Pieces) != 3 {
		t.Error("InfoFor or Prefix miscounted pieces")
	}
}
