package tracker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SessionHeader makes an agent's steady announces cheap to check. An
// Ed25519 check costs a tracker about 50 µs of CPU, too much for tens of
// thousands of announces a second on one core; an HMAC costs about 1 µs.
//
// An announce signed with SignatureHeader may ask for a session with
//
//	Shoal-Session: new
//
// and the answer then carries a Session: a key the tracker derives from a
// secret of its own, the peer ID and an expiry, HMAC-SHA256(secret,
// "shoal-session/1\n" ‖ id ‖ "\n" ‖ expiry), so it keeps no state per
// session. Until it expires, the agent announces with
//
//	Shoal-Session: id=<peer ID>,e=<expiry>,t=<unix seconds>,mac=<base64url>
//
// in place of a signature, the MAC being HMAC-SHA256(key, the message a
// signature signs). Only the tracker and the agent know the key, provided
// the API runs over TLS (without TLS, whoever reads the traffic also reads
// the cluster token). A tracker that restarted has a new secret: it refuses
// the MAC with 401 and the agent signs again and asks for a new session.
const SessionHeader = "Shoal-Session"

// SessionTTL is how long a session key is good for.
const SessionTTL = time.Hour

// sessionRenew: a session this close to its expiry is renewed by signing.
const sessionRenew = 5 * time.Minute

// Session is the answer's session key (base64url) and its expiry (unix
// seconds).
type Session struct {
	Key     string `json:"key"`
	Expires int64  `json:"expires"`
}

// ErrBadSession: a session MAC that does not verify, is malformed or expired.
var ErrBadSession = fmt.Errorf("%w: announce session MAC does not verify or has expired", ErrUnauthorized)

// SessionKey derives the key of peer id's session ending at expires.
func SessionKey(secret []byte, id string, expires int64) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("shoal-session/1\n" + id + "\n" + strconv.FormatInt(expires, 10)))
	return m.Sum(nil)
}

// NewSession returns the session the tracker with secret hands to id at now.
func NewSession(secret []byte, id string, now time.Time) Session {
	exp := now.Add(SessionTTL).Unix()
	return Session{Key: base64.RawURLEncoding.EncodeToString(SessionKey(secret, id, exp)), Expires: exp}
}

// MACAnnounce returns the SessionHeader value for body announced by id with
// session s at time at.
func MACAnnounce(s Session, id string, body []byte, at time.Time) (string, error) {
	key, err := base64.RawURLEncoding.DecodeString(s.Key)
	if err != nil || len(key) != sha256.Size {
		return "", fmt.Errorf("%w: session key", ErrInvalid)
	}
	t := at.Unix()
	m := hmac.New(sha256.New, key)
	m.Write(signedMessage(t, body))
	return "id=" + id + ",e=" + strconv.FormatInt(s.Expires, 10) + ",t=" + strconv.FormatInt(t, 10) +
		",mac=" + base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// VerifySession checks header, a SessionHeader value other than "new", as
// the MAC of body by the session of the peer it names, and returns that
// peer ID. The error wraps ErrBadSession.
func VerifySession(secret []byte, header string, body []byte, now time.Time) (string, error) {
	if len(header) > maxSignatureHeader {
		return "", ErrBadSession
	}
	var id, es, ts, macs string
	for f := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "id":
			id = v
		case "e":
			es = v
		case "t":
			ts = v
		case "mac":
			macs = v
		default:
			return "", ErrBadSession
		}
	}
	exp, err1 := strconv.ParseInt(es, 10, 64)
	at, err2 := strconv.ParseInt(ts, 10, 64)
	mac, err3 := base64.RawURLEncoding.DecodeString(macs)
	if err1 != nil || err2 != nil || err3 != nil || !validPeerID(id) {
		return "", ErrBadSession
	}
	if exp <= now.Unix() || exp > now.Add(SessionTTL+MaxSignatureSkew).Unix() {
		return "", ErrBadSession
	}
	if skew := now.Sub(time.Unix(at, 0)); skew > MaxSignatureSkew || skew < -MaxSignatureSkew {
		return "", ErrBadSession
	}
	m := hmac.New(sha256.New, SessionKey(secret, id, exp))
	m.Write(signedMessage(at, body))
	if !hmac.Equal(m.Sum(nil), mac) {
		return "", ErrBadSession
	}
	return id, nil
}

// sessions are a client's session keys, by peer ID (copies made by
// SignedBy share them: each announces its own peer).
type sessions struct {
	mu sync.Mutex
	by map[string]Session
}

// get returns id's session if it is good for sessionRenew more.
func (s *sessions) get(id string, now time.Time) (Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.by[id]
	return v, ok && time.Unix(v.Expires, 0).Sub(now) > sessionRenew
}

func (s *sessions) put(id string, v *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.by == nil {
		s.by = make(map[string]Session)
	}
	if v == nil {
		delete(s.by, id)
		return
	}
	s.by[id] = *v
}
