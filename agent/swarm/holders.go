package swarm

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
)

// FromHolders returns the complete metainfo of dgst as the agents the
// tracker says hold it answer it (each hashes its committed copy, see
// Meta), or nil when none does. The seeder asks it before the origin: a
// blob pushed through an agent (agent/push.go) is held by that agent before
// anyone asked the tracker for it, and the seeder takes it from there
// rather than fetch it again. The pieces are still checked against the
// CIDs and the whole blob against its digest.
func (s *Swarm) FromHolders(ctx context.Context, dgst digest.Digest) *piece.Info {
	peers, err := s.tr.Peers(ctx, dgst, s.self.ID)
	if err != nil || len(peers) == 0 {
		return nil
	}
	targets := make([]peer.AddrInfo, 0, min(len(peers), askRecent))
	for _, p := range peers {
		if ai, err := addrInfo(p); err == nil && p.Complete && p.ID != s.self.ID && len(targets) < askRecent {
			targets = append(targets, ai)
		}
	}
	for _, a := range s.ask(ctx, dgst, targets, nil, (*piece.Info).Complete) {
		if a.info.Complete() {
			s.log.Info("metainfo from a holder, before the origin", "digest", dgst, "peer", a.from.ID, "pieces", len(a.info.Pieces))
			return a.info
		}
	}
	return nil
}

// Hashed takes the metainfo of a blob the store has committed, cut by the
// default policy and computed by whoever committed it from the bytes it
// committed (a push, agent/push.go), so that peers asking for it are
// answered without reading the blob again. Anything else is ignored.
func (s *Swarm) Hashed(info *piece.Info) {
	if info == nil || info.Validate() != nil || !info.Complete() || info.PieceSize != piece.SizeFor(info.Size) {
		return
	}
	if _, err := s.store.Stat(context.Background(), info.Digest); err != nil {
		return
	}
	s.pex.hashed.put(info)
}
