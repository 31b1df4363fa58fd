package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Mode says whose credentials authorise the requests to a registry.
type Mode string

const (
	// ModeAuto is ModeNode for a registry with node credentials (given in
	// the config or found in the docker keychain), ModeRequester otherwise.
	ModeAuto Mode = ""
	// ModeNode: the agent's own credentials authorise every local request;
	// what a requester sends is ignored.
	ModeNode Mode = "node"
	// ModeRequester: each request is authorised upstream with the
	// credentials its requester sent, or none (tenant isolation).
	ModeRequester Mode = "requester"
)

// ParseMode parses a mode as written in the config: node, requester, or
// auto (or empty).
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "auto":
		return ModeAuto, nil
	case string(ModeNode), string(ModeRequester):
		return Mode(s), nil
	}
	return "", fmt.Errorf("%w: credentials mode %q: want node, requester or auto", ErrConfig, s)
}

// Credential is what a requester sent to be authorised with upstream in
// requester mode. The secret stays in memory: String, GoString and
// LogValue show only a prefix of ID, so neither logs nor error messages
// can carry it.
type Credential struct {
	id   string
	auth authn.Authenticator
}

// NewBasicCredential wraps a user name and password. id must identify
// them without revealing them (a keyed hash, see agent/credential.go): it
// keys the token cache and the agent's confirmations.
func NewBasicCredential(id, username, password string) *Credential {
	return &Credential{id: id, auth: &authn.Basic{Username: username, Password: password}}
}

// NewBearerCredential wraps a token of the upstream's own that the
// requester sent, passed on as is.
func NewBearerCredential(id, token string) *Credential {
	return &Credential{id: id, auth: &authn.Bearer{Token: token}}
}

// ID is the keyed hash naming the credential.
func (c *Credential) ID() string { return c.id }

func (c *Credential) String() string {
	id := c.id
	if len(id) > 8 {
		id = id[:8]
	}
	return "credential:" + id
}

// GoString keeps %#v from printing the secret.
func (c *Credential) GoString() string { return c.String() }

// LogValue implements slog.LogValuer.
func (c *Credential) LogValue() slog.Value { return slog.StringValue(c.String()) }

type credentialKey struct{}

// WithCredential returns ctx carrying the requester's credential (nil:
// the requester sent none).
func WithCredential(ctx context.Context, c *Credential) context.Context {
	if c == nil {
		return ctx
	}
	return context.WithValue(ctx, credentialKey{}, c)
}

// CredentialFrom returns the credential ctx carries, or nil.
func CredentialFrom(ctx context.Context) *Credential {
	c, _ := ctx.Value(credentialKey{}).(*Credential)
	return c
}

// Identity names whose credentials a request for registry made with ctx is
// answered under: "" for the node's own (node mode), "anonymous" for a
// requester that sent none, else "requester:" and the credential's ID. The
// agent keys its confirmations by it. An unroutable registry is "".
func (c *Client) Identity(ctx context.Context, registry string) string {
	u, err := c.route(registry)
	if err != nil || c.mode(ctx, u) == ModeNode {
		return ""
	}
	if cred := CredentialFrom(ctx); cred != nil {
		return "requester:" + cred.id
	}
	return "anonymous"
}

// WantsCredentials reports whether a requester that sent no credentials
// should be asked for some before it is served from registry: the registry
// is in requester mode and its /v2/ answers 401 to an anonymous client.
// Then the agent answers the requester's own /v2/ ping with 401 and a
// Basic challenge, so that clients which decide from that ping whether to
// send credentials (crane, skopeo) send them.
func (c *Client) WantsCredentials(ctx context.Context, registry string) bool {
	u, err := c.route(registry)
	if err != nil || c.mode(ctx, u) != ModeRequester {
		return false
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
	defer cancel()
	ch, err := u.ping.get(bctx, "", func() (*transport.Challenge, error) { return c.pingUpstream(bctx, u) })
	if err != nil {
		return false // the request itself will say what is wrong
	}
	return ch.Scheme != "" // ggcr's ping: no scheme means /v2/ answered 200
}

// nodeCredsRecheck is how long auto mode trusts its last look at the
// keychain: a `docker login` after start takes effect within it.
const nodeCredsRecheck = 30 * time.Second

// mode resolves u's mode; auto looks for node credentials.
func (c *Client) mode(ctx context.Context, u *upstream) Mode {
	if u.mode != ModeAuto {
		return u.mode
	}
	if u.creds != nil {
		return ModeNode
	}
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.nodeAt.IsZero() || now.Sub(u.nodeAt) >= nodeCredsRecheck {
		a, err := c.authenticator(ctx, u)
		// An unreadable keychain is node mode, so the failure is reported.
		u.hasNode = err != nil || a != authn.Anonymous
		u.nodeAt = now
	}
	if u.hasNode {
		return ModeNode
	}
	return ModeRequester
}

// requester returns the credential a request to u is authorised with in
// requester mode, and the key its token is cached under: the repository
// for the node's credentials, the credential's ID and the repository for a
// requester's (a NUL cannot occur in either), so one tenant's token never
// serves another.
func (c *Client) requester(ctx context.Context, u *upstream, repo string) (auth authn.Authenticator, key string, requester bool) {
	if c.mode(ctx, u) != ModeRequester {
		return nil, repo, false
	}
	if cred := CredentialFrom(ctx); cred != nil {
		return cred.auth, cred.id + "\x00" + repo, true
	}
	return authn.Anonymous, "\x00" + repo, true
}
