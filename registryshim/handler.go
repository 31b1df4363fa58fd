package registryshim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	headerAPIVersion = "Docker-Distribution-API-Version"
	apiVersion       = "registry/2.0"
	headerDigest     = "Docker-Content-Digest"

	// copyBufferSize is the most read from a Blob at once. Large, so a fast
	// backend streams at memory speed; a backend that is still fetching makes
	// each read wait for at most this much.
	copyBufferSize = 256 << 10
)

// Handler serves the OCI Distribution read API over a Backend.
// It is safe for concurrent use.
type Handler struct {
	backend Backend
	push    PushBackend // nil: the push path answers UNSUPPORTED (push.go)
	log     *slog.Logger
	metrics *metrics
	bufs    sync.Pool // *[]byte of copyBufferSize

	pathRegistry func(host string) bool // nil: no registry-in-path form (pathns.go)
	challenge    bool                   // /v2/ asks for credentials (push.go)
}

var _ http.Handler = (*Handler)(nil)

type options struct {
	log          *slog.Logger
	reg          prometheus.Registerer
	pathRegistry func(host string) bool
	challenge    bool
}

// Option configures a Handler.
type Option func(*options)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithRegisterer registers the handler's metrics with reg (default: not
// registered).
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.reg = reg }
}

// New returns a Handler serving b.
func New(b Backend, opts ...Option) *Handler {
	o := options{log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	h := &Handler{backend: b, log: o.log, metrics: newMetrics(o.reg, o.log), pathRegistry: o.pathRegistry, challenge: o.challenge}
	h.push, _ = b.(PushBackend)
	h.bufs.New = func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t, pathErr := parsePath(r.URL.Path)
	rec := &recorder{ResponseWriter: w}
	defer func() {
		p := recover()
		elapsed := time.Since(start)
		h.metrics.observe(t.route, r.Method, rec, p != nil, elapsed)
		if h.log.Enabled(r.Context(), slog.LevelDebug) {
			h.log.Debug("registry request", "method", r.Method, "path", r.URL.Path,
				"status", rec.status, "bytes", rec.bytes, "duration", elapsed, "aborted", p != nil)
		}
		if p != nil {
			panic(p) // http.ErrAbortHandler: let net/http cut the connection
		}
	}()

	rec.Header().Set(headerAPIVersion, apiVersion)
	if h.servePush(rec, r, &t, pathErr) {
		return
	}
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		h.fail(rec, r, fmt.Errorf("method %s: %w", r.Method, ErrUnsupported))
		return
	case pathErr != nil:
		h.fail(rec, r, pathErr)
		return
	}

	switch t.route {
	case routeBase:
		writeJSON(rec, r, http.StatusOK, []byte("{}"))
	case routeManifest:
		h.serveManifest(rec, r, t)
	case routeBlob:
		if r.Method == http.MethodHead {
			h.statBlob(rec, r, t)
		} else {
			h.serveBlob(rec, r, t)
		}
	case routeTags:
		h.serveTags(rec, r, t)
	}
}

// fail answers with err's OCI error, or with nothing if the client is gone.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		h.log.Debug("registry request abandoned by client", "method", r.Method, "path", r.URL.Path, "error", err)
		return
	}
	e := ociError(err)
	level := slog.LevelDebug // 4xx: clients probing for what exists
	if e.Status >= 500 {
		level = slog.LevelWarn
	}
	h.log.Log(r.Context(), level, "registry request failed",
		"method", r.Method, "path", r.URL.Path, "status", e.Status, "error", err)
	WriteError(w, err)
}

func (h *Handler) repo(r *http.Request, t target) (Repo, error) {
	reg, err := parseRegistry(r.URL.Query().Get("ns"))
	if err != nil {
		return Repo{}, err
	}
	if reg == "" {
		if host, rest, ok := h.splitPathRegistry(t.name); ok {
			return Repo{Registry: host, Name: rest}, nil
		}
	}
	return Repo{Registry: reg, Name: t.name}, nil
}

func (h *Handler) serveManifest(w http.ResponseWriter, r *http.Request, t target) {
	repo, err := h.repo(r, t)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	head := r.Method == http.MethodHead
	m, err := h.backend.Manifest(r.Context(), repo, t.ref, head)
	if err == nil {
		err = checkManifest(m, t.dgst, head)
	}
	if err != nil {
		h.fail(w, r, fmt.Errorf("manifest %s:%s: %w", t.name, t.ref, err))
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", m.MediaType)
	hdr.Set("Content-Length", strconv.FormatInt(m.Size, 10))
	hdr.Set(headerDigest, m.Digest.String())
	hdr.Set("ETag", `"`+m.Digest.String()+`"`)
	if m.Stale {
		hdr.Set("Warning", `110 shoal "Response is Stale"`)
		hdr.Set("Shoal-Stale", "true")
	}
	w.WriteHeader(http.StatusOK)
	if !head {
		_, _ = w.Write(m.Body)
	}
}

var errBadManifest = errors.New("backend returned an inconsistent manifest")

// checkManifest refuses to serve a backend answer that contradicts itself or
// the request: a runtime would reject it anyway, with a less useful error.
func checkManifest(m *Manifest, want digest.Digest, head bool) error {
	switch {
	case m == nil:
		return fmt.Errorf("%w: nil", errBadManifest)
	case m.MediaType == "":
		return fmt.Errorf("%w: no media type", errBadManifest)
	case m.Digest.Validate() != nil:
		return fmt.Errorf("%w: digest %q: %v", errBadManifest, m.Digest, m.Digest.Validate())
	case want != "" && m.Digest != want:
		return fmt.Errorf("%w: asked for %s, got %s", errBadManifest, want, m.Digest)
	case m.Size < 0:
		return fmt.Errorf("%w: size %d", errBadManifest, m.Size)
	case m.Body == nil && !head:
		return fmt.Errorf("%w: no body", errBadManifest)
	case m.Body == nil:
		return nil
	case int64(len(m.Body)) != m.Size:
		return fmt.Errorf("%w: size %d, body %d bytes", errBadManifest, m.Size, len(m.Body))
	case m.Digest.Algorithm().FromBytes(m.Body) != m.Digest:
		return fmt.Errorf("%w: body does not match digest %s", errBadManifest, m.Digest)
	}
	return nil
}

func setBlobHeaders(h http.Header, d digest.Digest, length int64) {
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	h.Set(headerDigest, d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Accept-Ranges", "bytes")
}

// statBlob answers HEAD without fetching the blob.
func (h *Handler) statBlob(w http.ResponseWriter, r *http.Request, t target) {
	repo, err := h.repo(r, t)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	size, err := h.backend.StatBlob(r.Context(), repo, t.dgst)
	if err == nil && size < 0 {
		err = fmt.Errorf("backend returned size %d", size)
	}
	if err != nil {
		h.fail(w, r, fmt.Errorf("stat blob %s: %w", t.dgst, err))
		return
	}
	setBlobHeaders(w.Header(), t.dgst, size)
	w.WriteHeader(http.StatusOK)
}

func (h *Handler) serveBlob(w http.ResponseWriter, r *http.Request, t target) {
	repo, err := h.repo(r, t)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if rb, ok := h.backend.(RangeBackend); ok {
		if vs := r.Header.Values("Range"); len(vs) == 1 && ifRangeMatches(r, t.dgst) {
			h.serveRange(w, r, t, repo, rb, vs[0])
			return
		}
	}
	b, err := h.backend.Blob(r.Context(), repo, t.dgst)
	if err != nil {
		h.fail(w, r, fmt.Errorf("open blob %s: %w", t.dgst, err))
		return
	}
	defer func() {
		if err := b.Close(); err != nil {
			h.log.Debug("closing blob", "digest", t.dgst, "error", err)
		}
	}()
	size := b.Size()
	if size < 0 {
		h.fail(w, r, fmt.Errorf("blob %s: backend returned size %d", t.dgst, size))
		return
	}

	rng, res := byteRange{start: 0, length: size}, rangeIgnored
	if vs := r.Header.Values("Range"); len(vs) == 1 && ifRangeMatches(r, t.dgst) {
		var partial byteRange
		if partial, res = parseRange(vs[0], size); res == rangePartial {
			rng = partial
		}
	}
	if res == rangeUnsatisfiable {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		h.fail(w, r, fmt.Errorf("blob %s range %q: %w", t.dgst, r.Header.Get("Range"), ErrRangeInvalid))
		return
	}
	h.stream(w, r, b, t.dgst, size, rng, res == rangePartial)
}

// serveRange answers a Range request from a RangeBackend: the whole blob
// as usual when the range is the whole blob or is ignored, else only the
// range's bytes.
func (h *Handler) serveRange(w http.ResponseWriter, r *http.Request, t target, repo Repo, rb RangeBackend, spec string) {
	size, err := h.backend.StatBlob(r.Context(), repo, t.dgst)
	if err != nil {
		h.fail(w, r, fmt.Errorf("stat blob %s: %w", t.dgst, err))
		return
	}
	rng, res := parseRange(spec, size)
	var b Blob
	switch res {
	case rangeUnsatisfiable:
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		h.fail(w, r, fmt.Errorf("blob %s range %q: %w", t.dgst, spec, ErrRangeInvalid))
		return
	case rangePartial:
		b, err = rb.BlobRange(r.Context(), repo, t.dgst, rng.start, rng.length)
	default:
		rng = byteRange{start: 0, length: size}
		b, err = h.backend.Blob(r.Context(), repo, t.dgst)
	}
	if err != nil {
		h.fail(w, r, fmt.Errorf("open blob %s: %w", t.dgst, err))
		return
	}
	defer func() {
		if err := b.Close(); err != nil {
			h.log.Debug("closing blob", "digest", t.dgst, "error", err)
		}
	}()
	if b.Size() != size {
		h.fail(w, r, fmt.Errorf("blob %s: backend returned size %d, stat said %d", t.dgst, b.Size(), size))
		return
	}
	h.stream(w, r, b, t.dgst, size, rng, res == rangePartial)
}

// ifRangeMatches reports whether a Range header may be honoured: without
// If-Range, or with If-Range naming our ETag. Blobs have no Last-Modified,
// so a date never matches.
func ifRangeMatches(r *http.Request, d digest.Digest) bool {
	v := r.Header.Get("If-Range")
	return v == "" || v == `"`+d.String()+`"`
}

// stream writes rng of b. The first chunk is read before the status line:
// until then a failure can still be answered with an error status, which a
// runtime acts on (containerd falls back to the upstream on any non-2xx).
// After it, a failure aborts the connection so the client sees a broken
// transfer, never a short body that looks complete.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, b Blob, d digest.Digest, size int64, rng byteRange, partial bool) {
	bufp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bufp)
	buf := *bufp
	src := io.NewSectionReader(b, rng.start, rng.length)

	first, err := io.ReadFull(src, buf[:min(int64(len(buf)), rng.length)])
	if err != nil {
		h.fail(w, r, fmt.Errorf("read blob %s at %d: %w", d, rng.start, err))
		return
	}
	setBlobHeaders(w.Header(), d, rng.length)
	status := http.StatusOK
	if partial {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", rng.start, rng.start+rng.length-1, size))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	if first == 0 {
		return
	}
	if _, err := w.Write(buf[:first]); err != nil {
		h.abort(r, d, fmt.Errorf("write: %w", err))
	}
	// Push the status line and first bytes out now: the rest may take a while.
	_ = http.NewResponseController(w).Flush()

	for off := int64(first); off < rng.length; {
		n, err := io.ReadFull(src, buf[:min(int64(len(buf)), rng.length-off)])
		if err != nil {
			h.abort(r, d, fmt.Errorf("read at %d: %w", rng.start+off, err))
		}
		if _, err := w.Write(buf[:n]); err != nil {
			h.abort(r, d, fmt.Errorf("write: %w", err))
		}
		off += int64(n)
	}
}

// abort cuts the connection of a response whose status line was already sent.
func (h *Handler) abort(r *http.Request, d digest.Digest, err error) {
	if r.Context().Err() != nil {
		h.log.Debug("blob transfer abandoned by client", "digest", d, "error", err)
	} else {
		h.log.Warn("blob transfer aborted", "digest", d, "error", err)
	}
	panic(http.ErrAbortHandler)
}

type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

func (h *Handler) serveTags(w http.ResponseWriter, r *http.Request, t target) {
	repo, err := h.repo(r, t)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	n := -1
	if q.Has("n") {
		if n, err = strconv.Atoi(q.Get("n")); err != nil || n < 0 {
			h.fail(w, r, ErrPaginationNumberInvalid.withDetail(shortDetail("n", q.Get("n"))))
			return
		}
	}
	// last is only compared with tags by the backend, so any value is safe.
	last := q.Get("last")
	tags, err := h.backend.Tags(r.Context(), repo, n, last)
	if err != nil {
		h.fail(w, r, fmt.Errorf("tags %s: %w", t.name, err))
		return
	}
	if n >= 0 && len(tags) > n {
		tags = tags[:n]
	}
	if tags == nil {
		tags = []string{} // the spec wants a list, not null
	}
	body, err := json.Marshal(tagList{Name: t.name, Tags: tags})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if n > 0 && len(tags) == n {
		next := url.Values{"n": {strconv.Itoa(n)}, "last": {tags[len(tags)-1]}}
		if repo.Registry != "" && repo.Name == t.name { // not the registry-in-path form
			next.Set("ns", repo.Registry)
		}
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, t.name, next.Encode()))
	}
	writeJSON(w, r, http.StatusOK, body)
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
