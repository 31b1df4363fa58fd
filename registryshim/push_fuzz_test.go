package registryshim

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// parseContentRange never panics; what it accepts is a non-empty range.
func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{"0-0", "0-1023", "1024-2047", "bytes 0-9", "bytes=0-9", "0-9/10", "0-9/*",
		"", "-", "5-2", "-1-3", "1-", "a-b", "0-1-2", "99999999999999999999-1", " 0-1 ", "bytes 0-9/abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, last, err := parseContentRange(s)
		if err != nil {
			return
		}
		if first < 0 || last < first || last >= 1<<62 {
			t.Fatalf("parseContentRange(%q) = %d, %d", s, first, last)
		}
	})
}

// parseUploadPath never panics; an upload path it accepts names a valid
// repository and, when valid, an id of the allowed shape, and its
// Location prefix is the path it came from.
func FuzzParseUploadPath(f *testing.F) {
	for _, s := range []string{"/v2/a/blobs/uploads/", "/v2/a/blobs/uploads", "/v2/a/b/blobs/uploads/abc-123",
		"/v2/blobs/uploads/", "/v2//blobs/uploads/", "/v2/a/blobs/uploads/x/y", "/v2/A/blobs/uploads/",
		"/v2/a/blobs/uploads/blobs/uploads/", "/v2/a/manifests/v1", "/v3/a/blobs/uploads/", "/v2/a/blobs/uploads/%",
		"/v2/docker.io/library/alpine/blobs/uploads/"} {
		f.Add(s, "POST", "")
	}
	f.Add("/v2/a/blobs/uploads/id", "PATCH", "0-3")
	f.Fuzz(func(t *testing.T, p, method, contentRange string) {
		up, ok := parseUploadPath(p)
		if ok {
			if !strings.HasPrefix(p, up.prefix[:len(up.prefix)-1]) {
				t.Fatalf("parseUploadPath(%q): prefix %q", p, up.prefix)
			}
			if up.err == nil && (up.t.name == "" || (up.id != "" && !validUploadID(up.id))) {
				t.Fatalf("parseUploadPath(%q) = %+v", p, up)
			}
			var e *Error
			if up.err != nil && !errors.As(up.err, &e) {
				t.Fatalf("parseUploadPath(%q): error %v is no OCI error", p, up.err)
			}
		}
		r, err := http.NewRequest(http.MethodPatch, "http://x/", strings.NewReader("abcd"))
		if err != nil {
			return
		}
		r.Header.Set("Content-Range", contentRange)
		if c, err := chunkOf(r); err == nil && c.Offset >= 0 && c.Length != 4 {
			t.Fatalf("chunk %+v accepted for a 4-byte body with Content-Range %q", c, contentRange)
		}
	})
}
