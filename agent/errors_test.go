package agent

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"testing"

	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/registryshim"
)

// TestOCIError pins what a runtime is answered for each upstream error: the
// same OCI code and status as when the upstream client spoke OCI itself.
func TestOCIError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		up     error
		code   string
		status int
	}{
		{"ErrBlobNotFound", upstream.ErrBlobNotFound, "BLOB_UNKNOWN", http.StatusNotFound},
		{"ErrManifestNotFound", upstream.ErrManifestNotFound, "MANIFEST_UNKNOWN", http.StatusNotFound},
		{"ErrRepositoryNotFound", upstream.ErrRepositoryNotFound, "NAME_UNKNOWN", http.StatusNotFound},
		{"ErrUnauthorized", upstream.ErrUnauthorized, "UNAUTHORIZED", http.StatusUnauthorized},
		{"ErrDenied", upstream.ErrDenied, "DENIED", http.StatusForbidden},
		{"ErrTooManyRequests", upstream.ErrTooManyRequests, "TOOMANYREQUESTS", http.StatusTooManyRequests},
		{"ErrUnavailable", upstream.ErrUnavailable, "UNAVAILABLE", http.StatusServiceUnavailable},
		{"ErrDigestMismatch", upstream.ErrDigestMismatch, "UNAVAILABLE", http.StatusServiceUnavailable},
		{"ErrRangeNotSatisfiable", upstream.ErrRangeNotSatisfiable, "RANGE_NOT_SATISFIABLE", http.StatusRequestedRangeNotSatisfiable},
		{"ErrInvalidName", upstream.ErrInvalidName, "NAME_INVALID", http.StatusBadRequest},
		{"ErrInvalidDigest", upstream.ErrInvalidDigest, "DIGEST_INVALID", http.StatusBadRequest},
		{"ErrInvalidManifest", upstream.ErrInvalidManifest, "MANIFEST_INVALID", http.StatusBadRequest},
		{"ErrInvalidPagination", upstream.ErrInvalidPagination, "PAGINATION_NUMBER_INVALID", http.StatusBadRequest},
		{"ErrUnsupported", upstream.ErrUnsupported, "UNSUPPORTED", http.StatusMethodNotAllowed},
		{"ErrUnexpected", upstream.ErrUnexpected, "UNKNOWN", http.StatusInternalServerError},
		{"ErrInternal", upstream.ErrInternal, "UNKNOWN", http.StatusInternalServerError},
	}
	for _, tt := range tests {
		err := ociError(fmt.Errorf("upstream x: GET /v2/a: %w: cause", tt.up))
		var e *registryshim.Error
		if !errors.As(err, &e) || e.Code != tt.code || registryshim.StatusOf(err) != tt.status {
			t.Errorf("ociError(%s) = %v (status %d), want %s %d", tt.name, err, registryshim.StatusOf(err), tt.code, tt.status)
		}
		if !errors.Is(err, tt.up) {
			t.Errorf("ociError(%s) = %v drops the upstream error", tt.name, err)
		}
	}

	// Every sentinel upstream declares is in the table above.
	f, err := parser.ParseFile(token.NewFileSet(), "upstream/errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	for _, tt := range tests {
		tested[tt.name] = true
	}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.VAR {
			continue
		}
		for _, s := range g.Specs {
			for _, n := range s.(*ast.ValueSpec).Names {
				if n.IsExported() && !tested[n.Name] {
					t.Errorf("upstream.%s has no OCI error here", n.Name)
				}
			}
		}
	}
}

func TestOCIErrorKeepsOthers(t *testing.T) {
	t.Parallel()
	if ociError(nil) != nil {
		t.Error("ociError(nil) != nil")
	}
	for _, err := range []error{context.Canceled, context.DeadlineExceeded, errors.New("other")} {
		if got := ociError(err); got != err {
			t.Errorf("ociError(%v) = %v, want it unchanged", err, got)
		}
	}
}
