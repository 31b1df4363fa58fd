package upstream

import (
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestPushStatus(t *testing.T) {
	for _, c := range []struct {
		status int
		code   string
		want   error
	}{
		{http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", ErrUploadUnknown},
		{http.StatusBadRequest, "BLOB_UPLOAD_INVALID", ErrUploadInvalid},
		{http.StatusBadRequest, "SIZE_INVALID", ErrSizeInvalid},
		{http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", ErrManifestBlobUnknown},
		{http.StatusBadRequest, "DIGEST_INVALID", ErrInvalidDigest},
		{http.StatusBadRequest, "MANIFEST_INVALID", ErrInvalidManifest},
		{http.StatusMethodNotAllowed, "UNSUPPORTED", ErrUnsupported},
		{http.StatusMethodNotAllowed, "", ErrUnsupported},
		{http.StatusForbidden, "DENIED", ErrDenied},
		{http.StatusUnauthorized, "UNAUTHORIZED", ErrUnauthorized},
		{http.StatusServiceUnavailable, "", ErrUnavailable},
		{http.StatusTeapot, "", ErrUnexpected},
	} {
		terr := &transport.Error{StatusCode: c.status}
		if c.code != "" {
			terr.Errors = []transport.Diagnostic{{Code: transport.ErrorCode(c.code)}}
		}
		if got := pushStatus(kindPush, terr); !errors.Is(got, c.want) {
			t.Errorf("%d %s: %v, want %v", c.status, c.code, got, c.want)
		}
	}
	if got := pushStatus(kindPush, errors.New("odd")); !errors.Is(got, ErrUnexpected) {
		t.Errorf("unclassified: %v", got)
	}
}

func TestRangeEnd(t *testing.T) {
	for s, want := range map[string]int64{"0-9": 10, "bytes=0-99": 100, "0-0": -1, "1-9": -1, "0-x": -1, "": -1, "0--1": -1} {
		got, ok := rangeEnd(s)
		if (want < 0) == ok || (ok && got != want) {
			t.Errorf("rangeEnd(%q) = %d, %v; want %d", s, got, ok, want)
		}
	}
}
