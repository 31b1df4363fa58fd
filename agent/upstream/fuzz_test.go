package upstream

import (
	"strings"
	"testing"
)

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{
		"bytes 0-99/100", "bytes 10-19/*", "bytes */100", "bytes 5-4/10", "bytes 0-100/100",
		"bytes -1-5/10", "bytes +1-5/10", "bytes 1-/10", "bytes */*", "bits 0-1/2", "", "bytes 0-9223372036854775807/9223372036854775807",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, last, size, err := parseContentRange(s)
		if err != nil {
			return
		}
		if first == -1 {
			if last != -1 || size < 0 {
				t.Fatalf("%q: unsatisfied range with first=%d last=%d size=%d", s, first, last, size)
			}
			return
		}
		if first < 0 || last < first || (size >= 0 && last >= size) || size < -1 {
			t.Fatalf("%q: accepted inconsistent range %d-%d/%d", s, first, last, size)
		}
	})
}

func FuzzManifestMediaType(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"application/vnd.oci.image.manifest.v1+json", "{}"},
		{"application/json; charset=utf-8", `{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}`},
		{"", `{"schemaVersion":2,"manifests":[]}`},
		{"text/plain", `{"schemaVersion":2,"config":{},"layers":[]}`},
		{"", `not json`},
		{";;", `{"mediaType":7}`},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		mt, err := manifestMediaType(ct, body)
		if err == nil && mt == "" {
			t.Fatalf("empty media type without error for %q %q", ct, body)
		}
	})
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"latest", "v1.2.3", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "-x", "../x", "a/b", "md5:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		d, tag, err := parseRef(ref)
		if err != nil {
			return
		}
		if strings.ContainsAny(ref, "/?#% ") {
			t.Fatalf("%q: would change the request path", ref)
		}
		if (d == "") == (tag == "") {
			t.Fatalf("%q: want exactly one of digest %q and tag %q", ref, d, tag)
		}
		if tag != "" && (len(tag) > 128 || tag != ref) {
			t.Fatalf("%q: bad tag %q accepted", ref, tag)
		}
		if d != "" && d.Validate() != nil {
			t.Fatalf("%q: invalid digest accepted", ref)
		}
	})
}

// FuzzCheckRepo guards the request path: an accepted repository name can
// not climb out of /v2/ or smuggle a query.
func FuzzCheckRepo(f *testing.F) {
	for _, s := range []string{"app", "team/app", "a/b/c", "../x", "a//b", "a/", "A", "a..b", "a__b", "a--b", "a?b", "a%2fb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, repo string) {
		if checkRepo(repo) != nil {
			return
		}
		if strings.Contains(repo, "..") || strings.Contains(repo, "//") || strings.HasPrefix(repo, "/") ||
			strings.HasSuffix(repo, "/") || strings.ContainsAny(repo, "?#% ") {
			t.Fatalf("%q accepted", repo)
		}
	})
}
