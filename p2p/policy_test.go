package p2p_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
)

// The protocol IDs carry the piece policy as their major version: two
// nodes that cut blobs differently never exchange pieces. A node of the
// previous policy (its handlers under the 1.x IDs) is refused at
// negotiation, for pieces, watches and metainfo alike.
func TestOtherPiecePolicy(t *testing.T) {
	t.Parallel()
	ids := []protocol.ID{p2p.PieceProtocol, p2p.HaveProtocol, p2p.MetaProtocol}
	major := fmt.Sprintf("/%d.0.0", piece.Policy)
	for _, id := range ids {
		if !strings.HasSuffix(string(id), major) {
			t.Errorf("protocol %s does not name piece policy %d", id, piece.Policy)
		}
	}

	older, client := newNode(t, nil), newNode(t, nil)
	info := older.src.AddBlob(randomBytes(t, 300), 100)
	served := make(chan protocol.ID, 8)
	for _, id := range ids {
		older.LibP2P().RemoveStreamHandler(id)
		old := protocol.ID(strings.TrimSuffix(string(id), major) + "/1.0.0")
		older.LibP2P().SetStreamHandler(old, func(s network.Stream) { served <- old; s.Reset() })
	}
	connect(t, client, older)
	ctx := testContext(t)
	if data, err := client.Fetch(ctx, older.ID(), info.Digest, 0, info.Pieces[0], nil); err == nil {
		t.Errorf("Fetch from a node of the older policy: %d bytes, want an error", len(data))
	}
	if _, _, err := client.Watch(ctx, older.ID(), info.Digest, info.Count()); err == nil {
		t.Error("Watch of a node of the older policy succeeded")
	}
	if _, _, err := client.Meta(ctx, older.ID(), info.Digest, nil); err == nil {
		t.Error("Meta of a node of the older policy succeeded")
	}
	select {
	case id := <-served:
		t.Errorf("the older node was reached on %s", id)
	default:
	}
}
