package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/shoal-dev/shoal/tracker"
)

// Peer admission: agents and the seeder let a peer connect and fetch only
// while this tracker lists its ID. An ID is listed while its last signed
// announce is younger than PeerTTL.

// Refusal reasons of shoal_tracker_announces_refused_total. Never a peer ID.
const (
	refusedSeeder       = "seeder"        // an API announce claiming to be a seeder
	refusedUnsigned     = "unsigned"      // no or a malformed signature header
	refusedStale        = "stale"         // signed outside the clock skew
	refusedNoPublicKey  = "no_public_key" // an ID that does not carry its key
	refusedBadSignature = "bad_signature" // forged, or another peer's ID
	refusedBadSession   = "bad_session"   // a session MAC that does not verify (or the tracker restarted)
	refusedPolicy       = "piece_policy"  // another piece policy: listed, but its blobs are left out
)

// checkSession returns the peer ID whose session MAC r carries (see
// tracker.SessionHeader), "" when it carries none, or a refusal.
func (s *Server) checkSession(r *http.Request, body []byte) (string, error) {
	h := r.Header.Get(tracker.SessionHeader)
	if h == "" || h == "new" {
		return "", nil
	}
	id, err := tracker.VerifySession(s.secret[:], h, body, s.clock.Now())
	if err != nil {
		s.metrics.refused.WithLabelValues(refusedBadSession).Inc()
		s.log.Debug("announce refused: bad session", "remote", r.RemoteAddr)
		return "", err
	}
	return id, nil
}

// Listed reports whether peer ID id announced within PeerTTL (paced with
// the swarm's size, interval.go), as GET /v1/peers/{id} answers. For the
// first PeerTTL after New (paced by the peers that announced since, so the
// window stays open while agents told a long interval come back) the tracker
// cannot tell an unlisted ID from one that has not re-announced since a
// restart, and answers ErrUnavailable for it: askers then keep what they
// admitted before. The seeder's admission asks this in process.
func (s *Server) Listed(_ context.Context, id string) (bool, error) {
	if err := tracker.ValidatePeerID(id); err != nil {
		return false, err
	}
	now := s.clock.Now()
	if s.swarm.listed(id, now) {
		return true, nil
	}
	if now.Sub(s.started) < s.swarm.peerTTL() {
		return false, fmt.Errorf("%w: tracker started %s ago, its list of peers is not complete yet", tracker.ErrUnavailable, now.Sub(s.started).Round(time.Millisecond))
	}
	return false, nil
}

func (s *Server) handleListed(w http.ResponseWriter, r *http.Request) {
	listed, err := s.Listed(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, err)
		return
	}
	s.writeJSON(w, http.StatusOK, tracker.ListedResponse{Listed: listed})
}

// verifyAnnounce checks that body, which decoded to a, is signed by the key
// of a's peer ID, and counts a refusal by its reason.
func (s *Server) verifyAnnounce(r *http.Request, body []byte, a tracker.Announce) error {
	err := tracker.VerifyAnnounce(r.Header.Get(tracker.SignatureHeader), a.Peer.ID, body, s.clock.Now())
	if err == nil {
		return nil
	}
	reason := refusedBadSignature
	switch {
	case errors.Is(err, tracker.ErrUnsigned):
		reason = refusedUnsigned
	case errors.Is(err, tracker.ErrStale):
		reason = refusedStale
	case errors.Is(err, tracker.ErrNoPublicKey):
		reason = refusedNoPublicKey
	}
	s.metrics.refused.WithLabelValues(reason).Inc()
	s.log.Warn("announce refused", "peer", a.Peer.ID, "reason", reason, "remote", r.RemoteAddr)
	return err
}
