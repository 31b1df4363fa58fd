package agenttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TokenService is an in-process bearer-token server for an origin started
// with DistributionOptions.Token. It checks basic credentials and issues
// ES256 JWTs that distribution verifies against the certificate bundle:
// the signing certificate travels in the JWT header's x5c chain.
type TokenService struct {
	// Service is the audience the origin expects (auth.token.service).
	Service string
	// Issuer is the iss claim the origin expects (auth.token.issuer).
	Issuer string
	// CertBundle is the PEM file for auth.token.rootcertbundle.
	CertBundle string

	user, password string
	key            *ecdsa.PrivateKey
	certDER        []byte
	realm          string
	requests       atomic.Int64
	ttl            time.Duration
}

// tokenTTL is long enough for any test, short enough to look real.
const tokenTTL = 5 * time.Minute

// NewTokenService starts a token server on loopback that grants every
// requested action to user/password and refuses everyone else. It stops in
// t.Cleanup.
func NewTokenService(t testing.TB, user, password string) *TokenService {
	t.Helper()
	if user == "" {
		t.Fatal("agenttest: token service needs a user")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("agenttest: token key: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "shoal test token signer"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("agenttest: token certificate: %v", err)
	}
	bundle := filepath.Join(t.TempDir(), "token-ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatalf("agenttest: token bundle: %v", err)
	}
	s := &TokenService{
		Service:    "shoal-test-origin",
		Issuer:     "shoal-test-token-issuer",
		CertBundle: bundle,
		user:       user,
		password:   password,
		key:        key,
		certDER:    der,
		ttl:        tokenTTL,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("agenttest: token listener: %v", err)
	}
	// crane refuses a realm that is a loopback IP literal, so announce the
	// name; Go clients fall back from ::1 to 127.0.0.1 at once.
	s.realm = fmt.Sprintf("http://localhost:%d/token", ln.Addr().(*net.TCPAddr).Port)
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.serveToken)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// Realm is the URL the origin announces in WWW-Authenticate.
func (s *TokenService) Realm() string { return s.realm }

// Requests counts token requests, granted or not.
func (s *TokenService) Requests() int64 { return s.requests.Load() }

// tokenResponse carries the token under both names: docker clients read
// "token", OAuth2 clients (containerd's POST flow) read "access_token".
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

func (s *TokenService) serveToken(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	var user, password, service string
	var scopes []string
	switch r.Method {
	case http.MethodGet:
		var ok bool
		user, password, ok = r.BasicAuth()
		if !ok {
			tokenError(w, http.StatusUnauthorized, "credentials required")
			return
		}
		q := r.URL.Query()
		service, scopes = q.Get("service"), q["scope"]
	case http.MethodPost:
		// OAuth2 password grant, as containerd sends it when it has a secret.
		if err := r.ParseForm(); err != nil {
			tokenError(w, http.StatusBadRequest, "bad form")
			return
		}
		if g := r.PostForm.Get("grant_type"); g != "password" {
			tokenError(w, http.StatusBadRequest, "unsupported grant_type "+g)
			return
		}
		user, password = r.PostForm.Get("username"), r.PostForm.Get("password")
		service, scopes = r.PostForm.Get("service"), r.PostForm["scope"]
	default:
		tokenError(w, http.StatusMethodNotAllowed, "GET or POST")
		return
	}
	if user != s.user || password != s.password {
		tokenError(w, http.StatusUnauthorized, "bad credentials")
		return
	}
	if service != "" && service != s.Service {
		tokenError(w, http.StatusBadRequest, "unknown service "+service)
		return
	}
	access, err := parseScopes(scopes)
	if err != nil {
		tokenError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := time.Now()
	tok, err := s.sign(user, access, now)
	if err != nil {
		tokenError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(tokenResponse{
		Token:       tok,
		AccessToken: tok,
		ExpiresIn:   int(s.ttl / time.Second),
		IssuedAt:    now.UTC().Format(time.RFC3339),
	})
}

func tokenError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// resourceActions is one entry of the access claim.
type resourceActions struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

var errBadScope = errors.New("bad scope")

// parseScopes reads space-separated scopes of the form
// type:name:action[,action], splitting at the first and last colon so that
// a name holding a host:port stays whole.
func parseScopes(scopes []string) ([]resourceActions, error) {
	access := []resourceActions{}
	for _, s := range scopes {
		for _, one := range strings.Fields(s) {
			first, last := strings.Index(one, ":"), strings.LastIndex(one, ":")
			if first <= 0 || last <= first+1 || last == len(one)-1 {
				return nil, fmt.Errorf("%w: %q", errBadScope, one)
			}
			access = append(access, resourceActions{
				Type:    one[:first],
				Name:    one[first+1 : last],
				Actions: strings.Split(one[last+1:], ","),
			})
		}
	}
	return access, nil
}

type jwtHeader struct {
	Type      string   `json:"typ"`
	Algorithm string   `json:"alg"`
	X5c       []string `json:"x5c"`
}

type jwtClaims struct {
	Issuer    string            `json:"iss"`
	Subject   string            `json:"sub"`
	Audience  string            `json:"aud"`
	Expiry    int64             `json:"exp"`
	NotBefore int64             `json:"nbf"`
	IssuedAt  int64             `json:"iat"`
	ID        string            `json:"jti"`
	Access    []resourceActions `json:"access"`
}

// sign encodes a compact JWS by hand: the standard library has ECDSA but
// no JOSE, and the format is three base64url parts.
func (s *TokenService) sign(subject string, access []resourceActions, now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	header, err := json.Marshal(jwtHeader{
		Type:      "JWT",
		Algorithm: "ES256",
		X5c:       []string{base64.StdEncoding.EncodeToString(s.certDER)},
	})
	if err != nil {
		return "", err
	}
	claims, err := json.Marshal(jwtClaims{
		Issuer:    s.Issuer,
		Subject:   subject,
		Audience:  s.Service,
		Expiry:    now.Add(s.ttl).Unix(),
		NotBefore: now.Add(-time.Minute).Unix(),
		IssuedAt:  now.Unix(),
		ID:        base64.RawURLEncoding.EncodeToString(jti[:]),
		Access:    access,
	})
	if err != nil {
		return "", err
	}
	b64 := base64.RawURLEncoding
	signingInput := b64.EncodeToString(header) + "." + b64.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signingInput))
	r, sv, err := ecdsa.Sign(rand.Reader, s.key, sum[:])
	if err != nil {
		return "", err
	}
	// JWS ES256 wants r||s, each left-padded to 32 bytes, not ASN.1.
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return signingInput + "." + b64.EncodeToString(sig), nil
}
