package tracker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/registryshim/grammar"
)

// Source names where the origin holds a blob.
type Source struct {
	Registry string // host[:port]; "" is the tracker's default upstream
	Repo     string // repository name, e.g. "library/alpine"
	Digest   digest.Digest
}

// Validate checks every field as the server does.
func (s Source) Validate() error {
	if s.Registry != "" && !grammar.Registry(s.Registry) {
		return fmt.Errorf("%w: registry %q is not host[:port]", ErrInvalid, s.Registry)
	}
	if !grammar.Repository(s.Repo) {
		return fmt.Errorf("%w: repository %q", ErrInvalid, s.Repo)
	}
	return ValidateDigest(s.Digest)
}

// Peer is an agent (or the seeder) as the tracker hands it out.
type Peer struct {
	ID       string   `json:"id"`
	Addrs    []string `json:"addrs"`
	Seeder   bool     `json:"seeder"`
	Complete bool     `json:"complete"` // holds the whole blob
	Have     int      `json:"have"`     // pieces held
	// Zone is the agent's topology label (a rack, an availability zone):
	// the handout prefers peers of the asker's zone. Optional; see
	// ValidateZone.
	Zone string `json:"zone,omitempty"`
}

// BlobState is what an agent holds of one blob.
type BlobState struct {
	Digest   digest.Digest `json:"digest"`
	Have     int           `json:"have"`
	Complete bool          `json:"complete"`
}

// Announce is an agent's periodic report: who it is and which blobs it is
// downloading or holds. Peer.Complete and Peer.Have are per blob, so they are
// taken from Blobs and ignored here.
type Announce struct {
	Peer  Peer
	Blobs []BlobState
	// Pieces is the announcer's piece policy as DecodeAnnounce read it: 0
	// from an agent older than policy 2, which sends none. The wire form
	// always carries this binary's piece.Policy.
	Pieces int
}

// Protocol bounds. A request or response beyond them is invalid.
const (
	// MaxRequestBody bounds a request body the server reads.
	MaxRequestBody  = 1 << 20
	maxPeersBody    = 8 << 20
	maxErrorBody    = 64 << 10
	maxAnnounceResp = 16 << 10 // an interval and up to MaxPreheatItems
	maxListedResp   = 1 << 10
	// A complete Info of MaxPieces CIDs (about 62 bytes each in JSON).
	maxInfoBody = 72 << 20

	maxPeerIDLen = 128
	maxAddrs     = 16
	maxAddrLen   = 256
	// MaxAnnounceBlobs bounds the blobs of one announce.
	MaxAnnounceBlobs = 8192
	// MaxMessageLen bounds the message of an error answer.
	MaxMessageLen = 1024
)

// wireAnnounce is the body of POST /v1/announce.
type wireAnnounce struct {
	Peer   wireIdent   `json:"peer"`
	Blobs  []BlobState `json:"blobs"`
	Pieces int         `json:"pieces,omitempty"`
}

type wireIdent struct {
	ID     string   `json:"id"`
	Addrs  []string `json:"addrs"`
	Seeder bool     `json:"seeder"`
	Zone   string   `json:"zone,omitempty"`
}

// AnnounceResponse is the answer to POST /v1/announce.
type AnnounceResponse struct {
	IntervalMs int64 `json:"intervalMs"`
	// Preheat is blobs the tracker asks this agent to fetch (preheat.go).
	Preheat []PreheatItem `json:"preheat,omitempty"`
	// Session answers a signed announce that asked for one (session.go).
	Session *Session `json:"session,omitempty"`
}

// ListedResponse is the answer to GET /v1/peers/{id}: whether the tracker
// lists that peer ID now (it announced within the peer TTL).
type ListedResponse struct {
	Listed bool `json:"listed"`
}

// PeersResponse is the answer to GET /v1/blobs/{digest}/peers.
type PeersResponse struct {
	Peers []Peer `json:"peers"`
}

func (a Announce) wire() wireAnnounce {
	return wireAnnounce{
		Peer:   wireIdent{ID: a.Peer.ID, Addrs: a.Peer.Addrs, Seeder: a.Peer.Seeder, Zone: a.Peer.Zone},
		Blobs:  a.Blobs,
		Pieces: piece.Policy,
	}
}

// DecodeAnnounce reads the body of POST /v1/announce (at most
// MaxRequestBody bytes, decoded strictly) and checks it as Validate does.
func DecodeAnnounce(r io.Reader) (Announce, error) {
	var w wireAnnounce
	if err := decodeStrict(r, MaxRequestBody, &w); err != nil {
		return Announce{}, err
	}
	a := Announce{Peer: Peer{ID: w.Peer.ID, Addrs: w.Peer.Addrs, Seeder: w.Peer.Seeder, Zone: w.Peer.Zone}, Blobs: w.Blobs, Pieces: w.Pieces}
	return a, a.Validate()
}

// Validate checks an announce as the server does: a valid peer and zone,
// at most 8192 blobs, each with a sha256 digest and a piece count in range.
func (a Announce) Validate() error {
	if err := validIdent(a.Peer.ID, a.Peer.Addrs); err != nil {
		return err
	}
	if err := ValidateZone(a.Peer.Zone); err != nil {
		return err
	}
	if len(a.Blobs) > MaxAnnounceBlobs {
		return fmt.Errorf("%w: %d blobs, at most %d", ErrInvalid, len(a.Blobs), MaxAnnounceBlobs)
	}
	for _, b := range a.Blobs {
		if err := ValidateDigest(b.Digest); err != nil {
			return err
		}
		if b.Have < 0 || b.Have > piece.MaxPieces {
			return fmt.Errorf("%w: blob %s: have %d", ErrInvalid, b.Digest, b.Have)
		}
	}
	return nil
}

// maxTokenLen bounds the token so comparing it stays cheap.
const maxTokenLen = 4096

// ValidateToken checks a cluster token: 1 to 4096 bytes of printable ASCII
// without spaces (what a header token may hold).
func ValidateToken(tok string) error {
	switch {
	case tok == "":
		return errors.New("token is required")
	case len(tok) > maxTokenLen:
		return fmt.Errorf("token longer than %d bytes", maxTokenLen)
	case !printable(tok):
		return errors.New("token must be printable ASCII without spaces")
	}
	return nil
}

// printable reports whether s is visible ASCII.
func printable(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// ValidatePeerID checks the self parameter of a peers request.
func ValidatePeerID(id string) error {
	if !validPeerID(id) {
		return fmt.Errorf("%w: peer ID %q", ErrInvalid, truncate(id))
	}
	return nil
}

// FromParam is the query parameter by which an agent that holds the first
// N piece hashes of a blob asks for the metainfo's hashes from piece N on
// only; the answer (MetaInfoDelta) then names N in From. Without it every
// long poll would carry again every hash the agent holds: on the testbed
// (10 hosts at 5 MB/s, 200 MiB in 5 layers) 6,261 polls sent about 30 MB,
// a tenth of what the link of the tracker's host, its seeder's, carried.
const FromParam = "from"

// MetaInfoDelta is a metainfo answer: Pieces start at piece From. From is
// left out (0) in a whole Info, as a tracker that does not know FromParam
// answers.
type MetaInfoDelta struct {
	piece.Info
	From int `json:"from,omitempty"`
}

// ParseFrom reads the from parameter of a metainfo request: "" is 0, else
// 0 to piece.MaxPieces.
func ParseFrom(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	from, err := strconv.Atoi(v)
	if err != nil || from < 0 || from > piece.MaxPieces {
		return 0, fmt.Errorf("%w: from %q", ErrInvalid, truncate(v))
	}
	return from, nil
}

// ParseHave reads the have parameter of a metainfo request: "" is -1 (answer
// as soon as anything is known), else -1 to piece.MaxPieces.
func ParseHave(v string) (int, error) {
	if v == "" {
		return -1, nil
	}
	have, err := strconv.Atoi(v)
	if err != nil || have < -1 || have > piece.MaxPieces {
		return 0, fmt.Errorf("%w: have %q", ErrInvalid, truncate(v))
	}
	return have, nil
}

// PiecesParam is the query parameter by which an agent names its piece
// policy (piece.Policy) in peers and metainfo requests, and PiecesHeader
// the header by which the tracker's answers name the tracker's: the
// client takes no answer without it, since a tracker older than policy 2
// ignores the parameter.
const (
	PiecesParam  = "pieces"
	PiecesHeader = "Shoal-Pieces"
)

// CheckPolicy checks the piece policy a request names (PiecesParam; absent
// from agents older than policy 2, so policy 1): another policy than this
// binary's is ErrPolicy, since its pieces are not ours; a value that is
// not a number is ErrInvalid.
func CheckPolicy(v string) error {
	policy := 1
	if v != "" {
		var err error
		if policy, err = strconv.Atoi(v); err != nil || policy < 1 {
			return fmt.Errorf("%w: piece policy %q", ErrInvalid, truncate(v))
		}
	}
	if policy != piece.Policy {
		return fmt.Errorf("%w: the agent cuts blobs by piece policy %d, this tracker by %d: upgrade the older of the two", ErrPolicy, policy, piece.Policy)
	}
	return nil
}

func (p *Peer) validate() error {
	if err := validIdent(p.ID, p.Addrs); err != nil {
		return err
	}
	if p.Have < 0 || p.Have > piece.MaxPieces {
		return fmt.Errorf("%w: peer %s: have %d", ErrInvalid, p.ID, p.Have)
	}
	return ValidateZone(p.Zone)
}

// MaxZoneLen bounds a zone label.
const MaxZoneLen = 63

// ValidateZone accepts a zone label: empty (no zone), or 1 to 63 of
// a-z, 0-9, '.', '_' and '-' (a Kubernetes topology value lower-cased
// fits).
func ValidateZone(z string) error {
	if len(z) > MaxZoneLen {
		return fmt.Errorf("%w: zone %q: longer than %d bytes", ErrInvalid, truncate(z), MaxZoneLen)
	}
	for i := range len(z) {
		if c := z[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: zone %q: only a-z, 0-9, '.', '_' and '-'", ErrInvalid, truncate(z))
		}
	}
	return nil
}

func validIdent(id string, addrs []string) error {
	if err := ValidatePeerID(id); err != nil {
		return err
	}
	if len(addrs) == 0 || len(addrs) > maxAddrs {
		return fmt.Errorf("%w: peer %s: %d addresses, want 1 to %d", ErrInvalid, id, len(addrs), maxAddrs)
	}
	for _, a := range addrs {
		if !validAddr(a) {
			return fmt.Errorf("%w: peer %s: address %q", ErrInvalid, id, truncate(a))
		}
	}
	return nil
}

// validPeerID accepts the alphabets of libp2p peer IDs (base58, base32/36
// CIDs) without parsing them: to the tracker an ID is an opaque name.
func validPeerID(id string) bool {
	if id == "" || len(id) > maxPeerIDLen {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// validAddr accepts what looks like a multiaddr string; agents parse it.
func validAddr(a string) bool {
	return len(a) > 1 && len(a) <= maxAddrLen && a[0] == '/' && printable(a)
}

// ValidateDigest accepts the digests the tracker knows: sha256 only.
func ValidateDigest(d digest.Digest) error {
	if canonicalSHA256(string(d)) {
		return nil // what every announce holds, checked without the regexp
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: digest %q: %v", ErrInvalid, truncate(string(d)), err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("%w: digest %s: only sha256 is supported", ErrInvalid, d.Algorithm())
	}
	return nil
}

// canonicalSHA256 reports whether s is "sha256:" and 64 lower-case hex
// digits, the form digest.Validate accepts for sha256.
func canonicalSHA256(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for i := range len(h) {
		if c := h[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// decodeStrict decodes exactly one JSON value from at most limit bytes of r
// into v, rejecting unknown fields and trailing data.
func decodeStrict(r io.Reader, limit int64, v any) error {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if int64(len(data)) > limit {
		return fmt.Errorf("%w: body larger than %d bytes", ErrInvalid, limit)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: trailing data after the JSON value", ErrInvalid)
	}
	return nil
}

// truncate keeps hostile input out of error messages and logs at length.
func truncate(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
