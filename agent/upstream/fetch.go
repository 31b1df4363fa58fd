package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
)

// Descriptor describes content as the upstream served it.
type Descriptor struct {
	MediaType string
	Digest    digest.Digest
	Size      int64
}

const (
	// maxManifestBytes follows containerd's limit; bigger is refused
	// rather than buffered.
	maxManifestBytes = 4 << 20
	maxTagsBytes     = 16 << 20

	headerDigest = "Docker-Content-Digest"
)

// Media types of the manifests the agent can serve, in preference order.
const (
	mediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	manifestAccept          = mediaTypeOCIIndex + ", " + mediaTypeOCIManifest + ", " + mediaTypeDockerList + ", " + mediaTypeDockerManifest
)

// Manifest fetches a manifest by tag or digest. The bytes are exactly the
// upstream's; a manifest asked by digest is verified against it, and one
// asked by tag against the Docker-Content-Digest the upstream announced.
func (c *Client) Manifest(ctx context.Context, registry, repo, ref string) (Descriptor, []byte, error) {
	u, repo, err := c.resolve(registry, repo)
	if err != nil {
		return Descriptor{}, nil, err
	}
	want, _, err := parseRef(ref)
	if err != nil {
		return Descriptor{}, nil, fmt.Errorf("upstream %s: %w", u.key, err)
	}
	return c.manifest(ctx, u, repo, ref, want)
}

func (c *Client) manifest(ctx context.Context, u *upstream, repo, ref string, want digest.Digest) (Descriptor, []byte, error) {
	x, err := c.do(ctx, u, repo, kindManifest, http.MethodGet, "manifests/"+ref, nil, "", http.StatusOK)
	if err != nil {
		return Descriptor{}, nil, err
	}
	defer x.close()
	body, err := io.ReadAll(io.LimitReader(x.resp.Body, maxManifestBytes+1))
	if err != nil {
		return Descriptor{}, nil, x.wrap(x.readError(err))
	}
	if len(body) > maxManifestBytes {
		return Descriptor{}, nil, x.wrap(unusable("manifest larger than %d bytes", maxManifestBytes))
	}
	mt, err := manifestMediaType(x.resp.Header.Get("Content-Type"), body)
	if err != nil {
		return Descriptor{}, nil, x.wrap(unusable("%v", err))
	}
	dgst, err := verifyManifest(body, want, x.resp.Header.Get(headerDigest))
	if err != nil {
		return Descriptor{}, nil, x.wrap(err)
	}
	return Descriptor{MediaType: mt, Digest: dgst, Size: int64(len(body))}, body, nil
}

// verifyManifest returns the digest of body: want if given, else the
// announced digest, else its sha256. Whatever is returned, body hashes to.
func verifyManifest(body []byte, want digest.Digest, announced string) (digest.Digest, error) {
	if want == "" {
		if d, err := parseDigest(announced); err == nil {
			want = d
		} else {
			return digest.FromBytes(body), nil
		}
	}
	if got := want.Algorithm().FromBytes(body); got != want {
		return "", fmt.Errorf("manifest hashes to %s, want %s: %w", got, want, ErrDigestMismatch)
	}
	return want, nil
}

// HeadManifest describes a manifest without fetching it, falling back to a
// GET when the upstream's HEAD answer leaves out the type, size or digest.
func (c *Client) HeadManifest(ctx context.Context, registry, repo, ref string) (Descriptor, error) {
	u, repo, err := c.resolve(registry, repo)
	if err != nil {
		return Descriptor{}, err
	}
	want, _, err := parseRef(ref)
	if err != nil {
		return Descriptor{}, fmt.Errorf("upstream %s: %w", u.key, err)
	}
	x, err := c.do(ctx, u, repo, kindHeadManifest, http.MethodHead, "manifests/"+ref, nil, "", http.StatusOK)
	if err != nil {
		return Descriptor{}, err
	}
	x.close()
	mt := headerMediaType(x.resp.Header.Get("Content-Type"))
	size := x.resp.ContentLength
	announced, annErr := parseDigest(x.resp.Header.Get(headerDigest))
	if want != "" && annErr == nil && announced.Algorithm() == want.Algorithm() && announced != want {
		return Descriptor{}, x.wrap(fmt.Errorf("upstream announces %s for %s: %w", announced, want, ErrDigestMismatch))
	}
	dgst := want
	if dgst == "" && annErr == nil {
		dgst = announced
	}
	if genericMediaType(mt) || size < 0 || dgst == "" {
		desc, _, err := c.manifest(ctx, u, repo, ref, want)
		return desc, err
	}
	return Descriptor{MediaType: mt, Digest: dgst, Size: size}, nil
}

// BlobSize returns the size of a blob (HEAD).
func (c *Client) BlobSize(ctx context.Context, registry, repo string, dgst digest.Digest) (int64, error) {
	u, repo, err := c.resolve(registry, repo)
	if err != nil {
		return 0, err
	}
	if dgst, err = parseDigest(string(dgst)); err != nil {
		return 0, fmt.Errorf("upstream %s: %w", u.key, err)
	}
	return c.blobSize(ctx, u, repo, dgst)
}

func (c *Client) blobSize(ctx context.Context, u *upstream, repo string, dgst digest.Digest) (int64, error) {
	x, err := c.do(ctx, u, repo, kindHeadBlob, http.MethodHead, "blobs/"+string(dgst), nil, "", http.StatusOK)
	if err != nil {
		return 0, err
	}
	x.close()
	if announced, err := parseDigest(x.resp.Header.Get(headerDigest)); err == nil &&
		announced.Algorithm() == dgst.Algorithm() && announced != dgst {
		return 0, x.wrap(fmt.Errorf("upstream announces %s: %w", announced, ErrDigestMismatch))
	}
	if x.resp.ContentLength < 0 {
		return 0, x.wrap(unusable("no Content-Length"))
	}
	return x.resp.ContentLength, nil
}

// Blob streams a blob from offset. The reader fails if the upstream goes
// silent for Timeout. Its bytes are not verified here: a stream from an
// offset cannot be, and the store verifies whole blobs.
func (c *Client) Blob(ctx context.Context, registry, repo string, dgst digest.Digest, offset int64) (io.ReadCloser, error) {
	return c.BlobRange(ctx, registry, repo, dgst, offset, -1)
}

// BlobRange is Blob for the length bytes from offset (to the end if length
// is negative). The Range it sends is bounded, so an upstream that honours
// it sends no byte past the range: a reader that stops at the range's end
// and closes an open-ended answer leaves the upstream's bytes in flight
// behind it on a fast link. An upstream that ignores Range may still send
// more; the reader then hands over bytes past the range too.
func (c *Client) BlobRange(ctx context.Context, registry, repo string, dgst digest.Digest, offset, length int64) (io.ReadCloser, error) {
	u, repo, err := c.resolve(registry, repo)
	if err != nil {
		return nil, err
	}
	if dgst, err = parseDigest(string(dgst)); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.key, err)
	}
	if offset < 0 {
		return nil, fmt.Errorf("upstream %s: negative offset %d: %w", u.key, offset, ErrRangeNotSatisfiable)
	}
	var rng string
	switch {
	case length > 0:
		rng = "bytes=" + strconv.FormatInt(offset, 10) + "-" + strconv.FormatInt(offset+length-1, 10)
	case offset > 0:
		rng = "bytes=" + strconv.FormatInt(offset, 10) + "-"
	}
	retried := false
	for {
		x, err := c.do(ctx, u, repo, kindBlob, http.MethodGet, "blobs/"+string(dgst), nil, rng,
			http.StatusOK, http.StatusPartialContent, http.StatusRequestedRangeNotSatisfiable)
		if err != nil {
			return nil, err
		}
		skip := offset
		switch x.resp.StatusCode {
		case http.StatusRequestedRangeNotSatisfiable:
			x.close()
			size, err := c.sizeAfter416(ctx, x, repo, dgst)
			if err != nil {
				return nil, err
			}
			switch {
			case offset == size:
				// Reading from the very end is an empty read, not an error.
				return io.NopCloser(strings.NewReader("")), nil
			case offset < size && !retried:
				// Some registries (go-containerregistry's among them) refuse
				// an open-ended range, or one that ends past the blob; ask
				// again with the end spelled out.
				end := size
				if length > 0 {
					end = min(end, offset+length)
				}
				rng = "bytes=" + strconv.FormatInt(offset, 10) + "-" + strconv.FormatInt(end-1, 10)
				retried = true
				continue
			}
			return nil, x.wrap(fmt.Errorf("offset %d of a %d-byte blob: %w", offset, size, ErrRangeNotSatisfiable))
		case http.StatusPartialContent:
			start, _, _, perr := parseContentRange(x.resp.Header.Get("Content-Range"))
			if perr != nil || start < 0 || start > offset {
				x.close()
				return nil, x.wrap(unusable("206 with Content-Range %q for offset %d", x.resp.Header.Get("Content-Range"), offset))
			}
			skip = offset - start
		}
		return c.blobBody(x, offset, skip)
	}
}

// sizeAfter416 learns the blob's size from a 416 answer, or by asking.
func (c *Client) sizeAfter416(ctx context.Context, x *exchange, repo string, dgst digest.Digest) (int64, error) {
	if first, _, size, err := parseContentRange(x.resp.Header.Get("Content-Range")); err == nil && first < 0 {
		return size, nil
	}
	return c.blobSize(ctx, x.u, repo, dgst)
}

// blobBody hands over the body of x after dropping skip bytes.
func (c *Client) blobBody(x *exchange, offset, skip int64) (io.ReadCloser, error) {
	// Time to first byte was bounded by the request; from here on the
	// bound is silence, so a large blob may take as long as it needs.
	x.timer.Reset(c.cfg.Timeout)
	r := &blobReader{x: x, timeout: c.cfg.Timeout, bytes: c.metrics.bytes}
	if skip > 0 {
		// The upstream ignored Range (or started early): drop what the
		// caller did not ask for rather than hand it over as if it were.
		if _, err := io.CopyN(io.Discard, r, skip); err != nil {
			r.Close()
			if errors.Is(err, io.EOF) {
				return nil, x.wrap(fmt.Errorf("blob ends before offset %d: %w", offset, ErrRangeNotSatisfiable))
			}
			return nil, err
		}
	}
	return r, nil
}

// Tags lists tags of repo; n > 0 asks for at most n, after last if set.
func (c *Client) Tags(ctx context.Context, registry, repo string, n int, last string) ([]string, error) {
	u, repo, err := c.resolve(registry, repo)
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("upstream %s: n=%d: %w", u.key, n, ErrInvalidPagination)
	}
	q := url.Values{}
	if n > 0 {
		q.Set("n", strconv.Itoa(n))
	}
	if last != "" {
		q.Set("last", last)
	}
	x, err := c.do(ctx, u, repo, kindTags, http.MethodGet, "tags/list", q, "", http.StatusOK)
	if err != nil {
		return nil, err
	}
	defer x.close()
	body, err := io.ReadAll(io.LimitReader(x.resp.Body, maxTagsBytes+1))
	if err != nil {
		return nil, x.wrap(x.readError(err))
	}
	if len(body) > maxTagsBytes {
		return nil, x.wrap(unusable("tag list larger than %d bytes", maxTagsBytes))
	}
	var list struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, x.wrap(unusable("tag list: %v", err))
	}
	if n > 0 && len(list.Tags) > n {
		list.Tags = list.Tags[:n] // some registries ignore n
	}
	if list.Tags == nil {
		list.Tags = []string{}
	}
	return list.Tags, nil
}

// resolve validates repo and routes registry; Docker Hub's official images
// live under library/.
func (c *Client) resolve(registry, repo string) (*upstream, string, error) {
	if err := checkRepo(repo); err != nil {
		return nil, "", fmt.Errorf("upstream: %w", err)
	}
	u, err := c.route(registry)
	if err != nil {
		return nil, "", fmt.Errorf("upstream: %w", err)
	}
	if u.hub && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	return u, repo, nil
}

// unusable reports an upstream answer that cannot be passed on. It is
// UNAVAILABLE so that a runtime using the agent as a mirror falls back to
// the upstream itself.
func unusable(format string, args ...any) error {
	return fmt.Errorf("unusable answer: %s: %w", fmt.Sprintf(format, args...), ErrUnavailable)
}

// errNoAnswer is the cause given to a request whose upstream stayed silent.
var errNoAnswer = errors.New("no answer from upstream")

// exchange is one request to an upstream and the timer that bounds it.
type exchange struct {
	u      *upstream
	kind   string
	method string
	path   string
	parent context.Context
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	resp   *http.Response
}

// do sends one request and returns the response if its status is one of
// ok. Otherwise the error carries the OCI sentinel for the answer.
// rng is the Range header of a blob request, if any.
func (c *Client) do(ctx context.Context, u *upstream, repo, kind, method, rest string, q url.Values, rng string, ok ...int) (*exchange, error) {
	x := &exchange{u: u, kind: kind, method: method, path: "/v2/" + repo + "/" + rest, parent: ctx}
	// Measured from here: a first request's ping and token exchange are
	// part of what waiting for this upstream costs.
	start := time.Now()
	rt, key, err := c.transport(ctx, u, repo)
	if err != nil {
		c.metrics.observe(kind, 0, start)
		return nil, x.wrap(mapError(ctx, kind, err))
	}
	x.ctx, x.cancel = context.WithCancelCause(ctx)
	timeout := c.cfg.Timeout
	x.timer = time.AfterFunc(timeout, func() { x.cancel(fmt.Errorf("%w within %s", errNoAnswer, timeout)) })
	target := url.URL{Scheme: rt.scheme, Host: u.reg.RegistryStr(), Path: x.path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(x.ctx, method, target.String(), nil)
	if err != nil {
		x.finish()
		return nil, x.wrap(fmt.Errorf("%w: %w", ErrInternal, err))
	}
	switch {
	case kind == kindManifest || kind == kindHeadManifest:
		req.Header.Set("Accept", manifestAccept)
	case rng != "":
		req.Header.Set("Range", rng)
	}
	resp, err := (&http.Client{Transport: rt.rt}).Do(req)
	if err != nil {
		c.metrics.observe(kind, 0, start)
		err = x.readError(err)
		x.finish()
		c.log.Debug("upstream request failed", "registry", u.key, "method", method, "path", x.path, "error", err)
		return nil, x.wrap(err)
	}
	c.metrics.observe(kind, resp.StatusCode, start)
	c.log.Debug("upstream request", "registry", u.key, "method", method, "path", x.path,
		"status", resp.StatusCode, "duration", time.Since(start))
	x.resp = resp
	if slices.Contains(ok, resp.StatusCode) {
		return x, nil
	}
	if resp.StatusCode == http.StatusUnauthorized {
		u.forget(key)
	}
	err = transport.CheckError(resp, ok...)
	x.close()
	return nil, x.wrap(mapError(ctx, kind, err))
}

// readError classifies an error met while waiting for or reading an answer.
func (x *exchange) readError(err error) error {
	if perr := x.parent.Err(); perr != nil {
		return perr
	}
	if cause := context.Cause(x.ctx); cause != nil {
		err = cause // the timer fired: say so rather than "context canceled"
	}
	return mapError(x.parent, x.kind, err)
}

func (x *exchange) wrap(err error) error {
	return fmt.Errorf("upstream %s: %s %s: %w", x.u.key, x.method, x.path, err)
}

// finish stops the timer and releases the request context.
func (x *exchange) finish() {
	x.timer.Stop()
	x.cancel(nil)
}

// close discards the body and finishes the exchange.
func (x *exchange) close() {
	x.resp.Body.Close()
	x.finish()
}
