package p2p

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/multiformats/go-multiaddr"

	"github.com/shoal-dev/shoal/p2p/wire"
)

// A peer may have 16 meta streams open to a host, not more: they are
// small exchanges, and a host answers only maxMetaAnswers at once anyway.
func TestMetaResourceLimits(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(resourceLimits(cfg)), resourceOptions(cfg)...)
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	p := peer.ID("remote")
	for i := range 17 {
		s, err := rm.OpenStream(p, network.DirInbound)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		defer s.Done()
		err = s.SetProtocol(MetaProtocol)
		if i < 16 && err != nil {
			t.Fatalf("meta stream %d: %v", i, err)
		}
		if i == 16 && err == nil {
			t.Fatal("a 17th inbound meta stream from one peer was admitted")
		}
	}
}

// FuzzMetaPeers feeds decoded Meta answers to the client's peer parsing:
// whatever a peer sends, it yields peers or an error, never a panic, and
// what it yields re-encodes.
func FuzzMetaPeers(f *testing.F) {
	id, err := test.RandPeerID()
	if err != nil {
		f.Fatal(err)
	}
	good := wire.Meta{Status: wire.StatusOK, Size: 10, PieceSize: 5, Peers: []wire.Peer{{
		ID:    []byte(id),
		Addrs: [][]byte{multiaddr.StringCast("/ip4/10.0.0.1/tcp/4001").Bytes(), multiaddr.StringCast("/dns/a.example/tcp/1").Bytes()},
	}}}
	for _, m := range []wire.Meta{good, {Status: wire.StatusOK, Size: 1, PieceSize: 1, Peers: []wire.Peer{{ID: []byte{0, 2, 1, 2}, Addrs: [][]byte{{4, 1, 2, 3}}}}}} {
		b, err := wire.Append(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, _, err := wire.Decode(in)
		meta, ok := m.(wire.Meta)
		if err != nil || !ok {
			return
		}
		peers, err := parsePeers(meta.Peers, "", "")
		if err != nil {
			return
		}
		if len(peers) != len(meta.Peers) {
			t.Fatalf("%d peers parsed from %d", len(peers), len(meta.Peers))
		}
		if _, err := wire.Append(nil, wire.Meta{Status: wire.StatusOK, Size: 1, PieceSize: 1, Peers: wirePeers(peers, "", "")}); err != nil {
			t.Fatalf("parsed peers do not re-encode: %v", err)
		}
	})
}
