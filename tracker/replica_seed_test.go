package tracker_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/shoal-dev/shoal/tracker"
)

// FuzzParseShard: a Shoal-Shard header either parses to a shard that
// names its self among its replicas and encodes back to itself, or is
// ErrInvalid.
func FuzzParseShard(f *testing.F) {
	f.Add(tracker.SeedShard{Of: []string{"http://a:7070", "10.0.0.2:7070"}, Self: "10.0.0.2:7070"}.Encode())
	f.Add("self=x&of=y")
	f.Add("self=&of=")
	f.Add("%zz")
	f.Fuzz(func(t *testing.T, h string) {
		s, err := tracker.ParseShard(h)
		if err != nil {
			if !errors.Is(err, tracker.ErrInvalid) {
				t.Fatalf("ParseShard(%q): %v, not ErrInvalid", h, err)
			}
			return
		}
		if !slices.Contains(s.Of, s.Self) {
			t.Fatalf("ParseShard(%q) = %+v: self is none of its replicas", h, s)
		}
		again, err := tracker.ParseShard(s.Encode())
		if err != nil || again.Self != s.Self || !slices.Equal(again.Of, s.Of) {
			t.Fatalf("%+v encoded and parsed again: %+v, %v", s, again, err)
		}
	})
}
