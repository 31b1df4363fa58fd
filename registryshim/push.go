package registryshim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim/grammar"
)

// The push half of the Distribution API, for a backend that implements
// PushBackend: blob upload sessions (POST, PATCH, PUT, GET, DELETE on
// /v2/<name>/blobs/uploads/), monolithic uploads (POST or PUT with
// ?digest=), cross-repository mounts (?mount=&from=) and manifest PUTs. The
// handler validates names, digests, Content-Range and manifests and speaks
// the spec's statuses and headers; the backend keeps the sessions. Without
// a PushBackend every push request is 405 UNSUPPORTED.

// Pusher is who pushes where: the repository of the request and the
// client's Authorization header, passed on untouched ("" when the client
// sent none), so a backend can push with the requester's credentials and
// keep a session to the client that opened it.
type Pusher struct {
	Repo          Repo
	Authorization string
}

// Chunk is a part of a blob a client sends. Offset is where it claims to
// start (-1: it said nothing, so it goes at the end); Length is its size
// (-1: unknown, read Body to EOF). A backend must read exactly Length bytes
// when it is known and fail with ErrSizeInvalid when Body has fewer.
type Chunk struct {
	Offset int64
	Length int64
	Body   io.Reader
}

// PushBackend is a Backend that accepts pushes; the handler finds it by
// type assertion. Upload ids are the backend's; the handler checks only
// their shape (see validUploadID). Errors should wrap this package's
// sentinels: ErrBlobUploadUnknown for an id it does not know,
// ErrUploadOutOfOrder for a chunk whose Offset is not where the upload
// stands, ErrDigestInvalid for content that does not hash to the digest.
type PushBackend interface {
	// StartUpload opens an upload session and returns its id.
	StartUpload(ctx context.Context, p Pusher) (id string, err error)
	// UploadOffset returns how many bytes the session holds.
	UploadOffset(ctx context.Context, p Pusher, id string) (int64, error)
	// WriteUpload appends c and returns the new offset.
	WriteUpload(ctx context.Context, p Pusher, id string, c Chunk) (int64, error)
	// FinishUpload appends c (possibly empty) and completes the blob as
	// dgst; the session is gone afterwards, whatever the outcome.
	FinishUpload(ctx context.Context, p Pusher, id string, dgst digest.Digest, c Chunk) error
	// CancelUpload drops a session.
	CancelUpload(ctx context.Context, p Pusher, id string) error
	// MountBlob makes blob dgst of repository from (on p's registry)
	// part of p.Repo. id is "" when it is mounted; otherwise the backend
	// started an upload session instead and id names it (the spec's
	// fallback, answered 202).
	MountBlob(ctx context.Context, p Pusher, from string, dgst digest.Digest) (id string, err error)
	// PutManifest stores m under ref (a tag, or m.Digest). m has been
	// checked: valid JSON, a media type, Body hashing to Digest.
	PutManifest(ctx context.Context, p Pusher, ref string, m *Manifest) error
}

// WithCredentialChallenge makes /v2/ answer a request without an
// Authorization header with 401 and a Basic challenge, when the backend
// takes pushes. Clients send credentials only to a registry whose /v2/
// asked for them: one holding some for this host then sends them with
// every request, and the backend may push with them (Pusher.Authorization);
// most clients holding none go on anonymously, which the read API serves
// as before, but some (the Docker daemon) stop there.
func WithCredentialChallenge() Option {
	return func(o *options) { o.challenge = true }
}

// maxManifestPut is the largest manifest accepted, the spec's suggested
// limit (and containerd's).
const maxManifestPut = 4 << 20

// servePush answers the request if it belongs to the push path, and
// reports whether it did. t is updated for metrics.
func (h *Handler) servePush(w http.ResponseWriter, r *http.Request, t *target, pathErr error) bool {
	if h.push == nil {
		return false // the read API answers: 405 UNSUPPORTED for any write
	}
	if h.challenge && t.route == routeBase && pathErr == nil && r.Header.Get("Authorization") == "" {
		h.pushFail(w, r, fmt.Errorf("base: %w", ErrUnauthorized))
		return true
	}
	if up, ok := parseUploadPath(r.URL.Path); ok {
		t.route = routeUpload
		h.serveUpload(w, r, up)
		return true
	}
	if r.Method != http.MethodPut || t.route != routeManifest {
		return false
	}
	switch {
	case errors.Is(pathErr, ErrManifestUnknown): // a tag outside the grammar
		h.fail(w, r, ErrManifestInvalid.withDetail(shortDetail("tag", lastSegment(r.URL.Path))))
	case pathErr != nil:
		h.fail(w, r, pathErr)
	default:
		h.putManifest(w, r, *t)
	}
	return true
}

// uploadPath is a parsed /v2/<name>/blobs/uploads/[<id>] path.
type uploadPath struct {
	t      target // the repository, as parsePath reads it
	prefix string // "/v2/<name>/blobs/uploads/", as the client spelled it
	id     string // "" for the collection
	err    error  // a name or id that does not validate
}

// parseUploadPath recognises an upload path. The name part is validated by
// parsePath itself (through the tags route of the same name), so every form
// of repository path parsePath knows works for uploads too.
func parseUploadPath(p string) (uploadPath, bool) {
	const seg = "/blobs/uploads"
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return uploadPath{}, false
	}
	var name, id string
	switch {
	case strings.HasSuffix(rest, seg):
		name = strings.TrimSuffix(rest, seg)
	case strings.HasSuffix(rest, seg+"/"):
		name = strings.TrimSuffix(rest, seg+"/")
	default:
		i := strings.LastIndexByte(rest, '/')
		if i < 0 || !strings.HasSuffix(rest[:i], seg) {
			return uploadPath{}, false
		}
		name, id = strings.TrimSuffix(rest[:i], seg), rest[i+1:]
	}
	if name == "" {
		return uploadPath{}, false
	}
	up := uploadPath{prefix: "/v2/" + name + seg + "/", id: id}
	up.t, up.err = parsePath("/v2/" + name + "/tags/list")
	if up.err == nil && id != "" && !validUploadID(id) {
		up.err = ErrBlobUploadUnknown.withDetail(shortDetail("uuid", id))
	}
	return up, true
}

// validUploadID bounds what an id may look like: a backend's ids are
// opaque, but one a client made up is refused before any backend sees it.
func validUploadID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

func lastSegment(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func (h *Handler) serveUpload(w http.ResponseWriter, r *http.Request, up uploadPath) {
	if up.err != nil {
		h.fail(w, r, up.err)
		return
	}
	repo, err := h.repo(r, up.t)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p := Pusher{Repo: repo, Authorization: r.Header.Get("Authorization")}
	switch {
	case up.id == "" && r.Method == http.MethodPost:
		h.startUpload(w, r, up, p)
	case up.id == "":
		h.fail(w, r, fmt.Errorf("upload collection %s: %w", r.Method, ErrUnsupported))
	case r.Method == http.MethodPatch:
		h.patchUpload(w, r, up, p)
	case r.Method == http.MethodPut:
		h.finishUpload(w, r, up, p)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		off, err := h.push.UploadOffset(r.Context(), p, up.id)
		if err != nil {
			h.pushFail(w, r, fmt.Errorf("upload %s status: %w", up.id, err))
			return
		}
		h.uploadAccepted(w, r, up, up.id, off, http.StatusNoContent)
	case r.Method == http.MethodDelete:
		if err := h.push.CancelUpload(r.Context(), p, up.id); err != nil {
			h.pushFail(w, r, fmt.Errorf("cancel upload %s: %w", up.id, err))
			return
		}
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusNoContent)
	default:
		h.fail(w, r, fmt.Errorf("upload %s: %w", r.Method, ErrUnsupported))
	}
}

// pushFail is fail for the push path: a 401 carries a Basic challenge, so
// a client that holds credentials for the origin offers them and the
// backend can push with them.
func (h *Handler) pushFail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, ErrUnauthorized) {
		w.Header().Set("WWW-Authenticate", `Basic realm="shoal push-through"`)
	}
	h.fail(w, r, err)
}

func (h *Handler) startUpload(w http.ResponseWriter, r *http.Request, up uploadPath, p Pusher) {
	q := r.URL.Query()
	ctx := r.Context()
	if q.Has("mount") {
		d, err := parseDigestParam(q.Get("mount"))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		from := q.Get("from")
		if from != "" && !grammar.Repository(from) {
			h.fail(w, r, ErrNameInvalid.withDetail(shortDetail("from", from)))
			return
		}
		if from != "" {
			id, err := h.push.MountBlob(ctx, p, from, d)
			switch {
			case err != nil:
				h.pushFail(w, r, fmt.Errorf("mount %s from %s: %w", d, from, err))
			case id == "":
				h.blobCreated(w, up, d)
			default:
				h.uploadAccepted(w, r, up, id, 0, http.StatusAccepted)
			}
			return
		}
		// No source named: nothing to mount from, so a plain session.
	}
	var dgst digest.Digest
	if q.Has("digest") {
		d, err := parseDigestParam(q.Get("digest"))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		dgst = d
	}
	id, err := h.push.StartUpload(ctx, p)
	if err != nil {
		h.pushFail(w, r, fmt.Errorf("start upload: %w", err))
		return
	}
	if dgst == "" {
		h.uploadAccepted(w, r, up, id, 0, http.StatusAccepted)
		return
	}
	// Monolithic: the body is the whole blob.
	if err := h.push.FinishUpload(ctx, p, id, dgst, Chunk{Offset: 0, Length: r.ContentLength, Body: r.Body}); err != nil {
		h.pushFail(w, r, fmt.Errorf("monolithic upload %s: %w", dgst, err))
		return
	}
	h.blobCreated(w, up, dgst)
}

func (h *Handler) patchUpload(w http.ResponseWriter, r *http.Request, up uploadPath, p Pusher) {
	c, err := chunkOf(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	off, err := h.push.WriteUpload(r.Context(), p, up.id, c)
	if err != nil {
		h.uploadFail(w, r, up, p, fmt.Errorf("upload %s chunk: %w", up.id, err))
		return
	}
	h.uploadAccepted(w, r, up, up.id, off, http.StatusAccepted)
}

func (h *Handler) finishUpload(w http.ResponseWriter, r *http.Request, up uploadPath, p Pusher) {
	q := r.URL.Query()
	if !q.Has("digest") {
		h.fail(w, r, ErrDigestInvalid.withDetail(map[string]string{"digest": "missing"}))
		return
	}
	dgst, err := parseDigestParam(q.Get("digest"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	c, err := chunkOf(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.push.FinishUpload(r.Context(), p, up.id, dgst, c); err != nil {
		h.uploadFail(w, r, up, p, fmt.Errorf("finish upload %s as %s: %w", up.id, dgst, err))
		return
	}
	h.blobCreated(w, up, dgst)
}

// uploadFail answers a failed chunk; an out-of-order one tells the client
// where the upload stands, as the spec asks.
func (h *Handler) uploadFail(w http.ResponseWriter, r *http.Request, up uploadPath, p Pusher, err error) {
	if errors.Is(err, ErrUploadOutOfOrder) && StatusOf(err) == http.StatusRequestedRangeNotSatisfiable {
		if off, oerr := h.push.UploadOffset(r.Context(), p, up.id); oerr == nil {
			setUploadHeaders(w.Header(), r, up, up.id, off)
		}
	}
	h.pushFail(w, r, err)
}

// chunkOf reads a PATCH's or PUT's Content-Range and Content-Length.
func chunkOf(r *http.Request) (Chunk, error) {
	c := Chunk{Offset: -1, Length: r.ContentLength, Body: r.Body}
	cr := r.Header.Values("Content-Range")
	if len(cr) == 0 {
		return c, nil
	}
	if len(cr) > 1 {
		return Chunk{}, ErrBlobUploadInvalid.withDetail(map[string]string{"content-range": "more than one"})
	}
	first, last, err := parseContentRange(cr[0])
	if err != nil {
		return Chunk{}, ErrBlobUploadInvalid.withDetail(shortDetail("content-range", cr[0]))
	}
	n := last - first + 1
	if c.Length >= 0 && c.Length != n {
		return Chunk{}, ErrSizeInvalid.withDetail(map[string]string{
			"content-range": cr[0], "content-length": strconv.FormatInt(c.Length, 10)})
	}
	c.Offset, c.Length = first, n
	return c, nil
}

// parseContentRange parses an upload chunk's Content-Range: the spec's
// "<first>-<last>", inclusive, also with the "bytes " or "bytes=" prefix
// and "/<size>" or "/*" suffix some clients send. last < first is invalid.
func parseContentRange(s string) (first, last int64, err error) {
	bad := fmt.Errorf("content range %q", s)
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "bytes"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '=') {
		s = strings.TrimLeft(rest[1:], " ")
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		total := s[i+1:]
		if _, ok := parseDigits(total); !ok && total != "*" {
			return 0, 0, bad
		}
		s = s[:i]
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, bad
	}
	first, ok1 := parseDigits(a)
	last, ok2 := parseDigits(b)
	// parseDigits saturates: a value that large is no chunk of anything.
	const limit = 1 << 62
	if !ok1 || !ok2 || last < first || last >= limit {
		return 0, 0, bad
	}
	return first, last, nil
}

func parseDigestParam(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil || !d.Algorithm().Available() {
		return "", ErrDigestInvalid.withDetail(shortDetail("digest", s))
	}
	return d, nil
}

// setUploadHeaders sets where an upload continues and how much it holds.
func setUploadHeaders(hdr http.Header, r *http.Request, up uploadPath, id string, off int64) {
	loc := up.prefix + id
	if ns := r.URL.Query().Get("ns"); ns != "" {
		loc += "?" + url.Values{"ns": {ns}}.Encode()
	}
	hdr.Set("Location", loc)
	hdr.Set("Docker-Upload-UUID", id)
	// "0-<last>" as CNCF distribution sends it; an empty upload is "0-0".
	hdr.Set("Range", "0-"+strconv.FormatInt(max(off-1, 0), 10))
}

func (h *Handler) uploadAccepted(w http.ResponseWriter, r *http.Request, up uploadPath, id string, off int64, status int) {
	setUploadHeaders(w.Header(), r, up, id, off)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

func (h *Handler) blobCreated(w http.ResponseWriter, up uploadPath, d digest.Digest) {
	hdr := w.Header()
	hdr.Set("Location", strings.TrimSuffix(up.prefix, "uploads/")+d.String())
	hdr.Set(headerDigest, d.String())
	hdr.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request, t target) {
	repo, err := h.repo(r, t)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if r.ContentLength > maxManifestPut {
		h.fail(w, r, ErrManifestTooLarge)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestPut+1))
	if err != nil {
		h.fail(w, r, fmt.Errorf("%w: reading manifest: %w", ErrManifestInvalid, err))
		return
	}
	if len(body) > maxManifestPut {
		h.fail(w, r, ErrManifestTooLarge)
		return
	}
	m, err := checkPushedManifest(r.Header.Get("Content-Type"), body, t.dgst)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p := Pusher{Repo: repo, Authorization: r.Header.Get("Authorization")}
	if err := h.push.PutManifest(r.Context(), p, t.ref, m); err != nil {
		h.pushFail(w, r, fmt.Errorf("put manifest %s:%s: %w", t.name, t.ref, err))
		return
	}
	hdr := w.Header()
	hdr.Set("Location", r.URL.Path[:strings.LastIndex(r.URL.Path, "/manifests/")]+"/manifests/"+m.Digest.String())
	hdr.Set(headerDigest, m.Digest.String())
	hdr.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// checkPushedManifest checks what a manifest PUT carries: a JSON object
// of a known kind, the media type of the Content-Type header agreeing with
// the body's own mediaType field, and, when the reference is a digest, a
// body hashing to it.
func checkPushedManifest(contentType string, body []byte, want digest.Digest) (*Manifest, error) {
	var fields struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
		Layers    json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, ErrManifestInvalid.withDetail(map[string]string{"reason": "not a JSON object"})
	}
	mt := ""
	if contentType != "" {
		parsed, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, ErrManifestInvalid.withDetail(shortDetail("content-type", contentType))
		}
		mt = parsed
	}
	switch {
	case mt == "" || mt == "application/json" || mt == "application/octet-stream":
		mt = fields.MediaType
	case fields.MediaType != "" && fields.MediaType != mt:
		return nil, ErrManifestInvalid.withDetail(map[string]string{"content-type": mt, "mediaType": fields.MediaType})
	}
	if mt == "" {
		switch {
		case fields.Manifests != nil:
			mt = "application/vnd.oci.image.index.v1+json"
		case fields.Config != nil:
			mt = "application/vnd.oci.image.manifest.v1+json"
		default:
			return nil, ErrManifestInvalid.withDetail(map[string]string{"reason": "media type unknown"})
		}
	}
	d := digest.FromBytes(body)
	if want != "" {
		if got := want.Algorithm().FromBytes(body); got != want {
			return nil, ErrDigestInvalid.withDetail(map[string]string{"digest": want.String(), "computed": got.String()})
		}
		d = want
	}
	return &Manifest{MediaType: mt, Digest: d, Size: int64(len(body)), Body: body}, nil
}
