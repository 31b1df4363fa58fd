package p2p_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
	"github.com/multiformats/go-multiaddr"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/p2ptest"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/p2p/wire"
)

// metaSource is a MemorySource that also answers meta requests from a
// table, optionally held at a gate.
type metaSource struct {
	p2p.Source
	mu    sync.Mutex
	infos map[digest.Digest]*piece.Info
	peers []peer.AddrInfo
	err   error
	gate  chan struct{} // if set, Meta waits for it (or ctx)
	asked chan struct{} // if set, Meta signals each call
}

var _ p2p.MetaSource = (*metaSource)(nil)

func (m *metaSource) Meta(ctx context.Context, d digest.Digest) (*piece.Info, []peer.AddrInfo, error) {
	if m.asked != nil {
		m.asked <- struct{}{}
	}
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, nil, m.err
	}
	info, ok := m.infos[d]
	if !ok {
		return nil, nil, p2p.ErrUnknownBlob
	}
	return info, m.peers, nil
}

func newMetaNode(t *testing.T, infos ...*piece.Info) (*node, *metaSource) {
	t.Helper()
	src := &metaSource{Source: p2ptest.NewMemorySource(), infos: make(map[digest.Digest]*piece.Info)}
	for _, i := range infos {
		src.infos[i.Digest] = i
	}
	return newNodeWith(t, nil, src), src
}

// infoOf is the metainfo of a random blob of pieces pieces of psize bytes.
func infoOf(t *testing.T, pieces int, psize int64) *piece.Info {
	t.Helper()
	data := randomBytes(t, pieces*int(psize))
	info := &piece.Info{Digest: digest.FromBytes(data), Size: int64(len(data)), PieceSize: psize}
	for n := range pieces {
		off, length := info.Span(n)
		info.Pieces = append(info.Pieces, piece.Sum(data[off:off+length]))
	}
	return info
}

func randomAddrInfo(t *testing.T, addrs ...string) peer.AddrInfo {
	t.Helper()
	id, err := test.RandPeerID()
	if err != nil {
		t.Fatal(err)
	}
	ai := peer.AddrInfo{ID: id}
	for _, a := range addrs {
		ai.Addrs = append(ai.Addrs, multiaddr.StringCast(a))
	}
	return ai
}

// A peer tells the shape, the CIDs after those the client knows and the
// peers it knows of, but never the client, itself or a peer it has no
// address for; it asks again for answers longer than one message carries.
func TestMeta(t *testing.T) {
	t.Parallel()
	small := infoOf(t, 5, 100)
	large := infoOf(t, wire.MaxMetaPieces+10, 1)
	server, src := newMetaNode(t, small, large)
	client := newNode(t, nil)
	connect(t, client, server)
	holder := randomAddrInfo(t, "/ip4/10.0.0.1/tcp/4001", "/dns/holder.example/tcp/4001")
	src.peers = []peer.AddrInfo{
		holder,
		{ID: client.ID(), Addrs: client.Addrs()},
		{ID: server.ID(), Addrs: server.Addrs()},
		randomAddrInfo(t), // no address
		holder,            // twice
	}
	ctx := testContext(t)

	for _, tc := range []struct {
		name  string
		info  *piece.Info
		known int
	}{
		{"nothing known", small, 0},
		{"a prefix known", small, 2},
		{"everything known", small, 5},
		{"two messages", large, 0},
		{"the last message", large, wire.MaxMetaPieces + 3},
	} {
		info, peers, err := client.Meta(ctx, server.ID(), tc.info.Digest, tc.info.Pieces[:tc.known])
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if info.Digest != tc.info.Digest || info.Size != tc.info.Size || info.PieceSize != tc.info.PieceSize || !slices.EqualFunc(info.Pieces, tc.info.Pieces, cid.Cid.Equals) {
			t.Errorf("%s: got metainfo of %d pieces, want the server's %d", tc.name, len(info.Pieces), len(tc.info.Pieces))
		}
		if len(peers) != 1 || peers[0].ID != holder.ID || !slices.EqualFunc(peers[0].Addrs, holder.Addrs, multiaddr.Multiaddr.Equal) {
			t.Errorf("%s: got peers %v, want only %v", tc.name, peers, holder)
		}
	}

	// A server that knows only some CIDs says so; the client keeps its own.
	partial := *small
	partial.Pieces = small.Pieces[:3]
	src.mu.Lock()
	src.infos[small.Digest] = &partial
	src.mu.Unlock()
	info, _, err := client.Meta(ctx, server.ID(), small.Digest, small.Pieces[:4])
	if err != nil || len(info.Pieces) != 4 {
		t.Errorf("asking a peer that knows less: %d pieces, %v; want the 4 known", len(info.Pieces), err)
	}
}

func TestMetaRefusals(t *testing.T) {
	t.Parallel()
	info := infoOf(t, 3, 100)
	server, src := newMetaNode(t, info)
	client := newNode(t, nil)
	plain := newNode(t, nil) // a MemorySource: no meta protocol
	connect(t, client, server)
	connect(t, client, plain)
	ctx := testContext(t)

	if _, _, err := client.Meta(ctx, server.ID(), digest.FromString("other"), nil); !errors.Is(err, p2p.ErrUnknownBlob) {
		t.Errorf("unknown blob: %v, want ErrUnknownBlob", err)
	}
	tooMany := append(slices.Clone(info.Pieces), info.Pieces[0])
	if _, _, err := client.Meta(ctx, server.ID(), info.Digest, tooMany); !errors.Is(err, p2p.ErrRemote) {
		t.Errorf("more pieces known than the blob has: %v, want ErrRemote", err)
	}
	if _, _, err := client.Meta(ctx, plain.ID(), info.Digest, nil); err == nil || errors.Is(err, p2p.ErrProtocol) {
		t.Errorf("a peer without the protocol: %v, want a plain error", err)
	}
	src.mu.Lock()
	src.err = errors.New("disk on fire")
	src.mu.Unlock()
	if _, _, err := client.Meta(ctx, server.ID(), info.Digest, nil); !errors.Is(err, p2p.ErrRemote) {
		t.Errorf("source failure: %v, want ErrRemote", err)
	}
}

// Past 16 answers under way, a server refuses Busy at once.
func TestMetaBusy(t *testing.T) {
	t.Parallel()
	info := infoOf(t, 1, 100)
	server, src := newMetaNode(t, info)
	src.gate, src.asked = make(chan struct{}), make(chan struct{})
	ctx := testContext(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 2 {
		client := newNode(t, nil)
		connect(t, client, server)
		for range 8 {
			wg.Go(func() {
				_, _, err := client.Meta(ctx, server.ID(), info.Digest, nil)
				errs <- err
			})
		}
	}
	for range 16 {
		<-src.asked
	}
	late := newNode(t, nil)
	connect(t, late, server)
	if _, _, err := late.Meta(ctx, server.ID(), info.Digest, nil); !errors.Is(err, p2p.ErrBusy) {
		t.Errorf("17th request: %v, want ErrBusy", err)
	}
	close(src.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a request in a slot: %v", err)
		}
	}
}

// A liar's malformed, oversized or inconsistent answers are protocol
// errors, counted, never a crash or a metainfo.
func TestMetaMalformedAnswers(t *testing.T) {
	t.Parallel()
	client := newNode(t, nil)
	info := infoOf(t, 4, 100)
	ok := func(m wire.Meta) wire.Meta {
		m.Status, m.Size, m.PieceSize = wire.StatusOK, info.Size, info.PieceSize
		return m
	}
	badID := ok(wire.Meta{Peers: []wire.Peer{{ID: []byte{0xff, 0xff}, Addrs: [][]byte{multiaddr.StringCast("/ip4/1.2.3.4/tcp/1").Bytes()}}}})
	goodID := []byte(randomAddrInfo(t).ID)
	badAddr := ok(wire.Meta{Peers: []wire.Peer{{ID: goodID, Addrs: [][]byte{{0xff, 0xff, 0xff}}}}})
	full := wire.Meta{Status: wire.StatusOK, Size: wire.MaxMetaPieces + 5, PieceSize: 1}
	for range wire.MaxMetaPieces {
		full.Pieces = append(full.Pieces, info.Pieces[0])
	}
	reshaped := wire.Meta{Status: wire.StatusOK, Size: wire.MaxMetaPieces + 6, PieceSize: 1, From: wire.MaxMetaPieces}
	for name, tc := range map[string]struct {
		known   []cid.Cid
		replies [][]byte
	}{
		"garbage":           {nil, [][]byte{{0xff, 0xff, 0xff, 0xff, 0x0f}}},
		"oversized frame":   {nil, [][]byte{append(varint(wire.MaxMetaMessage+1), byte(wire.TypeMeta))}},
		"wrong message":     {nil, [][]byte{mustAppend(t, wire.Done{})}},
		"refusal with data": {nil, [][]byte{{3, byte(wire.TypeMeta), byte(wire.StatusBusy), 7}}},
		"wrong from":        {info.Pieces[:1], [][]byte{mustAppend(t, ok(wire.Meta{From: 2}))}},
		"bad peer ID":       {nil, [][]byte{mustAppend(t, badID)}},
		"bad address":       {nil, [][]byte{mustAppend(t, badAddr)}},
		"shape changes":     {nil, [][]byte{mustAppend(t, full), mustAppend(t, reshaped)}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			liar := newNode(t, nil)
			liar.LibP2P().SetStreamHandler(p2p.MetaProtocol, func(s network.Stream) {
				br := bufio.NewReader(s)
				for _, r := range tc.replies {
					if _, err := wire.Read(br); err != nil {
						break
					}
					s.Write(r)
				}
				s.Close()
			})
			connect(t, client, liar)
			before := counter(t, client.reg, "shoal_p2p_protocol_errors_total")
			got, _, err := client.Meta(testContext(t), liar.ID(), info.Digest, tc.known)
			if !errors.Is(err, p2p.ErrProtocol) {
				t.Fatalf("Meta = %v, %v; want ErrProtocol", got, err)
			}
			if counter(t, client.reg, "shoal_p2p_protocol_errors_total") == before {
				t.Error("the breach was not counted")
			}
		})
	}
}

// Broken requests reset their stream and are counted; the server goes on
// answering.
func TestMetaMalformedRequests(t *testing.T) {
	t.Parallel()
	info := infoOf(t, 2, 100)
	server, _ := newMetaNode(t, info)
	raw := newNode(t, nil)
	connect(t, raw, server)
	ctx := testContext(t)
	for name, send := range map[string][]byte{
		"oversized frame": {0xff, 0xff, 0xff, 0x7f},
		"wrong message":   mustAppend(t, wire.Have{Index: 1}),
		"short digest":    {3, byte(wire.TypeMetaRequest), 1, 2},
		"from too far":    append(append([]byte{36, byte(wire.TypeMetaRequest)}, make([]byte, 32)...), 0x81, 0x80, 0x40),
	} {
		s, err := raw.LibP2P().NewStream(ctx, server.ID(), p2p.MetaProtocol)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s.Write(send)
		s.CloseWrite()
		s.SetReadDeadline(time.Now().Add(testTimeout))
		if _, err := io.ReadAll(s); err == nil {
			t.Errorf("%s: stream ended cleanly, want a reset", name)
		}
		s.Reset()
	}
	for counter(t, server.reg, "shoal_p2p_protocol_errors_total") < 4 {
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, err := raw.Meta(ctx, server.ID(), info.Digest, nil); err != nil {
		t.Fatalf("Meta after malformed requests: %v", err)
	}
}

func varint(n int) []byte {
	var b []byte
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}
