package p2p

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/p2p/wire"
)

// MetaSource is the optional part of a Source that answers /shoal/meta:
// Serve finds it by type assertion and speaks the protocol only if the
// Source has it. It is how nodes keep a swarm going without its tracker:
// they tell each other a blob's metainfo and who else holds it.
type MetaSource interface {
	// Meta returns what the node knows of dgst: its metainfo (size, piece
	// size and the piece CIDs known so far, perhaps none) and peers that
	// hold or fetch it, with the addresses to dial them at. ErrUnknownBlob
	// if it knows nothing of dgst. It must end promptly once ctx ends.
	Meta(ctx context.Context, dgst digest.Digest) (*piece.Info, []peer.AddrInfo, error)
}

// maxMetaAnswers bounds the meta requests a host answers at once; past it
// they are refused Busy. A source may hash a whole blob for the first one.
const maxMetaAnswers = 16

// serveMeta answers the MetaRequests of one stream until the client closes
// it or stays silent for RequestTimeout.
func (h *Host) serveMeta(s network.Stream) {
	if !h.enter() {
		s.Reset()
		return
	}
	defer h.leave()
	br := bufio.NewReaderSize(s, 64)
	for first := true; ; first = false {
		_ = s.SetReadDeadline(time.Now().Add(h.cfg.RequestTimeout))
		req, err := expect[wire.MetaRequest](wire.Read(br))
		switch {
		case err == nil:
		case !first && (errors.Is(err, io.EOF) || isTimeout(err)):
			s.Close()
			return
		default:
			h.broke(s, "reading meta request", err)
			return
		}
		_ = s.SetWriteDeadline(time.Now().Add(h.cfg.StallTimeout))
		if err := wire.Write(s, h.answerMeta(s.Conn().RemotePeer(), req)); err != nil {
			s.Reset()
			return
		}
	}
}

// answerMeta asks the source and cuts its answer to what one Meta carries:
// the CIDs from req.From on, and the peers but the asker and this host.
func (h *Host) answerMeta(asker peer.ID, req wire.MetaRequest) wire.Meta {
	select {
	case h.metaSlots <- struct{}{}:
	default:
		return wire.Meta{Status: wire.StatusBusy}
	}
	ctx, cancel := context.WithTimeout(h.ctx, h.cfg.StallTimeout)
	info, peers, err := h.meta.Meta(ctx, req.Digest)
	cancel()
	<-h.metaSlots
	switch {
	case errors.Is(err, ErrUnknownBlob):
		return wire.Meta{Status: wire.StatusUnknownBlob}
	case err == nil && info.Validate() != nil:
		err = fmt.Errorf("source gave invalid metainfo: %w", info.Validate())
	}
	if err != nil {
		h.log.Error("serving meta", "peer", asker, "digest", req.Digest, "err", err)
		return wire.Meta{Status: wire.StatusInternal}
	}
	if req.From > info.Count() {
		return wire.Meta{Status: wire.StatusBadRequest}
	}
	m := wire.Meta{Status: wire.StatusOK, Size: info.Size, PieceSize: info.PieceSize, From: req.From}
	if req.From < len(info.Pieces) {
		m.Pieces = info.Pieces[req.From:min(len(info.Pieces), req.From+wire.MaxMetaPieces)]
	}
	m.Peers = wirePeers(peers, asker, h.ID())
	return m
}

// wirePeers encodes up to MaxMetaPeers distinct peers with an address,
// leaving out skip and self, each with its first MaxPeerAddrs addresses
// that fit.
func wirePeers(peers []peer.AddrInfo, skip, self peer.ID) []wire.Peer {
	var out []wire.Peer
	seen := make(map[peer.ID]bool)
	for _, ai := range peers {
		if len(out) == wire.MaxMetaPeers {
			break
		}
		id := []byte(ai.ID)
		if ai.ID == skip || ai.ID == self || seen[ai.ID] || len(id) == 0 || len(id) > wire.MaxPeerID {
			continue
		}
		wp := wire.Peer{ID: id}
		for _, a := range ai.Addrs {
			if b := a.Bytes(); len(b) > 0 && len(b) <= wire.MaxAddr && len(wp.Addrs) < wire.MaxPeerAddrs {
				wp.Addrs = append(wp.Addrs, b)
			}
		}
		if wp.Addrs != nil {
			seen[ai.ID] = true
			out = append(out, wp)
		}
	}
	return out
}

// Meta asks p what it knows of dgst beyond known, the piece CIDs the caller
// has already: the blob's shape, the CIDs that follow (asking again while
// answers come full) and peers that hold or fetch the blob, never p or this
// host. The Info returned is known followed by p's CIDs, and valid; its
// size and piece size are p's word, which the caller checks against its own
// metainfo, as every piece is checked against its CID and the blob against
// its digest. Refusals wrap ErrUnknownBlob, ErrBusy or ErrRemote; a
// malformed, oversized or inconsistent answer wraps ErrProtocol.
func (h *Host) Meta(ctx context.Context, p peer.ID, dgst digest.Digest, known []cid.Cid) (*piece.Info, []peer.AddrInfo, error) {
	if _, err := wire.Append(nil, wire.MetaRequest{Digest: dgst, From: len(known)}); err != nil {
		return nil, nil, fmt.Errorf("p2p: meta of %s from %s: %w", dgst, p, err)
	}
	if !h.enter() {
		return nil, nil, ErrClosed
	}
	defer h.leave()
	info, peers, err := h.askMeta(ctx, p, dgst, known)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, nil, fmt.Errorf("p2p: meta of %s from %s: %w", dgst, p, err)
	}
	return info, peers, nil
}

func (h *Host) askMeta(ctx context.Context, p peer.ID, dgst digest.Digest, known []cid.Cid) (*piece.Info, []peer.AddrInfo, error) {
	s, err := h.host.NewStream(ctx, p, MetaProtocol)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	br := bufio.NewReader(s)
	info := &piece.Info{Digest: dgst, Pieces: slices.Clone(known)}
	var peers []peer.AddrInfo
	for first := true; ; first = false {
		from := len(info.Pieces)
		_ = s.SetWriteDeadline(time.Now().Add(h.cfg.StallTimeout))
		if err := wire.Write(s, wire.MetaRequest{Digest: dgst, From: from}); err != nil {
			s.Reset()
			return nil, nil, err
		}
		_ = s.SetReadDeadline(time.Now().Add(h.cfg.StallTimeout))
		m, err := expect[wire.Meta](wire.Read(br))
		if err != nil {
			s.Reset()
			return nil, nil, h.readError(s, err)
		}
		if err := statusError(m.Status); err != nil {
			s.Close()
			return nil, nil, err
		}
		switch {
		case m.From != from:
			err = fmt.Errorf("asked from piece %d, answered from %d", from, m.From)
		case first:
			info.Size, info.PieceSize = m.Size, m.PieceSize
			peers, err = parsePeers(m.Peers, p, h.ID())
		case m.Size != info.Size || m.PieceSize != info.PieceSize:
			err = fmt.Errorf("blob of %d bytes in pieces of %d, then of %d in %d", info.Size, info.PieceSize, m.Size, m.PieceSize)
		}
		if err != nil {
			s.Reset()
			return nil, nil, h.readError(s, fmt.Errorf("%w: %w", wire.ErrMalformed, err))
		}
		info.Pieces = append(info.Pieces, m.Pieces...)
		if len(m.Pieces) < wire.MaxMetaPieces || len(info.Pieces) == info.Count() {
			break
		}
	}
	s.Close()
	if err := info.Validate(); err != nil {
		return nil, nil, h.readError(s, fmt.Errorf("%w: %w", wire.ErrMalformed, err))
	}
	return info, peers, nil
}

// parsePeers decodes a Meta's peers, leaving out skip and self; any peer
// ID or address that does not parse fails the whole answer.
func parsePeers(wps []wire.Peer, skip, self peer.ID) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, wp := range wps {
		id, err := peer.IDFromBytes(wp.ID)
		if err != nil {
			return nil, fmt.Errorf("peer ID: %w", err)
		}
		ai := peer.AddrInfo{ID: id}
		for _, b := range wp.Addrs {
			a, err := multiaddr.NewMultiaddrBytes(b)
			if err != nil {
				return nil, fmt.Errorf("address of %s: %w", id, err)
			}
			ai.Addrs = append(ai.Addrs, a)
		}
		if id != skip && id != self {
			out = append(out, ai)
		}
	}
	return out, nil
}
