package upstream

import (
	"encoding/base64"
	"errors"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestRequesterAuth(t *testing.T) {
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ci:s3cret:with:colons"))
	a, err := RequesterAuth(basic)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := a.Authorization()
	if cfg.Username != "ci" || cfg.Password != "s3cret:with:colons" {
		t.Errorf("basic = %+v", cfg)
	}
	a, err = RequesterAuth("bearer tok123")
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _ := a.Authorization(); cfg.RegistryToken != "tok123" {
		t.Errorf("bearer = %+v", cfg)
	}
	for _, bad := range []string{"", "Basic", "Basic !!!", "Basic " + base64.StdEncoding.EncodeToString([]byte("nocolon")), "Bearer", "Negotiate abc", "Digest x"} {
		if _, err := RequesterAuth(bad); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("RequesterAuth(%q) = %v, want ErrUnauthorized", bad, err)
		}
	}
}

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

// RequesterAuth never panics and accepts only what it can pass on.
func FuzzRequesterAuth(f *testing.F) {
	for _, s := range []string{"Basic dTpw", "Bearer x", "basic", "Basic Og==", "Negotiate", " Basic   dTpw ", "Basic ===="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		a, err := RequesterAuth(header)
		if err != nil {
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("RequesterAuth(%q): %v is not ErrUnauthorized", header, err)
			}
			return
		}
		if a == nil || a == authn.Anonymous {
			t.Fatalf("RequesterAuth(%q) = %v", header, a)
		}
	})
}
