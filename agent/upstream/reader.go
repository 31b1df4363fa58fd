package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// blobReader is a blob body that fails once the upstream stays silent for
// timeout, and counts what it receives.
type blobReader struct {
	x       *exchange
	timeout time.Duration
	bytes   prometheus.Counter

	once sync.Once
}

var _ io.ReadCloser = (*blobReader)(nil)

func (r *blobReader) Read(p []byte) (int, error) {
	n, err := r.x.resp.Body.Read(p)
	if n > 0 {
		r.x.timer.Reset(r.timeout)
		r.bytes.Add(float64(n))
	}
	if err != nil && err != io.EOF {
		err = r.x.wrap(fmt.Errorf("reading body: %w", r.x.readError(err)))
	}
	return n, err
}

func (r *blobReader) Close() error {
	r.once.Do(r.x.close)
	return nil
}

// parseContentRange parses "bytes first-last/size", "bytes first-last/*"
// (size -1) and "bytes */size" (first and last -1).
func parseContentRange(s string) (first, last, size int64, err error) {
	bad := func() (int64, int64, int64, error) {
		return 0, 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	spec, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return bad()
	}
	rng, total, ok := strings.Cut(spec, "/")
	if !ok {
		return bad()
	}
	size = -1
	if total != "*" {
		if size, err = parseNonNegative(total); err != nil {
			return bad()
		}
	}
	if rng == "*" {
		if size < 0 {
			return bad()
		}
		return -1, -1, size, nil
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return bad()
	}
	if first, err = parseNonNegative(a); err != nil {
		return bad()
	}
	if last, err = parseNonNegative(b); err != nil {
		return bad()
	}
	if last < first || (size >= 0 && last >= size) {
		return bad()
	}
	return first, last, size, nil
}

func parseNonNegative(s string) (int64, error) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, errors.New("not a non-negative integer")
	}
	return strconv.ParseInt(s, 10, 64)
}

// headerMediaType returns the media type of a Content-Type header, without
// parameters.
func headerMediaType(contentType string) string {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil {
		return mt
	}
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(mt))
}

// genericMediaType reports a Content-Type that says nothing about which
// kind of manifest a body is; some registries and proxies send these.
func genericMediaType(mt string) bool {
	switch mt {
	case "", "application/json", "text/plain", "application/octet-stream", "binary/octet-stream":
		return true
	}
	return false
}

// manifestMediaType returns the media type of a manifest: the upstream's
// Content-Type when it is specific, else the body's own mediaType field,
// else the OCI type its shape implies (OCI allows omitting mediaType).
func manifestMediaType(contentType string, body []byte) (string, error) {
	if mt := headerMediaType(contentType); !genericMediaType(mt) {
		return mt, nil
	}
	var m struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "", fmt.Errorf("manifest is not JSON: %w", err)
	}
	switch {
	case m.MediaType != "":
		return m.MediaType, nil
	case m.Manifests != nil:
		return mediaTypeOCIIndex, nil
	case m.Config != nil:
		return mediaTypeOCIManifest, nil
	}
	return "", errors.New("manifest type unknown: no Content-Type and no mediaType")
}
