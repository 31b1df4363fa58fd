package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// In requester mode each credential gets its own token, once per
// repository; a wrong credential never rides on a right one's token; no
// credential is anonymous. Identity names whose credentials answered.
func TestRequesterTokens(t *testing.T) {
	t.Parallel()
	origin := newOrigin()
	pushImage(t, origin, "foo", 7)
	auth := &tokenAuth{next: origin, user: "bob", pass: "hunter2"}
	srv := serve(t, auth)
	cfg := testConfig("")
	cfg.Registries = []Registry{{Host: "registry.test", Endpoint: srv.URL, Insecure: true, Credentials: ModeRequester}}
	c := newClient(t, cfg)
	bob := WithCredential(t.Context(), NewBasicCredential("id-bob", "bob", "hunter2"))
	eve := WithCredential(t.Context(), NewBasicCredential("id-eve", "bob", "guess"))

	for range 3 {
		if _, _, err := c.Manifest(bob, "registry.test", "foo", "oci"); err != nil {
			t.Fatalf("Manifest as bob: %v", err)
		}
		if _, _, err := c.Manifest(eve, "registry.test", "foo", "oci"); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Manifest with a wrong password: %v, want ErrUnauthorized", err)
		}
		if _, _, err := c.Manifest(t.Context(), "registry.test", "foo", "oci"); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("Manifest without credentials: %v, want ErrUnauthorized", err)
		}
	}
	if n := auth.issued.Load(); n != 1 {
		t.Errorf("%d tokens issued, want 1 (bob's, cached)", n)
	}
	for _, tc := range []struct {
		ctx  context.Context
		want string
	}{{bob, "requester:id-bob"}, {eve, "requester:id-eve"}, {t.Context(), "anonymous"}} {
		if got := c.Identity(tc.ctx, "registry.test"); got != tc.want {
			t.Errorf("Identity = %q, want %q", got, tc.want)
		}
	}
	if !c.WantsCredentials(t.Context(), "registry.test") {
		t.Error("a registry whose /v2/ answers 401 wants no credentials")
	}
}

// Node mode (explicit, or auto with node credentials) ignores what a
// requester sends and is the node's identity; auto without node
// credentials is requester mode; a public registry wants no credentials.
func TestModes(t *testing.T) {
	t.Parallel()
	origin := newOrigin()
	pushImage(t, origin, "foo", 9)
	private := serve(t, basicAuth(origin, "alice", "s3cret"))
	public := serve(t, origin)
	mallory := WithCredential(t.Context(), NewBasicCredential("id-m", "mallory", "x"))
	for _, tc := range []struct {
		name     string
		reg      Registry
		identity string
		wants    bool
		err      error
	}{
		{"node, configured", Registry{Username: "alice", Password: "s3cret"}, "", false, nil},
		{"auto, configured", Registry{Username: "alice", Password: "s3cret"}, "", false, nil},
		{"auto, none", Registry{}, "requester:id-m", true, ErrUnauthorized},
		{"requester", Registry{Credentials: ModeRequester}, "requester:id-m", true, ErrUnauthorized},
	} {
		r := tc.reg
		r.Host, r.Endpoint, r.Insecure = hostOf(private), private.URL, true
		if strings.HasPrefix(tc.name, "node") {
			r.Credentials = ModeNode
		}
		cfg := testConfig("")
		cfg.DockerConfig = writeDockerConfig(t, "other.example", "x", "y")
		cfg.Registries = []Registry{r, {Host: hostOf(public), Endpoint: public.URL, Insecure: true, Credentials: ModeRequester}}
		c := newClient(t, cfg)
		if got := c.Identity(mallory, r.Host); got != tc.identity {
			t.Errorf("%s: Identity = %q, want %q", tc.name, got, tc.identity)
		}
		if got := c.WantsCredentials(t.Context(), r.Host); got != tc.wants {
			t.Errorf("%s: WantsCredentials = %v", tc.name, got)
		}
		if _, _, err := c.Manifest(mallory, r.Host, "foo", "oci"); !errors.Is(err, tc.err) {
			t.Errorf("%s: Manifest as mallory = %v, want %v", tc.name, err, tc.err)
		}
		if c.WantsCredentials(t.Context(), hostOf(public)) {
			t.Errorf("%s: a public registry wants credentials", tc.name)
		}
	}
}

func TestParseModeAndPrinting(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Mode{"": ModeAuto, "auto": ModeAuto, "node": ModeNode, "requester": ModeRequester} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseMode("tenant"); !errors.Is(err, ErrConfig) {
		t.Errorf("ParseMode(tenant) = %v", err)
	}
	c := NewBasicCredential("0123456789abcdef", "alice", "pa55word")
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprintf("%+v", *c), c.LogValue().String()} {
		if strings.Contains(s, "pa55word") {
			t.Errorf("the secret is printed: %s", s)
		}
	}
	bad := testConfig("")
	bad.Registries = []Registry{{Host: "r.test", Username: "a", Password: "b", Credentials: ModeRequester}}
	if err := bad.Validate(); !errors.Is(err, ErrConfig) {
		t.Errorf("a username in requester mode: %v", err)
	}
}
