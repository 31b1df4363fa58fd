package upstream

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// basicAuth serves h only to user:pass.
func basicAuth(h http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// tokenAuth serves h behind the registry token flow: a 401 challenge names
// the realm /token on the same server, which hands out opaque tokens to
// user:pass and counts how often it is asked.
type tokenAuth struct {
	next       http.Handler
	user, pass string
	issued     atomic.Int64
}

func (a *tokenAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		if u, p, ok := r.BasicAuth(); !ok || u != a.user || p != a.pass {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		n := a.issued.Add(1)
		fmt.Fprintf(w, `{"token":"tok-%d-%s"}`, n, strings.Join(r.URL.Query()["scope"], ","))
		return
	}
	if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer tok-") {
		a.next.ServeHTTP(w, r)
		return
	}
	scope := ""
	if repo, _, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v2/"), "/manifests/"); ok {
		scope = fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"%s`, r.Host, scope))
	w.WriteHeader(http.StatusUnauthorized)
}

// writeDockerConfig writes a config.json granting user:pass on host.
func writeDockerConfig(t *testing.T, host, user, pass string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	body := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	origin := newOrigin()
	img := pushImage(t, origin, "private/app", 6)
	srv := serve(t, basicAuth(origin, "alice", "s3cret"))
	host := hostOf(srv)
	withCreds := func(user, pass string) Config {
		cfg := testConfig(srv.URL)
		cfg.Registries = []Registry{{Host: host, Endpoint: srv.URL, Insecure: true, Username: user, Password: pass}}
		return cfg
	}
	withFile := func(host, user, pass string) Config {
		cfg := testConfig(srv.URL)
		cfg.DockerConfig = writeDockerConfig(t, host, user, pass)
		return cfg
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"config", withCreds("alice", "s3cret"), nil},
		{"docker config.json", withFile(host, "alice", "s3cret"), nil},
		{"wrong password", withCreds("alice", "guess"), ErrUnauthorized},
		{"wrong password in config.json", withFile(host, "alice", "guess"), ErrUnauthorized},
		{"credentials for another host", withFile("other.example", "alice", "s3cret"), ErrUnauthorized},
		{"unreadable config.json", withFile(host, "", ""), ErrInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClient(t, tc.cfg)
			_, body, err := c.Manifest(t.Context(), "", "private/app", "oci")
			if !errors.Is(err, tc.want) {
				t.Fatalf("Manifest = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				return
			}
			if !bytes.Equal(body, img.manifests["oci"]) {
				t.Error("manifest differs")
			}
			if b := readAll(t, must(c.Blob(t.Context(), "", "private/app", img.layerDesc.Digest, 10))); !bytes.Equal(b, img.layer[10:]) {
				t.Error("blob differs")
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	origin := newOrigin()
	img := pushImage(t, origin, "foo", 7)
	pushImage(t, origin, "bar", 8)
	auth := &tokenAuth{next: origin, user: "bob", pass: "hunter2"}
	srv := serve(t, auth)
	cfg := testConfig("")
	cfg.Registries = []Registry{{Host: "registry.test", Endpoint: srv.URL, Insecure: true, Username: "bob", Password: "hunter2"}}
	c := newClient(t, cfg)
	ctx := t.Context()

	for range 3 {
		if _, body, err := c.Manifest(ctx, "registry.test", "foo", "index"); err != nil || !bytes.Equal(body, img.manifests["index"]) {
			t.Fatalf("Manifest: %v", err)
		}
		if _, err := c.HeadManifest(ctx, "registry.test", "foo", "docker"); err != nil {
			t.Fatalf("HeadManifest: %v", err)
		}
		if _, err := c.BlobSize(ctx, "registry.test", "foo", img.layerDesc.Digest); err != nil {
			t.Fatalf("BlobSize: %v", err)
		}
		if b := readAll(t, must(c.Blob(ctx, "registry.test", "foo", img.layerDesc.Digest, 100))); !bytes.Equal(b, img.layer[100:]) {
			t.Fatal("blob differs")
		}
		if _, err := c.Tags(ctx, "registry.test", "foo", 0, ""); err != nil {
			t.Fatalf("Tags: %v", err)
		}
	}
	if n := auth.issued.Load(); n != 1 {
		t.Errorf("token endpoint asked %d times for one repository, want 1", n)
	}
	// Concurrent first requests for a new repository share one exchange.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, _, err := c.Manifest(ctx, "registry.test", "bar", "oci"); err != nil {
				t.Errorf("Manifest(bar): %v", err)
			}
		})
	}
	wg.Wait()
	if n := auth.issued.Load(); n != 2 {
		t.Errorf("token endpoint asked %d times for two repositories, want 2", n)
	}

	cfg.Registries[0].Password = "wrong"
	bad := newClient(t, cfg)
	if _, _, err := bad.Manifest(ctx, "registry.test", "foo", "oci"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("Manifest with a wrong password = %v, want ErrUnauthorized", err)
	}
}
