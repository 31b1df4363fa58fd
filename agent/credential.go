package agent

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/registryshim"
)

// Requester credentials (issue 13, requester mode). A registry in
// requester mode is asked with the credentials each client sent, never the
// node's: the Authorization header is parsed here, before the shim, into an
// upstream.Credential carried by the request's context, and every upstream
// request made for it (confirmations, manifests, blob downloads and their
// prefetches) uses it. The credential is named by an HMAC of the secret
// under a key drawn at start, so the confirmation cache and the token cache
// can tell tenants apart while nothing derived from the secret outlives the
// process or can be checked against a guess offline. Credentials are never
// logged or written: the header is not passed on, parse errors do not
// quote it, and upstream.Credential prints only a prefix of its ID.

// challenge is what a 401 asks clients for: they retry with the
// credentials they hold for the registry they think the agent is.
const challenge = `Basic realm="shoal"`

// maxAuthorization bounds the header parsed; real ones are far shorter.
const maxAuthorization = 8 << 10

// errMalformedAuth is any Authorization header that cannot be used. Its
// text never quotes the header.
var errMalformedAuth = errors.New("malformed Authorization header")

// authorization is a parsed Authorization header.
type authorization struct {
	scheme   string // "basic" or "bearer"; "" when the client sent none
	user     string
	password string // or the bearer token
}

// parseAuthorization parses an Authorization header: absent, Basic
// base64(user:password), or Bearer token (a token of the upstream's, passed
// on as is). Basic with an empty user and password counts as absent: some
// clients send it when they hold nothing for the registry.
func parseAuthorization(h string) (authorization, error) {
	if h == "" {
		return authorization{}, nil
	}
	if len(h) > maxAuthorization {
		return authorization{}, fmt.Errorf("%w: longer than %d bytes", errMalformedAuth, maxAuthorization)
	}
	scheme, value, _ := strings.Cut(strings.TrimSpace(h), " ")
	value = strings.TrimSpace(value)
	switch {
	case strings.EqualFold(scheme, "basic"):
		raw, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return authorization{}, fmt.Errorf("%w: Basic credentials are not base64", errMalformedAuth)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		switch {
		case !ok:
			return authorization{}, fmt.Errorf("%w: Basic credentials without ':'", errMalformedAuth)
		case !printable(user) || !printable(pass):
			return authorization{}, fmt.Errorf("%w: control characters in Basic credentials", errMalformedAuth)
		case user == "" && pass == "":
			return authorization{}, nil
		}
		return authorization{scheme: "basic", user: user, password: pass}, nil
	case strings.EqualFold(scheme, "bearer"):
		if value == "" || strings.ContainsAny(value, " \t") || !printable(value) {
			return authorization{}, fmt.Errorf("%w: Bearer token malformed", errMalformedAuth)
		}
		return authorization{scheme: "bearer", password: value}, nil
	}
	return authorization{}, fmt.Errorf("%w: scheme is neither Basic nor Bearer", errMalformedAuth)
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return false
		}
	}
	return true
}

// credKeys names requester credentials by a keyed hash.
type credKeys struct {
	key    [32]byte // drawn at start; never leaves the process
	counts *prometheus.CounterVec
}

func newCredentials(r prometheus.Registerer) (*credKeys, error) {
	c := &credKeys{counts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shoal_agent_requester_credentials_total",
		Help: "Registry requests by the credentials their client sent: sent (Authorization header passed upstream in requester mode, used as is in node mode), malformed (refused with 401), challenged (a /v2/ ping without credentials of a registry that wants some, answered 401).",
	}, []string{"result"})}
	if err := r.Register(c.counts); err != nil {
		return nil, fmt.Errorf("agent: credential metrics: %w", err)
	}
	if _, err := rand.Read(c.key[:]); err != nil {
		return nil, fmt.Errorf("agent: credential key: %w", err)
	}
	return c, nil
}

// credential turns a parsed header into the upstream credential (nil when
// the client sent none).
func (c *credKeys) credential(a authorization) *upstream.Credential {
	if a.scheme == "" {
		return nil
	}
	m := hmac.New(sha256.New, c.key[:])
	m.Write([]byte(a.scheme))
	m.Write([]byte{0})
	m.Write([]byte(a.user))
	m.Write([]byte{0})
	m.Write([]byte(a.password))
	id := hex.EncodeToString(m.Sum(nil)[:16])
	if a.scheme == "bearer" {
		return upstream.NewBearerCredential(id, a.password)
	}
	return upstream.NewBasicCredential(id, a.user, a.password)
}

// withCredentials puts the client's credentials into the request's
// context for the shim and the backend below it. A malformed header is 401
// UNAUTHORIZED, with the challenge. A client that sent none and pings /v2/
// of a registry that wants some (upstream.Client.WantsCredentials) is
// challenged there, because crane and skopeo decide from that ping whether
// to send credentials at all. Every 401 below carries the challenge.
func (a *Agent) withCredentials(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, err := parseAuthorization(r.Header.Get("Authorization"))
		if err != nil {
			a.creds.counts.WithLabelValues("malformed").Inc()
			w.Header().Set("WWW-Authenticate", challenge)
			registryshim.WriteError(w, fmt.Errorf("%w: %w", registryshim.ErrUnauthorized, err))
			return
		}
		cred := a.creds.credential(auth)
		ctx := upstream.WithCredential(r.Context(), cred)
		if cred == nil && isBase(r) && a.up.WantsCredentials(ctx, r.URL.Query().Get("ns")) {
			a.creds.counts.WithLabelValues("challenged").Inc()
			w.Header().Set("WWW-Authenticate", challenge)
			registryshim.WriteError(w, fmt.Errorf("base: %w", registryshim.ErrUnauthorized))
			return
		}
		if cred != nil {
			a.creds.counts.WithLabelValues("sent").Inc()
		}
		next.ServeHTTP(&challengeWriter{ResponseWriter: w}, r.WithContext(ctx))
	})
}

// isBase tells the /v2/ ping.
func isBase(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.URL.Path == "/v2/" || r.URL.Path == "/v2")
}

// challengeWriter adds the challenge to every 401 that carries none, as
// the distribution spec asks of a 401.
type challengeWriter struct {
	http.ResponseWriter
}

func (c *challengeWriter) WriteHeader(status int) {
	if status == http.StatusUnauthorized && c.Header().Get("WWW-Authenticate") == "" {
		c.Header().Set("WWW-Authenticate", challenge)
	}
	c.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the connection to flush.
func (c *challengeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
