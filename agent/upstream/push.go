package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
)

// The push path: blob upload sessions, mounts and manifest PUTs forwarded
// to the origin. Each push gets its own token (push and pull scope), not
// cached with the pull tokens, made with the credentials pushAuth picks: the
// requester's (CredentialFrom) when it sent some, whatever the registry's
// mode, since a push is the requester's own act and a node's credentials
// are often read-only; else the node's, or none in requester mode, where the
// node's never serve a requester.
//
// Bodies are streamed as the caller reads them: nothing is buffered here.
// Requests are not bounded by Timeout as fetches are (an upload of a large
// layer takes as long as the client sends); the dial, the TLS handshake and
// the wait for an answer once the body is sent still are.

// Push-path answers the fetch sentinels do not cover.
var (
	ErrUploadUnknown       = errors.New("upload unknown upstream")
	ErrUploadInvalid       = errors.New("upload invalid upstream")
	ErrSizeInvalid         = errors.New("size invalid upstream")
	ErrManifestBlobUnknown = errors.New("manifest references content unknown upstream")
)

const (
	kindPush         = "push"
	kindPushManifest = "push-manifest"
)

// pushAuth picks the credentials of a push (see above).
func (c *Client) pushAuth(ctx context.Context, u *upstream) (authn.Authenticator, error) {
	if cred := CredentialFrom(ctx); cred != nil {
		return cred.auth, nil
	}
	if c.mode(ctx, u) == ModeRequester {
		return authn.Anonymous, nil
	}
	return c.authenticator(ctx, u)
}

// PushedAs reports whether a push to registry made with ctx is made with
// the credentials Identity names for ctx, so that what the origin accepted
// may be recorded as confirmed for that identity. It is not when the node's
// mode lets a requester push with its own credentials.
func (c *Client) PushedAs(ctx context.Context, registry string) bool {
	u, err := c.route(registry)
	if err != nil {
		return false
	}
	return CredentialFrom(ctx) == nil || c.mode(ctx, u) == ModeRequester
}

// pusher is an authenticated way to one repository of one upstream.
type pusher struct {
	c    *Client
	u    *upstream
	repo string
	rt   http.RoundTripper
	base url.URL // scheme and host
}

// pushTo authenticates for pushing to repo (and pulling from the from
// repositories, for mounts).
func (c *Client) pushTo(ctx context.Context, registry, repo string, from ...string) (*pusher, error) {
	u, repo, err := c.resolve(registry, repo)
	if err != nil {
		return nil, err
	}
	p := &pusher{c: c, u: u, repo: repo}
	bctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	ch, err := u.ping.get(bctx, "", func() (*transport.Challenge, error) { return c.pingUpstream(bctx, u) })
	if err != nil {
		return nil, p.wrap(http.MethodPost, "", mapError(ctx, kindPush, err))
	}
	p.base = url.URL{Scheme: "https", Host: u.reg.RegistryStr()}
	if ch.Insecure {
		p.base.Scheme = "http"
	}
	auth, err := c.pushAuth(bctx, u)
	if err != nil {
		return nil, p.wrap(http.MethodPost, "", err)
	}
	tok := &transport.Token{}
	if strings.EqualFold(ch.Scheme, "bearer") {
		scopes := []string{"repository:" + repo + ":" + transport.PushScope}
		for _, f := range from {
			if _, f, err := c.resolve(registry, f); err == nil && f != repo {
				scopes = append(scopes, "repository:"+f+":"+transport.PullScope)
			}
		}
		if tok, err = transport.Exchange(bctx, u.reg, auth, c.base, scopes, ch); err != nil {
			return nil, p.wrap(http.MethodPost, "", fmt.Errorf("push token: %w", mapError(ctx, kindPush, err)))
		}
	}
	if p.rt, err = transport.FromToken(u.reg, auth, c.base, ch, tok); err != nil {
		return nil, p.wrap(http.MethodPost, "", fmt.Errorf("%w: %w", ErrInternal, err))
	}
	return p, nil
}

func (p *pusher) wrap(method, path string, err error) error {
	if path == "" {
		path = "/v2/" + p.repo + "/"
	}
	return fmt.Errorf("upstream %s: %s %s: %w", p.u.key, method, path, err)
}

// send makes one request; body may be nil, n is its length (-1: unknown,
// sent chunked). A status outside ok is the error.
func (p *pusher) send(ctx context.Context, kind, method string, target *url.URL, hdr http.Header, body io.Reader, n int64, ok ...int) (*http.Response, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, method, target.String(), body)
	if err != nil {
		return nil, p.wrap(method, target.Path, fmt.Errorf("%w: %w", ErrInternal, err))
	}
	if body != nil {
		req.ContentLength = n
		if n == 0 {
			req.Body = http.NoBody
		}
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := (&http.Client{Transport: p.rt, CheckRedirect: noRedirect}).Do(req)
	if err != nil {
		p.c.metrics.observe(kind, 0, start)
		return nil, p.wrap(method, target.Path, mapError(ctx, kind, err))
	}
	p.c.metrics.observe(kind, resp.StatusCode, start)
	p.c.log.Debug("upstream push request", "registry", p.u.key, "method", method, "path", target.Path,
		"status", resp.StatusCode, "duration", time.Since(start))
	for _, s := range ok {
		if resp.StatusCode == s {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	// A 401 here says nothing of the pull tokens: they stay cached.
	return nil, p.wrap(method, target.Path, pushStatus(kind, transport.CheckError(resp, ok...)))
}

// noRedirect: an upload's body cannot be sent twice, and a redirect of a
// push is the origin's business with its client, which is us.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// pushStatus classifies a refused push request: the push codes first, then
// as for fetches.
func pushStatus(kind string, err error) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return fmt.Errorf("%w: %w", ErrUnexpected, err)
	}
	codes := make([]string, 0, len(terr.Errors))
	for _, d := range terr.Errors {
		switch d.Code {
		case "BLOB_UPLOAD_UNKNOWN":
			return fmt.Errorf("%w: %w", ErrUploadUnknown, err)
		case "BLOB_UPLOAD_INVALID":
			return fmt.Errorf("%w: %w", ErrUploadInvalid, err)
		case "SIZE_INVALID":
			return fmt.Errorf("%w: %w", ErrSizeInvalid, err)
		case "MANIFEST_BLOB_UNKNOWN":
			return fmt.Errorf("%w: %w", ErrManifestBlobUnknown, err)
		}
		codes = append(codes, string(d.Code))
	}
	if terr.StatusCode == http.StatusMethodNotAllowed {
		return fmt.Errorf("%w: %w", ErrUnsupported, err) // a read-only registry
	}
	return fmt.Errorf("%w: %w", mapStatus(kind, terr.StatusCode, codes), err)
}

// location resolves the Location of an answer against the request's URL.
func location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, unusable("%d without Location", resp.StatusCode)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, unusable("Location %q: %v", loc, err)
	}
	return resp.Request.URL.ResolveReference(u), nil
}

// Upload is one blob upload session on the origin. It is not safe for
// concurrent use: the agent holds one request of a session at a time.
type Upload struct {
	p      *pusher
	next   *url.URL // where the next request of the session goes
	offset int64    // bytes the origin holds
}

// StartUpload opens an upload session in repo on the origin.
func (c *Client) StartUpload(ctx context.Context, registry, repo string) (*Upload, error) {
	p, err := c.pushTo(ctx, registry, repo)
	if err != nil {
		return nil, err
	}
	return p.start(ctx, nil)
}

func (p *pusher) start(ctx context.Context, q url.Values) (*Upload, error) {
	target := p.base
	target.Path = "/v2/" + p.repo + "/blobs/uploads/"
	target.RawQuery = q.Encode()
	resp, err := p.send(ctx, kindPush, http.MethodPost, &target, nil, nil, 0, http.StatusAccepted, http.StatusCreated)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		return nil, nil // mounted
	}
	next, err := location(resp)
	if err != nil {
		return nil, p.wrap(http.MethodPost, target.Path, err)
	}
	return &Upload{p: p, next: next}, nil
}

// MountBlob asks the origin to mount dgst from repository from into repo.
// A nil Upload means it is mounted; otherwise the origin started an upload
// session instead, which the caller continues or cancels.
func (c *Client) MountBlob(ctx context.Context, registry, repo, from string, dgst digest.Digest) (*Upload, error) {
	if err := checkRepo(from); err != nil {
		return nil, fmt.Errorf("upstream: mount from: %w", err)
	}
	p, err := c.pushTo(ctx, registry, repo, from)
	if err != nil {
		return nil, err
	}
	if _, from, err = c.resolve(registry, from); err != nil {
		return nil, err
	}
	return p.start(ctx, url.Values{"mount": {dgst.String()}, "from": {from}})
}

// Offset is how many bytes the origin holds of the upload.
func (up *Upload) Offset() int64 { return up.offset }

// Write sends a chunk of n bytes (-1: unknown, until body ends) as one
// PATCH with its Content-Range when n is known.
func (up *Upload) Write(ctx context.Context, body io.Reader, n int64) error {
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	if n > 0 {
		hdr.Set("Content-Range", fmt.Sprintf("%d-%d", up.offset, up.offset+n-1))
	}
	cr := &countingReader{r: body}
	resp, err := up.p.send(ctx, kindPush, http.MethodPatch, up.next, hdr, cr, n, http.StatusAccepted, http.StatusNoContent)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if n >= 0 && cr.n != n {
		return up.p.wrap(http.MethodPatch, up.next.Path, fmt.Errorf("sent %d of %d bytes: %w", cr.n, n, ErrSizeInvalid))
	}
	next, err := location(resp)
	if err != nil {
		return up.p.wrap(http.MethodPatch, up.next.Path, err)
	}
	up.next = next
	up.offset += cr.n
	if end, ok := rangeEnd(resp.Header.Get("Range")); ok && end != up.offset {
		return up.p.wrap(http.MethodPatch, up.next.Path, unusable("origin holds %d bytes of the upload, %d were sent", end, up.offset))
	}
	return nil
}

// Finish sends the last chunk (n bytes, possibly none; -1: unknown) and
// completes the upload as dgst. The origin verifies the digest; its 201 is
// the only success.
func (up *Upload) Finish(ctx context.Context, dgst digest.Digest, body io.Reader, n int64) error {
	target := *up.next
	q := target.Query()
	q.Set("digest", dgst.String())
	target.RawQuery = q.Encode()
	hdr := http.Header{"Content-Type": {"application/octet-stream"}}
	if body == nil {
		body, n = http.NoBody, 0
	}
	if n > 0 {
		hdr.Set("Content-Range", fmt.Sprintf("%d-%d", up.offset, up.offset+n-1))
	}
	cr := &countingReader{r: body}
	resp, err := up.p.send(ctx, kindPush, http.MethodPut, &target, hdr, cr, n, http.StatusCreated)
	if err != nil {
		return err
	}
	resp.Body.Close()
	up.offset += cr.n
	if got, err := parseDigest(resp.Header.Get(headerDigest)); err == nil && got.Algorithm() == dgst.Algorithm() && got != dgst {
		return up.p.wrap(http.MethodPut, target.Path, fmt.Errorf("origin committed %s for %s: %w", got, dgst, ErrDigestMismatch))
	}
	return nil
}

// Cancel drops the session on the origin; failures are only logged there.
func (up *Upload) Cancel(ctx context.Context) {
	resp, err := up.p.send(ctx, kindPush, http.MethodDelete, up.next, nil, nil, 0,
		http.StatusNoContent, http.StatusAccepted, http.StatusOK, http.StatusNotFound)
	if err != nil {
		up.p.c.log.Debug("cancelling an upstream upload", "registry", up.p.u.key, "error", err)
		return
	}
	resp.Body.Close()
}

// PutManifest stores a manifest, body hashing to dgst, under ref (tag or
// digest) on the origin. An origin announcing another digest is an error.
func (c *Client) PutManifest(ctx context.Context, registry, repo, ref, mediaType string, body []byte, dgst digest.Digest) error {
	if _, _, err := parseRef(ref); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	p, err := c.pushTo(ctx, registry, repo)
	if err != nil {
		return err
	}
	target := p.base
	target.Path = "/v2/" + p.repo + "/manifests/" + ref
	hdr := http.Header{"Content-Type": {mediaType}}
	resp, err := p.send(ctx, kindPushManifest, http.MethodPut, &target, hdr, strings.NewReader(string(body)), int64(len(body)), http.StatusCreated)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if got, err := parseDigest(resp.Header.Get(headerDigest)); err == nil && got.Algorithm() == dgst.Algorithm() && got != dgst {
		return p.wrap(http.MethodPut, target.Path, fmt.Errorf("origin stored %s for %s: %w", got, dgst, ErrDigestMismatch))
	}
	return nil
}

// rangeEnd reads an upload's Range answer "0-<last>" as a byte count.
// CNCF distribution answers "0-0" for an empty upload too: ambiguous, so
// not checked.
func rangeEnd(s string) (int64, bool) {
	s = strings.TrimPrefix(s, "bytes=")
	a, b, ok := strings.Cut(s, "-")
	if !ok || a != "0" {
		return 0, false
	}
	last, err := strconv.ParseInt(b, 10, 64)
	if err != nil || last <= 0 {
		return 0, false
	}
	return last + 1, true
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
