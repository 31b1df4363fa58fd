package p2p

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/multiformats/go-multiaddr"
)

// TestResourceLimits checks the limits libp2p's defaults get wrong for a
// swarm: many connections, many streams per peer and per protocol, and
// enough memory for yamux windows to grow to 16 MiB.
func TestResourceLimits(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(resourceLimits(cfg)), resourceOptions(cfg)...)
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	addr := multiaddr.StringCast("/ip4/10.0.0.1/tcp/4001")
	p := peer.ID("remote")

	// A yamux window grows only if the reservation leaves its scopes at most
	// half full (priority 128): 16 streams × 16 MiB on one connection.
	conn, err := rm.OpenConnection(network.DirInbound, true, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Done()
	if err := conn.SetPeer(p); err != nil {
		t.Fatal(err)
	}
	for i := range 16 {
		span, err := conn.BeginSpan()
		if err != nil {
			t.Fatal(err)
		}
		defer span.Done()
		if err := span.ReserveMemory(16<<20, 128); err != nil {
			t.Fatalf("window %d cannot grow to 16 MiB: %v", i, err)
		}
	}

	// Far more than the default 75 inbound streams per peer per protocol
	// (1024 per peer in all).
	for _, proto := range []string{string(PieceProtocol), string(HaveProtocol)} {
		for i := range 500 {
			s, err := rm.OpenStream(p, network.DirInbound)
			if err != nil {
				t.Fatalf("%s: stream %d: %v", proto, i, err)
			}
			defer s.Done()
			if err := s.SetProtocol(protocol.ID(proto)); err != nil {
				t.Fatalf("%s: stream %d: %v", proto, i, err)
			}
		}
	}

	// Up to MaxPeers connections, even from one address (libp2p: 8).
	for i := range cfg.MaxPeers {
		c, err := rm.OpenConnection(network.DirOutbound, true, addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Done()
	}
}
