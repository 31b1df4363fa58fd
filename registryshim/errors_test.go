package registryshim_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/registryshim"
)

type errorBody struct {
	Errors []struct {
		Code    string          `json:"code"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	} `json:"errors"`
}

func TestWriteError(t *testing.T) {
	t.Parallel()
	const secret = "peer 12D3KooWSecret at /ip4/10.1.2.3"
	tests := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"blob unknown", registryshim.ErrBlobUnknown, 404, "BLOB_UNKNOWN"},
		{"manifest unknown", registryshim.ErrManifestUnknown, 404, "MANIFEST_UNKNOWN"},
		{"name unknown", registryshim.ErrNameUnknown, 404, "NAME_UNKNOWN"},
		{"name invalid", registryshim.ErrNameInvalid, 400, "NAME_INVALID"},
		{"digest invalid", registryshim.ErrDigestInvalid, 400, "DIGEST_INVALID"},
		{"manifest invalid", registryshim.ErrManifestInvalid, 400, "MANIFEST_INVALID"},
		{"pagination", registryshim.ErrPaginationNumberInvalid, 400, "PAGINATION_NUMBER_INVALID"},
		{"unauthorized", registryshim.ErrUnauthorized, 401, "UNAUTHORIZED"},
		{"denied", registryshim.ErrDenied, 403, "DENIED"},
		{"unsupported", registryshim.ErrUnsupported, 405, "UNSUPPORTED"},
		{"too many", registryshim.ErrTooManyRequests, 429, "TOOMANYREQUESTS"},
		{"not found", registryshim.ErrNotFound, 404, "NOT_FOUND"},
		{"range", registryshim.ErrRangeInvalid, 416, "RANGE_NOT_SATISFIABLE"},
		{"unavailable", registryshim.ErrUnavailable, 503, "UNAVAILABLE"},
		{"internal", registryshim.ErrInternal, 500, "UNKNOWN"},
		{"wrapped twice", fmt.Errorf("fetch: %w", fmt.Errorf("upstream %s: %w", secret, registryshim.ErrBlobUnknown)), 404, "BLOB_UNKNOWN"},
		{"joined", errors.Join(errors.New(secret), registryshim.ErrDenied), 403, "DENIED"},
		{"plain error", errors.New(secret), 500, "UNKNOWN"},
		{"deadline", fmt.Errorf("%s: %w", secret, context.DeadlineExceeded), 503, "UNAVAILABLE"},
		{"own error", fmt.Errorf("x: %w", &registryshim.Error{Code: "DENIED", Message: "private image", Status: 403}), 403, "DENIED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := httptest.NewRecorder()
			registryshim.WriteError(w, tt.err)
			if w.Code != tt.status {
				t.Errorf("status = %d, want %d", w.Code, tt.status)
			}
			if got := registryshim.StatusOf(tt.err); got != tt.status {
				t.Errorf("StatusOf() = %d, want %d", got, tt.status)
			}
			if strings.Contains(w.Body.String(), "Secret") || strings.Contains(w.Body.String(), "10.1.2.3") {
				t.Errorf("body leaks the wrapped error: %s", w.Body)
			}
			if got := w.Header().Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
				t.Errorf("API version header = %q", got)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			var body errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if len(body.Errors) != 1 || body.Errors[0].Code != tt.code || body.Errors[0].Message == "" {
				t.Errorf("body = %s, want one error with code %s", w.Body, tt.code)
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	t.Parallel()
	own := &registryshim.Error{Code: "BLOB_UNKNOWN", Message: "gone", Status: 404, Detail: "x"}
	if !errors.Is(fmt.Errorf("w: %w", own), registryshim.ErrBlobUnknown) {
		t.Error("an Error with the same code should match its sentinel")
	}
	if errors.Is(registryshim.ErrBlobUnknown, registryshim.ErrManifestUnknown) {
		t.Error("different codes must not match")
	}
	if got := registryshim.StatusOf(nil); got != http.StatusOK {
		t.Errorf("StatusOf(nil) = %d", got)
	}
	if got := registryshim.ErrBlobUnknown.Error(); got != "BLOB_UNKNOWN: blob unknown to registry" {
		t.Errorf("Error() = %q", got)
	}
}
