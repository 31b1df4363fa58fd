package agent

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/registryshim"
)

// A manifest or blob is served under a repository only when the upstream
// has confirmed that the repository holds it: bytes in the store are never
// enough by themselves, or a node would serve a private layer under any
// repository name it is asked for. An authorised GET or HEAD of a manifest
// of R confirms the manifest, and what it references (config, layers, the
// manifests of an index) for R; a HEAD of a blob or manifest in R confirms
// that one. Confirmations are kept in memory for AuthTTL.

// confirmKey names one confirmation. cred identifies the credentials the
// upstream answered (upstream.Client.Identity): "" for the node's own, else
// the requester's (a keyed hash, see credential.go) or "anonymous", so in
// requester mode what one tenant's credentials confirmed serves no other.
type confirmKey struct {
	cred, registry, repo string
	dgst                 digest.Digest
}

// maxConfirms bounds the confirmations kept; beyond it, expired ones go
// first, then any.
const maxConfirms = 1 << 17

// confirms is the confirmation cache. Expired entries are kept (within
// maxConfirms) so that an upstream outage can fall back on them.
type confirms struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	at map[confirmKey]time.Time
}

func newConfirms(ttl time.Duration, now func() time.Time) *confirms {
	return &confirms{ttl: ttl, now: now, at: make(map[confirmKey]time.Time)}
}

func (c *confirms) add(keys ...confirmKey) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if _, ok := c.at[k]; !ok && len(c.at) >= maxConfirms {
			c.trimLocked(now)
		}
		c.at[k] = now
	}
}

// check reports whether k is confirmed within the TTL, and whether it was
// confirmed at all.
func (c *confirms) check(k confirmKey) (fresh, known bool) {
	c.mu.Lock()
	at, ok := c.at[k]
	c.mu.Unlock()
	return ok && c.now().Sub(at) < c.ttl, ok
}

// trimLocked drops expired entries, and a quarter of the rest if that was
// not enough.
func (c *confirms) trimLocked(now time.Time) {
	for k, at := range c.at {
		if now.Sub(at) >= c.ttl {
			delete(c.at, k)
		}
	}
	drop := len(c.at) / 4
	for k := range c.at {
		if drop <= 0 {
			break
		}
		delete(c.at, k)
		drop--
	}
}

// keyOf is the key of a confirmation with the node's credentials.
func keyOf(repo registryshim.Repo, d digest.Digest) confirmKey {
	return confirmKey{registry: repo.Registry, repo: repo.Name, dgst: d}
}

// keyFor is the key of a confirmation for the requester of ctx.
func (a *Agent) keyFor(ctx context.Context, repo registryshim.Repo, d digest.Digest) confirmKey {
	return confirmKey{cred: a.up.Identity(ctx, repo.Registry), registry: repo.Registry, repo: repo.Name, dgst: d}
}

// confirmManifest records that the upstream served m under repo to the
// node's credentials.
func (a *Agent) confirmManifest(repo registryshim.Repo, m *registryshim.Manifest) {
	a.confirmManifestFor(context.Background(), repo, m)
}

// confirmManifestFor records that the upstream served m under repo to the
// requester of ctx: m and what it references are confirmed for repo.
func (a *Agent) confirmManifestFor(ctx context.Context, repo registryshim.Repo, m *registryshim.Manifest) {
	base := a.keyFor(ctx, repo, m.Digest)
	keys := []confirmKey{base}
	var refs struct {
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
		Manifests []v1.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(m.Body, &refs) == nil {
		descs := append(refs.Layers, refs.Manifests...)
		if refs.Config != nil {
			descs = append(descs, *refs.Config)
		}
		for _, d := range descs {
			if d.Digest.Validate() == nil {
				k := base
				k.dgst = d.Digest
				keys = append(keys, k)
			}
		}
	}
	a.confirms.add(keys...)
}

// authorize checks that the upstream has confirmed repo holds dgst, asking
// it with head when the cache has no fresh answer. When the upstream cannot
// be reached, an expired confirmation of the same repository still serves,
// with a warning and a metric. The upstream's refusal (404, 401, 403) is
// passed on as is (an upstream error), whatever the store holds.
func (a *Agent) authorize(ctx context.Context, repo registryshim.Repo, dgst digest.Digest, head func() error) error {
	k := a.keyFor(ctx, repo, dgst)
	fresh, known := a.confirms.check(k)
	if fresh {
		a.metrics.confirms.WithLabelValues("cached").Inc()
		return nil
	}
	err := head()
	switch {
	case err == nil:
		a.confirms.add(k)
		a.metrics.confirms.WithLabelValues("upstream").Inc()
		return nil
	case known && errors.Is(err, upstream.ErrUnavailable):
		a.log.Warn("upstream unreachable, serving on an expired confirmation",
			"registry", repo.Registry, "repo", repo.Name, "digest", dgst, "err", err)
		a.metrics.confirms.WithLabelValues("stale").Inc()
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	a.metrics.confirms.WithLabelValues("refused").Inc()
	return err
}

// authorizeBlob is authorize for a blob: a HEAD of it in repo. It returns
// the size the upstream gave, or -1 when it was not asked.
func (a *Agent) authorizeBlob(ctx context.Context, repo registryshim.Repo, dgst digest.Digest) (int64, error) {
	size := int64(-1)
	err := a.authorize(ctx, repo, dgst, func() error {
		s, err := a.up.BlobSize(ctx, repo.Registry, repo.Name, dgst)
		if err == nil {
			size = s
		}
		return err
	})
	return size, err
}

// authorizeManifest is authorize for a manifest by digest: a HEAD of it in
// repo.
func (a *Agent) authorizeManifest(ctx context.Context, repo registryshim.Repo, dgst digest.Digest) error {
	return a.authorize(ctx, repo, dgst, func() error {
		_, err := a.up.HeadManifest(ctx, repo.Registry, repo.Name, dgst.String())
		return err
	})
}
