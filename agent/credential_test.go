package agent_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/upstream"
)

const (
	tenantUser = "tenant-a"
	tenantPass = "s3cret-of-tenant-a"
)

// privateOrigin is go-containerregistry's registry served twice: raw, for
// the test to push to, and behind basic auth (or the bearer-token flow)
// for the agent, which holds no credentials of its own.
type privateOrigin struct {
	raw, auth *httptest.Server
	tokens    atomic.Int64 // tokens issued (bearer flow)
}

func newPrivateOrigin(t *testing.T, bearer bool) *privateOrigin {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	o := &privateOrigin{raw: httptest.NewServer(reg)}
	t.Cleanup(o.raw.Close)
	o.auth = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		good := ok && user == tenantUser && pass == tenantPass
		switch {
		case !bearer && good:
			reg.ServeHTTP(w, r)
		case !bearer:
			w.Header().Set("WWW-Authenticate", `Basic realm="origin"`)
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/token" && good:
			n := o.tokens.Add(1)
			fmt.Fprintf(w, `{"token":"tok-%d"}`, n)
		case r.URL.Path == "/token":
			w.WriteHeader(http.StatusUnauthorized)
		case strings.HasPrefix(r.Header.Get("Authorization"), "Bearer tok-"):
			reg.ServeHTTP(w, r)
		default:
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, r.Host))
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(o.auth.Close)
	return o
}

func (o *privateOrigin) push(t *testing.T, repo string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(strings.TrimPrefix(o.raw.URL, "http://")+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
}

// call sends one request to the agent with auth as its Authorization
// header ("" for none) and returns status, WWW-Authenticate and the first
// OCI error code of the body.
func call(t *testing.T, n *node, method, path, auth string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, n.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	b, _ := io.ReadAll(resp.Body)
	code := ""
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		code = body.Errors[0].Code
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), code
}

func basicHeader(user, pass string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

// pullWith pulls repo:tag through the agent as a client holding auth
// would, and checks every blob.
func pullWith(t *testing.T, n *node, repo string, auth authn.Authenticator) error {
	t.Helper()
	ref, err := name.ParseReference(n.host()+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithContext(t.Context()), remote.WithAuth(auth))
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		want, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		got := digest.SHA256.Digester()
		_, err = io.Copy(got.Hash(), rc)
		rc.Close()
		if err != nil {
			return err
		}
		if got.Digest().String() != want.String() {
			return fmt.Errorf("layer %s: got %s", want, got.Digest())
		}
	}
	_, err = img.RawConfigFile()
	return err
}

// In requester mode, with no credentials of its own, the agent challenges
// clients, pulls with the credentials they send, and serves nothing it
// holds to a client without them or with wrong ones: 401 for the
// manifest, by tag and by digest, and for every blob, as the origin says.
func TestRequesterCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		bearer bool
		mode   upstream.Mode
	}{
		{"basic origin, requester mode", false, upstream.ModeRequester},
		{"bearer origin, requester mode", true, upstream.ModeRequester},
		{"basic origin, auto mode without node credentials", false, upstream.ModeAuto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := newPrivateOrigin(t, tc.bearer)
			img, err := random.Image(64<<10, 2)
			if err != nil {
				t.Fatal(err)
			}
			o.push(t, "private/app:v1", img)
			n := startAgent(t, t.TempDir(), func(c *nodeConfig) {
				c.Upstream.Default = o.auth.URL
				c.Upstream.Credentials = tc.mode
				c.Upstream.DockerConfig = writeEmptyDockerConfig(t)
			})

			status, chal, _ := call(t, n, http.MethodGet, "/v2/", "")
			if status != http.StatusUnauthorized || chal != `Basic realm="shoal"` {
				t.Fatalf("GET /v2/ without credentials: %d %q, want 401 with a Basic challenge", status, chal)
			}
			good := basicHeader(tenantUser, tenantPass)
			if status, _, _ := call(t, n, http.MethodGet, "/v2/", good); status != http.StatusOK {
				t.Fatalf("GET /v2/ with credentials: %d", status)
			}
			if err := pullWith(t, n, "private/app:v1", &authn.Basic{Username: tenantUser, Password: tenantPass}); err != nil {
				t.Fatalf("pull with the tenant's credentials: %v", err)
			}
			if err := pullWith(t, n, "private/app:v1", &authn.Basic{Username: tenantUser, Password: tenantPass}); err != nil {
				t.Fatalf("warm pull with the tenant's credentials: %v", err)
			}
			if err := pullWith(t, n, "private/app:v1", authn.Anonymous); err == nil {
				t.Fatal("anonymous pull through the agent succeeded")
			}

			md, _ := img.Digest()
			paths := []string{"/v2/private/app/manifests/v1", "/v2/private/app/manifests/" + md.String()}
			cfg, _ := img.ConfigName()
			paths = append(paths, "/v2/private/app/blobs/"+cfg.String())
			layers, _ := img.Layers()
			for _, l := range layers {
				d, _ := l.Digest()
				paths = append(paths, "/v2/private/app/blobs/"+d.String())
			}
			for _, auth := range []string{"", basicHeader(tenantUser, "wrong"), basicHeader("tenant-b", tenantPass)} {
				for _, p := range paths {
					for _, m := range []string{http.MethodGet, http.MethodHead} {
						status, chal, code := call(t, n, m, p, auth)
						if status != http.StatusUnauthorized || chal != `Basic realm="shoal"` || (m == http.MethodGet && code != "UNAUTHORIZED") {
							t.Errorf("%s %s with %q: %d %q %q, want 401 UNAUTHORIZED with the challenge", m, p, auth, status, chal, code)
						}
					}
				}
			}
			for _, p := range paths {
				if status, _, _ := call(t, n, http.MethodGet, p, good); status != http.StatusOK {
					t.Errorf("GET %s with the tenant's credentials: %d", p, status)
				}
			}
			if tc.bearer && o.tokens.Load() == 0 {
				t.Error("no token was exchanged")
			}
		})
	}
}

// writeEmptyDockerConfig gives the agent a keychain with nothing in it,
// so the host's own docker credentials never count as the node's.
func writeEmptyDockerConfig(t *testing.T) string {
	t.Helper()
	path := t.TempDir() + "/config.json"
	if err := os.WriteFile(path, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Malformed Authorization headers are 401 UNAUTHORIZED with the OCI body
// and the challenge, on any route, never a panic or a 500.
func TestMalformedAuthorization(t *testing.T) {
	t.Parallel()
	o := newPrivateOrigin(t, false)
	n := startAgent(t, t.TempDir(), func(c *nodeConfig) {
		c.Upstream.Default = o.auth.URL
		c.Upstream.Credentials = upstream.ModeRequester
	})
	for _, h := range []string{
		"Basic", "Basic !!!", "Basic " + "dXNlcg==", // no ':'
		"Basic " + "dXNlcgpuYW1lOnBhc3M=", // a newline in the user
		"Digest username=x", "Bearer", "Bearer a b",
		"Basic " + strings.Repeat("A", 9000),
	} {
		for _, p := range []string{"/v2/", "/v2/private/app/manifests/v1", "/v2/private/app/blobs/sha256:" + strings.Repeat("0", 64)} {
			status, chal, code := call(t, n, http.MethodGet, p, h)
			if status != http.StatusUnauthorized || code != "UNAUTHORIZED" || chal == "" {
				t.Errorf("GET %s with %.20q: %d %q %q, want 401 UNAUTHORIZED with a challenge", p, h, status, code, chal)
			}
		}
	}
}

// In node mode the node's credentials authorise every request: no
// challenge, and what a client sends is not used.
func TestNodeModeIgnoresRequesterCredentials(t *testing.T) {
	t.Parallel()
	o := newPrivateOrigin(t, false)
	img, err := random.Image(32<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	o.push(t, "private/app:v1", img)
	host := strings.TrimPrefix(o.auth.URL, "http://")
	n := startAgent(t, t.TempDir(), func(c *nodeConfig) {
		r := upstreamRegistry(host, o.auth.URL)
		r.Username, r.Password = tenantUser, tenantPass
		c.Upstream.Registries = []upstream.Registry{r}
		c.Upstream.Default = host
	})
	if status, _, _ := call(t, n, http.MethodGet, "/v2/", ""); status != http.StatusOK {
		t.Fatalf("GET /v2/ in node mode: %d", status)
	}
	for _, auth := range []authn.Authenticator{authn.Anonymous, &authn.Basic{Username: "someone", Password: "else"}} {
		if err := pullWith(t, n, "private/app:v1", auth); err != nil {
			t.Fatalf("pull in node mode: %v", err)
		}
	}
}

// While the origin is unreachable, the last known manifest of a tag and
// the blobs confirmed before serve the tenant they were confirmed for,
// and nobody else: an anonymous client or another credential gets no 200.
func TestRequesterOutageServesOnlyWhatWasConfirmedForTheCredential(t *testing.T) {
	t.Parallel()
	o := newPrivateOrigin(t, false)
	img, err := random.Image(32<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	o.push(t, "private/app:v1", img)
	n := startAgent(t, t.TempDir(), func(c *nodeConfig) {
		c.Upstream.Default = o.auth.URL
		c.Upstream.Credentials = upstream.ModeRequester
		c.Agent.TagTTL = 0
		c.Agent.AuthTTL = time.Millisecond // expired at once: the outage path
	})
	if err := pullWith(t, n, "private/app:v1", &authn.Basic{Username: tenantUser, Password: tenantPass}); err != nil {
		t.Fatal(err)
	}
	o.auth.Close()
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	for _, p := range []string{"/v2/private/app/manifests/v1", "/v2/private/app/blobs/" + ld.String()} {
		if status, _, _ := call(t, n, http.MethodGet, p, basicHeader(tenantUser, tenantPass)); status != http.StatusOK {
			t.Errorf("GET %s as the tenant during the outage: %d, want 200 (confirmed before)", p, status)
		}
		for _, auth := range []string{"", basicHeader(tenantUser, "wrong"), basicHeader("tenant-b", "x")} {
			if status, _, _ := call(t, n, http.MethodGet, p, auth); status == http.StatusOK {
				t.Errorf("GET %s as %q during the outage: 200", p, auth)
			}
		}
	}
}
