package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

// zoned is the peer named name in zone.
func zoned(name, zone string) tracker.Peer {
	p := peer(name, false)
	p.Zone = zone
	return p
}

// A peer of a zone is handed the seeder, then a few peers of other zones
// (one in eight of the handout), then peers of its zone, each with its
// zone; when its zone has too few, more of the others fill the handout.
func TestHandoutZones(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *server.Config) { c.MaxHandout = 16 })
	d := digest.FromString("layer")
	ctx := context.Background()
	if _, err := f.tr.Announce(ctx, tracker.Announce{Peer: peer("seeder", true), Blobs: []tracker.BlobState{{Digest: d, Have: 1}}}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		f.announce(t, zoned(fmt.Sprintf("a-complete%d", i), "a"), tracker.BlobState{Digest: d, Have: 6, Complete: true})
		f.announce(t, zoned(fmt.Sprintf("a-partial%d", i), "a"), tracker.BlobState{Digest: d, Have: 2})
		f.announce(t, zoned(fmt.Sprintf("b-complete%d", i), "b"), tracker.BlobState{Digest: d, Have: 6, Complete: true})
	}
	f.announce(t, zoned("a-self", "a"), tracker.BlobState{Digest: d})
	f.announce(t, zoned("c-self", "c"), tracker.BlobState{Digest: d})
	f.announce(t, peer("plain-self", false), tracker.BlobState{Digest: d})

	zones := func(ps []tracker.Peer) string {
		s := ""
		for _, p := range ps {
			switch {
			case p.Seeder:
				s += "S"
			case p.Zone == "":
				s += "_"
			default:
				s += p.Zone
			}
		}
		return s
	}
	handout := func(self string) []tracker.Peer {
		t.Helper()
		got, err := f.client.Peers(ctx, d, trackertest.ID(self))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 16 {
			t.Fatalf("%s: handout %v, want 16 peers", self, ids(got))
		}
		return got
	}

	// The seeder, two of other zones (16/8), then thirteen of its own, the
	// ten complete ones before the partial ones.
	got := handout("a-self")
	if z := zones(got); z != "Sbbaaaaaaaaaaaaa" {
		t.Errorf("a-self: handout zones %s, want Sbbaaaaaaaaaaaaa (%v)", z, ids(got))
	}
	for i, p := range got[3:] {
		if p.Complete != (i < 10) {
			t.Errorf("a-self: handout %v: the zone's complete peers must come first", ids(got))
			break
		}
	}
	// No other peer of zone c: peers of other zones fill the handout,
	// complete ones first as ever (a's and b's twenty).
	got = handout("c-self")
	if z := zones(got); z[0] != 'S' || strings.ContainsAny(z[1:], "Sc_") {
		t.Errorf("c-self: handout zones %s, want the seeder and peers of a and b", z)
	}
	for _, p := range got[1:] {
		if !p.Complete {
			t.Errorf("c-self: handout %v: a partial peer while complete ones were left out", ids(got))
		}
	}
	// Without a zone: the handout of before (complete peers and the seeder
	// first), naming no zone: an agent of a version before zones would
	// refuse the field.
	for _, p := range handout("plain-self") {
		if p.Zone != "" || !(p.Complete || p.Seeder) {
			t.Errorf("handout to a peer without a zone: %+v, want complete peers and no zone", p)
		}
	}
}

// An announce with a zone the tracker cannot take is refused whole.
func TestAnnounceZoneValidated(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	d := digest.FromString("layer")
	for _, zone := range []string{"eu-west-1a", "rack.12_b", ""} {
		if _, err := f.as(t, "ok").Announce(context.Background(), tracker.Announce{Peer: zoned("ok", zone), Blobs: []tracker.BlobState{{Digest: d}}}); err != nil {
			t.Errorf("zone %q: %v", zone, err)
		}
	}
	for _, zone := range []string{"EU", "a b", "zone/1", string(make([]byte, 64))} {
		_, err := f.tr.Announce(context.Background(), tracker.Announce{Peer: zoned("bad", zone), Blobs: []tracker.BlobState{{Digest: d}}})
		if !errors.Is(err, tracker.ErrInvalid) {
			t.Errorf("zone %q: %v, want ErrInvalid", zone, err)
		}
	}
}
