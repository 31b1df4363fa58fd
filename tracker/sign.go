package tracker

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// SignatureHeader carries the signature of an HTTP announce:
//
//	Shoal-Signature: t=<unix seconds>,sig=<base64url, unpadded>
//
// made with the announcing peer's libp2p key over signedMessage(t, body):
// the exact body bytes and the time, so a token holder cannot speak for
// another peer ID and a captured announce is replayable only within
// MaxSignatureSkew.
const SignatureHeader = "Shoal-Signature"

// MaxSignatureSkew is how far an announce's signing time may be from the
// tracker's clock, either way.
const MaxSignatureSkew = 5 * time.Minute

// maxSignatureHeader bounds the header the parser looks at: t= and an
// Ed25519 signature need about 110 bytes.
const maxSignatureHeader = 512

// Reasons an announce signature is refused; each wraps ErrUnauthorized, so
// the server answers 401 and the client maps it back.
var (
	ErrUnsigned     = fmt.Errorf("%w: announce not signed (%s header missing or malformed)", ErrUnauthorized, SignatureHeader)
	ErrStale        = fmt.Errorf("%w: announce signature outside the allowed clock skew", ErrUnauthorized)
	ErrNoPublicKey  = fmt.Errorf("%w: peer ID does not carry its public key", ErrUnauthorized)
	ErrBadSignature = fmt.Errorf("%w: announce signature does not verify against the peer ID", ErrUnauthorized)
)

// signedMessage is what is signed: a domain prefix (so the signature is
// good for nothing else the key signs), the time and the body.
func signedMessage(at int64, body []byte) []byte {
	const prefix = "shoal-announce/1\n"
	t := strconv.FormatInt(at, 10)
	msg := make([]byte, 0, len(prefix)+len(t)+1+len(body))
	msg = append(msg, prefix...)
	msg = append(msg, t...)
	msg = append(msg, '\n')
	return append(msg, body...)
}

// SignAnnounce returns the SignatureHeader value for body signed by key at
// time at.
func SignAnnounce(key crypto.PrivKey, body []byte, at time.Time) (string, error) {
	t := at.Unix()
	sig, err := key.Sign(signedMessage(t, body))
	if err != nil {
		return "", fmt.Errorf("tracker: sign announce: %w", err)
	}
	return "t=" + strconv.FormatInt(t, 10) + ",sig=" + base64.RawURLEncoding.EncodeToString(sig), nil
}

// ParseSignature reads a SignatureHeader value. Anything but exactly
// "t=<decimal>,sig=<base64url>", in the one form SignAnnounce writes (no
// leading zero, no stray bits in the last base64 character), wraps
// ErrUnsigned: a signature has a single spelling.
func ParseSignature(h string) (at int64, sig []byte, err error) {
	if h == "" || len(h) > maxSignatureHeader {
		return 0, nil, ErrUnsigned
	}
	ts, sigs, ok := strings.Cut(h, ",")
	ts, okT := strings.CutPrefix(ts, "t=")
	sigs, okS := strings.CutPrefix(sigs, "sig=")
	if !ok || !okT || !okS {
		return 0, nil, ErrUnsigned
	}
	if ts == "" || len(ts) > 19 || strings.TrimLeft(ts, "0123456789") != "" || len(ts) > 1 && ts[0] == '0' {
		return 0, nil, ErrUnsigned
	}
	at, err = strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, nil, ErrUnsigned
	}
	sig, err = base64.RawURLEncoding.Strict().DecodeString(sigs)
	if err != nil || len(sig) == 0 {
		return 0, nil, ErrUnsigned
	}
	return at, sig, nil
}

// PublicKey extracts the public key inlined in a peer ID (Ed25519 IDs carry
// it); an ID that does not parse or only hashes its key wraps ErrNoPublicKey.
func PublicKey(id string) (crypto.PubKey, error) {
	p, err := peer.Decode(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrNoPublicKey, truncate(id), err)
	}
	pub, err := p.ExtractPublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoPublicKey, p, err)
	}
	return pub, nil
}

// VerifyAnnounce checks header (a SignatureHeader value) as the signature
// of body by the key of peer ID id, made within MaxSignatureSkew of now.
// The error wraps ErrUnsigned, ErrStale, ErrNoPublicKey or ErrBadSignature.
func VerifyAnnounce(header, id string, body []byte, now time.Time) error {
	at, sig, err := ParseSignature(header)
	if err != nil {
		return err
	}
	skew := now.Sub(time.Unix(at, 0))
	if at > now.Add(MaxSignatureSkew).Unix() || skew > MaxSignatureSkew {
		return fmt.Errorf("%w: signed at %d, tracker time %d", ErrStale, at, now.Unix())
	}
	pub, err := PublicKey(id)
	if err != nil {
		return err
	}
	ok, err := pub.Verify(signedMessage(at, body), sig)
	if err != nil || !ok {
		return ErrBadSignature
	}
	return nil
}

// IsSignatureError reports whether err is one of the signature refusals.
func IsSignatureError(err error) bool {
	return errors.Is(err, ErrUnsigned) || errors.Is(err, ErrStale) || errors.Is(err, ErrNoPublicKey) || errors.Is(err, ErrBadSignature)
}

// SignedBy returns a copy of c that signs its announces with key, as
// WithKey does: one tracker connection setup shared by clients that
// announce different peers (tests start many in one process).
func (c *Client) SignedBy(key crypto.PrivKey) *Client {
	cc := *c
	cc.key = key
	return &cc
}
