package agenttest

import (
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseScopes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		scopes  []string
		want    []resourceActions
		wantErr bool
	}{
		{name: "none", scopes: nil, want: []resourceActions{}},
		{
			name:   "pull",
			scopes: []string{"repository:app:pull"},
			want:   []resourceActions{{Type: "repository", Name: "app", Actions: []string{"pull"}}},
		},
		{
			name:   "nested name, two actions",
			scopes: []string{"repository:team/app:pull,push"},
			want:   []resourceActions{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}},
		},
		{
			name:   "space separated in one parameter",
			scopes: []string{"repository:a:pull repository:b:push"},
			want: []resourceActions{
				{Type: "repository", Name: "a", Actions: []string{"pull"}},
				{Type: "repository", Name: "b", Actions: []string{"push"}},
			},
		},
		{
			name:   "name with a port",
			scopes: []string{"registry:host:5000:catalog:*"},
			want:   []resourceActions{{Type: "registry", Name: "host:5000:catalog", Actions: []string{"*"}}},
		},
		{name: "no actions", scopes: []string{"repository:app:"}, wantErr: true},
		{name: "no name", scopes: []string{"repository:pull"}, wantErr: true},
		{name: "no type", scopes: []string{":app:pull"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseScopes(tt.scopes)
			if tt.wantErr {
				if !errors.Is(err, errBadScope) {
					t.Fatalf("err = %v, want errBadScope", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"repository:app:pull", "a:b:c,d e:f:g", "::", ":", "x:y:", "repository:a/b:pull,push"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		access, err := parseScopes([]string{s})
		if err != nil {
			return
		}
		for _, a := range access {
			if a.Type == "" || a.Name == "" || len(a.Actions) == 0 {
				t.Fatalf("accepted %q as %+v", s, a)
			}
		}
	})
}

// verifyJWT checks a token the way distribution does: certificate from
// x5c, chained to the bundle's root, ES256 over the signing input.
func verifyJWT(t *testing.T, tok string) jwtClaims {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	b64 := base64.RawURLEncoding
	var h jwtHeader
	hb, err := b64.DecodeString(parts[0])
	if err != nil || json.Unmarshal(hb, &h) != nil {
		t.Fatalf("bad header %q: %v", parts[0], err)
	}
	if h.Algorithm != "ES256" || len(h.X5c) != 1 {
		t.Fatalf("header %+v", h)
	}
	der, err := base64.StdEncoding.DecodeString(h.X5c[0])
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("x5c chain: %v", err)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		t.Fatalf("signature: %d bytes, %v", len(sig), err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	r, sv := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	if !ecdsa.Verify(cert.PublicKey.(*ecdsa.PublicKey), sum[:], r, sv) {
		t.Fatal("signature does not verify")
	}
	var c jwtClaims
	cb, err := b64.DecodeString(parts[1])
	if err != nil || json.Unmarshal(cb, &c) != nil {
		t.Fatalf("bad claims: %v", err)
	}
	return c
}

func TestTokenService(t *testing.T) {
	t.Parallel()
	s := NewTokenService(t, "alice", "secret")
	if !strings.HasPrefix(s.Realm(), "http://localhost:") {
		t.Fatalf("realm %q must name localhost", s.Realm())
	}
	// Dial the loopback address the realm names.
	base := strings.Replace(s.Realm(), "localhost", "127.0.0.1", 1)
	q := url.Values{"service": {s.Service}, "scope": {"repository:team/app:pull,push"}}

	get := func(t *testing.T, user, pass string) *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	decode := func(t *testing.T, resp *http.Response) tokenResponse {
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		var tr tokenResponse
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
			t.Fatal(err)
		}
		return tr
	}

	t.Run("anonymous", func(t *testing.T) {
		if resp := get(t, "", ""); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		if resp := get(t, "alice", "nope"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	})
	t.Run("GET", func(t *testing.T) {
		tr := decode(t, get(t, "alice", "secret"))
		if tr.Token == "" || tr.Token != tr.AccessToken {
			t.Fatalf("token %q, access_token %q", tr.Token, tr.AccessToken)
		}
		c := verifyJWT(t, tr.Token)
		now := time.Now().Unix()
		if c.Issuer != s.Issuer || c.Audience != s.Service || c.Subject != "alice" || c.ID == "" {
			t.Fatalf("claims %+v", c)
		}
		if c.NotBefore > now || c.Expiry <= now || c.IssuedAt > now+1 {
			t.Fatalf("times nbf=%d exp=%d iat=%d now=%d", c.NotBefore, c.Expiry, c.IssuedAt, now)
		}
		want := []resourceActions{{Type: "repository", Name: "team/app", Actions: []string{"pull", "push"}}}
		if !reflect.DeepEqual(c.Access, want) {
			t.Fatalf("access %+v", c.Access)
		}
	})
	t.Run("POST password grant", func(t *testing.T) {
		form := url.Values{
			"grant_type": {"password"}, "username": {"alice"}, "password": {"secret"},
			"service": {s.Service}, "scope": {"repository:app:pull"}, "client_id": {"ctr"},
		}
		resp, err := http.PostForm(base, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		verifyJWT(t, decode(t, resp).AccessToken)
	})
	t.Run("unknown service", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"?service=other", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("alice", "secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})
	if n := s.Requests(); n < 5 {
		t.Fatalf("Requests() = %d, want at least 5", n)
	}
}
