package registryshim

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim/grammar"
)

const (
	testDigest = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	testSHA512 = "sha512:f7fbba6e0636f890e56fbbf3283e524c6fa3204ae298382d624741d0dc6638326e282c41be5e4254d8820772c5518a2c5a8c0c7f7eda19594a7eb539453e1ed7"
)

func TestParsePath(t *testing.T) {
	t.Parallel()
	longName := strings.Repeat("a", 255)
	tests := []struct {
		path  string
		want  target
		err   error
		route route // route kept on validation errors
	}{
		{path: "/v2/", want: target{route: routeBase}},
		{path: "/v2", want: target{route: routeBase}},
		{path: "/v2/library/alpine/manifests/latest", want: target{route: routeManifest, name: "library/alpine", ref: "latest"}},
		{path: "/v2/alpine/manifests/" + testDigest, want: target{route: routeManifest, name: "alpine", ref: testDigest, dgst: testDigest}},
		{path: "/v2/a/b/c/d/blobs/" + testDigest, want: target{route: routeBlob, name: "a/b/c/d", dgst: testDigest}},
		{path: "/v2/a/blobs/" + testSHA512, want: target{route: routeBlob, name: "a", dgst: testSHA512}},
		{path: "/v2/a/tags/list", want: target{route: routeTags, name: "a"}},
		{path: "/v2/my-org/my_app.x__y/tags/list", want: target{route: routeTags, name: "my-org/my_app.x__y"}},
		// A repository may be named like a route segment: parsing is from the right.
		{path: "/v2/x/manifests/y/manifests/latest", want: target{route: routeManifest, name: "x/manifests/y", ref: "latest"}},
		{path: "/v2/" + longName + "/tags/list", want: target{route: routeTags, name: longName}},

		{path: "/", err: ErrNotFound},
		{path: "/v1/a/manifests/latest", err: ErrNotFound},
		{path: "/v2/_catalog", err: ErrNotFound},
		{path: "/v2/a", err: ErrNotFound},
		{path: "/v2/a/manifests/", err: ErrNotFound},
		{path: "/v2/a/blobs/", err: ErrNotFound},
		{path: "/v2/a/blobs/uploads/", err: ErrNotFound},
		{path: "/v2/a/tags/other", err: ErrNotFound},
		{path: "/v2/a/referrers/" + testDigest, err: ErrNotFound},

		{path: "/v2/" + longName + "a/tags/list", err: ErrNameInvalid, route: routeTags},
		{path: "/v2/Alpine/manifests/latest", err: ErrNameInvalid, route: routeManifest},
		{path: "/v2//manifests/latest", err: ErrNameInvalid, route: routeManifest},
		{path: "/v2/a//b/manifests/latest", err: ErrNameInvalid, route: routeManifest},
		{path: "/v2/a/../b/manifests/latest", err: ErrNameInvalid, route: routeManifest},
		{path: "/v2/-a/manifests/latest", err: ErrNameInvalid, route: routeManifest},
		{path: "/v2/a./manifests/latest", err: ErrNameInvalid, route: routeManifest},
		{path: "/v2/a___b/manifests/latest", err: ErrNameInvalid, route: routeManifest},

		{path: "/v2/a/blobs/latest", err: ErrDigestInvalid, route: routeBlob},
		{path: "/v2/a/blobs/sha256:abc", err: ErrDigestInvalid, route: routeBlob},
		{path: "/v2/a/blobs/sha256:" + strings.Repeat("G", 64), err: ErrDigestInvalid, route: routeBlob},
		{path: "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", err: ErrDigestInvalid, route: routeBlob},
		{path: "/v2/a/manifests/sha256:abc", err: ErrDigestInvalid, route: routeManifest},
		{path: "/v2/a/manifests/-latest", err: ErrManifestUnknown, route: routeManifest},
		{path: "/v2/a/manifests/" + strings.Repeat("t", 129), err: ErrManifestUnknown, route: routeManifest},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			got, err := parsePath(tt.path)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("parsePath() error = %v, want %v", err, tt.err)
				}
				if got.route != tt.route {
					t.Errorf("route on error = %v, want %v", got.route, tt.route)
				}
				return
			}
			if err != nil {
				t.Fatalf("parsePath() error = %v", err)
			}
			if got != tt.want {
				t.Errorf("parsePath() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"/v2/", "/v2/library/alpine/manifests/latest", "/v2/a/b/blobs/" + testDigest,
		"/v2/a/tags/list", "/v2/a/manifests/" + testDigest, "/v2/a/blobs/sha256:", "/v2//tags/list",
		"/v2/a/manifests/sha256:abc:def",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := parsePath(p)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 {
				t.Fatalf("parsePath(%q) error %v is not a 4xx *Error", p, err)
			}
			return
		}
		if got.route == routeBase {
			return
		}
		if !grammar.Repository(got.name) {
			t.Fatalf("parsePath(%q) accepted invalid name %q", p, got.name)
		}
		switch got.route {
		case routeBlob:
			if got.dgst.Validate() != nil {
				t.Fatalf("parsePath(%q) accepted invalid digest %q", p, got.dgst)
			}
		case routeManifest:
			if got.dgst == "" && !grammar.Tag(got.ref) || got.dgst != "" && (got.dgst.Validate() != nil || string(got.dgst) != got.ref) {
				t.Fatalf("parsePath(%q) accepted invalid reference %+v", p, got)
			}
		}
		if want := "/v2/" + got.name + "/"; !strings.HasPrefix(p, want) {
			t.Fatalf("parsePath(%q) name %q is not the path's prefix", p, got.name)
		}
	})
}

// FuzzDigest checks that a blob path accepts exactly the digests go-digest
// validates, with their hash available.
func FuzzDigest(f *testing.F) {
	for _, s := range []string{testDigest, testSHA512, "sha256:", "sha384:abc", "blake3:" + strings.Repeat("a", 64), ":", "sha256:" + strings.Repeat("A", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if strings.Contains(ref, "/") {
			return
		}
		got, err := parsePath("/v2/a/blobs/" + ref)
		d := digest.Digest(ref)
		valid := ref != "" && d.Validate() == nil
		if (err == nil) != valid {
			t.Fatalf("digest %q: parse error %v, go-digest validity %v", ref, err, valid)
		}
		if err == nil && (got.dgst != d || !d.Algorithm().Available()) {
			t.Fatalf("digest %q parsed as %q", ref, got.dgst)
		}
	})
}

func TestParseRegistry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"docker.io", "docker.io", true},
		{"Registry-1.Docker.IO", "registry-1.docker.io", true},
		{"localhost:5000", "localhost:5000", true},
		{"10.0.0.1:443", "10.0.0.1:443", true},
		{"[::1]", "[::1]", true},
		{"[fd00::1]:5000", "[fd00::1]:5000", true},
		{"ghcr.io:", "", false},
		{"ghcr.io:0", "", false},
		{"ghcr.io:65536", "", false},
		{"ghcr.io:080", "", false},
		{"ghcr.io:+80", "", false},
		{"a:1:2", "", false},
		{"under_score.io", "", false},
		{"-a.io", "", false},
		{"a..io", "", false},
		{"a.io/path", "", false},
		{"a.io?x", "", false},
		{"[::1", "", false},
		{"[1.2.3.4]", "", false},
		{"[fe80::1%eth0]", "", false},
		{"[::1]x", "", false},
		{"::1", "", false},
		{"\u212A.io", "", false}, // KELVIN SIGN: lower-cases to 'k', but is no ASCII
		{strings.Repeat("a.", 128) + "io", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := parseRegistry(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("parseRegistry(%q) error = %v, want ok %v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrNameInvalid) {
				t.Errorf("parseRegistry(%q) error = %v, want NAME_INVALID", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("parseRegistry(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParseRegistry(f *testing.F) {
	for _, s := range []string{"docker.io", "localhost:5000", "[::1]:80", "[", "a:", ":1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ns string) {
		got, err := parseRegistry(ns)
		if err != nil {
			if !errors.Is(err, ErrNameInvalid) {
				t.Fatalf("parseRegistry(%q) error %v", ns, err)
			}
			return
		}
		if got != strings.ToLower(ns) || strings.ContainsAny(got, "/?#@ \t") {
			t.Fatalf("parseRegistry(%q) = %q", ns, got)
		}
	})
}

func TestParseRange(t *testing.T) {
	t.Parallel()
	const size = 100
	tests := []struct {
		header string
		size   int64
		want   byteRange
		res    rangeResult
	}{
		{"bytes=0-9", size, byteRange{0, 10}, rangePartial},
		{"bytes=10-", size, byteRange{10, 90}, rangePartial},
		{"bytes=-10", size, byteRange{90, 10}, rangePartial},
		{"bytes=-1000", size, byteRange{0, 100}, rangePartial},
		{"bytes=0-", size, byteRange{0, 100}, rangePartial},
		{"bytes=99-99", size, byteRange{99, 1}, rangePartial},
		{"bytes=50-1000", size, byteRange{50, 50}, rangePartial},
		{"bytes=0-99999999999999999999999", size, byteRange{0, 100}, rangePartial},
		{"BYTES=1-2", size, byteRange{1, 2}, rangePartial},
		{"bytes= 1-2 ", size, byteRange{1, 2}, rangePartial},
		{"bytes=1-2,", size, byteRange{1, 2}, rangePartial},

		{"bytes=100-", size, byteRange{}, rangeUnsatisfiable},
		{"bytes=100-200", size, byteRange{}, rangeUnsatisfiable},
		{"bytes=99999999999999999999999-", size, byteRange{}, rangeUnsatisfiable},
		{"bytes=-0", size, byteRange{}, rangeUnsatisfiable},
		{"bytes=0-", 0, byteRange{}, rangeUnsatisfiable},
		{"bytes=-5", 0, byteRange{}, rangeUnsatisfiable},

		{"", size, byteRange{}, rangeIgnored},
		{"bytes", size, byteRange{}, rangeIgnored},
		{"bytes=", size, byteRange{}, rangeIgnored},
		{"bytes=-", size, byteRange{}, rangeIgnored},
		{"bytes=abc", size, byteRange{}, rangeIgnored},
		{"bytes=5", size, byteRange{}, rangeIgnored},
		{"bytes=9-5", size, byteRange{}, rangeIgnored},
		{"bytes=+1-2", size, byteRange{}, rangeIgnored},
		{"bytes=1-+2", size, byteRange{}, rangeIgnored},
		{"bytes=1--2", size, byteRange{}, rangeIgnored},
		{"bytes=0-1,5-6", size, byteRange{}, rangeIgnored},
		{"bytes=0-1,200-300", size, byteRange{}, rangeIgnored},
		{"items=0-1", size, byteRange{}, rangeIgnored},
		{" bytes=0-1", size, byteRange{}, rangeIgnored},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			t.Parallel()
			got, res := parseRange(tt.header, tt.size)
			if got != tt.want || res != tt.res {
				t.Errorf("parseRange(%q, %d) = %+v, %v; want %+v, %v", tt.header, tt.size, got, res, tt.want, tt.res)
			}
		})
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-9", "bytes=-5", "bytes=5-", "bytes=0-1,2-3", "bytes=9223372036854775807-", "bytes=-9223372036854775808"} {
		f.Add(s, int64(100))
	}
	f.Add("bytes=0-", int64(0))
	f.Add("bytes=0-", int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, header string, size int64) {
		got, res := parseRange(header, size)
		switch res {
		case rangePartial:
			if got.start < 0 || got.start >= size || got.length < 1 || got.length > size-got.start {
				t.Fatalf("parseRange(%q, %d) = %+v: outside the blob", header, size, got)
			}
		case rangeIgnored, rangeUnsatisfiable:
			if got != (byteRange{}) {
				t.Fatalf("parseRange(%q, %d) = %+v with result %v", header, size, got, res)
			}
		default:
			t.Fatalf("parseRange(%q, %d): unknown result %v", header, size, res)
		}
	})
}
