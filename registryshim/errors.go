package registryshim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// Error is an OCI Distribution error: the code and message a client sees and
// the HTTP status it comes with.
//
// Two Errors match under errors.Is when their codes are equal, so a copy with
// a Detail still matches its sentinel.
type Error struct {
	Code    string
	Message string
	Status  int
	// Detail is sent as the "detail" member. Only the handler sets it, with
	// data the client itself sent (a name, a digest); never internal state.
	Detail any
}

// The one table of OCI error codes of the project. Codes and statuses follow
// the OCI Distribution spec, except where noted.
var (
	ErrBlobUnknown             = &Error{Code: "BLOB_UNKNOWN", Message: "blob unknown to registry", Status: http.StatusNotFound}
	ErrManifestUnknown         = &Error{Code: "MANIFEST_UNKNOWN", Message: "manifest unknown", Status: http.StatusNotFound}
	ErrNameUnknown             = &Error{Code: "NAME_UNKNOWN", Message: "repository name not known to registry", Status: http.StatusNotFound}
	ErrNameInvalid             = &Error{Code: "NAME_INVALID", Message: "invalid repository name", Status: http.StatusBadRequest}
	ErrDigestInvalid           = &Error{Code: "DIGEST_INVALID", Message: "invalid digest", Status: http.StatusBadRequest}
	ErrManifestInvalid         = &Error{Code: "MANIFEST_INVALID", Message: "manifest invalid", Status: http.StatusBadRequest}
	ErrPaginationNumberInvalid = &Error{Code: "PAGINATION_NUMBER_INVALID", Message: "invalid number of results requested", Status: http.StatusBadRequest}
	ErrUnauthorized            = &Error{Code: "UNAUTHORIZED", Message: "authentication required", Status: http.StatusUnauthorized}
	ErrDenied                  = &Error{Code: "DENIED", Message: "requested access to the resource is denied", Status: http.StatusForbidden}
	ErrUnsupported             = &Error{Code: "UNSUPPORTED", Message: "the operation is unsupported", Status: http.StatusMethodNotAllowed}
	ErrTooManyRequests         = &Error{Code: "TOOMANYREQUESTS", Message: "too many requests", Status: http.StatusTooManyRequests}

	// The push path's (see push.go).
	ErrBlobUploadUnknown   = &Error{Code: "BLOB_UPLOAD_UNKNOWN", Message: "blob upload unknown to registry", Status: http.StatusNotFound}
	ErrBlobUploadInvalid   = &Error{Code: "BLOB_UPLOAD_INVALID", Message: "blob upload invalid", Status: http.StatusBadRequest}
	ErrSizeInvalid         = &Error{Code: "SIZE_INVALID", Message: "provided length did not match content length", Status: http.StatusBadRequest}
	ErrManifestBlobUnknown = &Error{Code: "MANIFEST_BLOB_UNKNOWN", Message: "manifest references a manifest or blob unknown to registry", Status: http.StatusNotFound}
	// A chunk that does not start where the upload stands: the spec's 416.
	ErrUploadOutOfOrder = &Error{Code: "BLOB_UPLOAD_INVALID", Message: "chunk out of order", Status: http.StatusRequestedRangeNotSatisfiable}
	// A manifest over the size limit: the spec's 413.
	ErrManifestTooLarge = &Error{Code: "SIZE_INVALID", Message: "manifest too large", Status: http.StatusRequestEntityTooLarge}

	// Not in the OCI spec, which has no code for a route that does not exist.
	ErrNotFound = &Error{Code: "NOT_FOUND", Message: "no such route", Status: http.StatusNotFound}
	// Not in the OCI spec, which does not define Range errors; the code names
	// the HTTP status rather than borrowing an unrelated OCI code.
	ErrRangeInvalid = &Error{Code: "RANGE_NOT_SATISFIABLE", Message: "requested range not satisfiable", Status: http.StatusRequestedRangeNotSatisfiable}
	// Upstream unreachable, timed out or answering 5xx. Same code as CNCF
	// distribution. A runtime configured with a mirror falls back to the
	// upstream on it.
	ErrUnavailable = &Error{Code: "UNAVAILABLE", Message: "service unavailable", Status: http.StatusServiceUnavailable}
	// Any error matching no sentinel. The spec has no 500 code; "UNKNOWN" is
	// the one CNCF distribution uses.
	ErrInternal = &Error{Code: "UNKNOWN", Message: "internal error", Status: http.StatusInternalServerError}
)

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// withDetail returns a copy of e carrying detail.
func (e *Error) withDetail(detail any) *Error {
	c := *e
	c.Detail = detail
	return &c
}

// ociError resolves err to the *Error a client is shown.
// A deadline that passed inside the backend means the upstream or the swarm
// was too slow: that is UNAVAILABLE, which lets the runtime fall back.
func ociError(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, context.DeadlineExceeded):
		return ErrUnavailable
	default:
		return ErrInternal
	}
}

// StatusOf returns the HTTP status WriteError would send for err
// (200 for nil).
func StatusOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	return ociError(err).Status
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// WriteError answers with the OCI error body for err: the code, status and
// message of the sentinel err wraps, or 500 UNKNOWN if it wraps none. The
// text of err itself is never sent; callers log it.
func WriteError(w http.ResponseWriter, err error) {
	e := ociError(err)
	body, mErr := json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	if mErr != nil {
		// Only a Detail that cannot be marshalled gets here; drop it.
		body, _ = json.Marshal(errorBody{Errors: []errorEntry{{Code: e.Code, Message: e.Message}}})
	}
	h := w.Header()
	h.Set(headerAPIVersion, apiVersion)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if e.Status == http.StatusMethodNotAllowed {
		h.Set("Allow", "GET, HEAD")
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}
