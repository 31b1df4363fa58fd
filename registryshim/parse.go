package registryshim

import (
	// go-digest only accepts algorithms whose hash is linked into the binary.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"math"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim/grammar"
)

// route is what a request path asks for; it is also the "route" metric label.
type route int

const (
	routeOther route = iota
	routeBase
	routeManifest
	routeBlob
	routeTags
	routeUpload // blob upload sessions (push.go)
)

func (r route) String() string {
	switch r {
	case routeBase:
		return "base"
	case routeManifest:
		return "manifest"
	case routeBlob:
		return "blob"
	case routeTags:
		return "tags"
	case routeUpload:
		return "upload"
	default:
		return "other"
	}
}

// target is a parsed and fully validated request path.
type target struct {
	route route
	name  string        // repository name; "" for routeBase
	ref   string        // routeManifest: a valid tag or digest
	dgst  digest.Digest // routeBlob, or routeManifest by digest
}

// parsePath parses and validates a /v2/ path. The repository name may hold
// slashes, so the path is read from the right: <name>/<kind>/<ref>.
//
// A path that is no route is ErrNotFound. An invalid manifest reference is
// DIGEST_INVALID when it holds a ':' (it tries to be a digest; a client bug
// worth a 400) and MANIFEST_UNKNOWN otherwise (no manifest can carry an
// invalid tag; CNCF distribution answers 404 too, its router matches no route).
// On a validation error the returned target still carries its route, for
// metrics.
func parsePath(p string) (target, error) {
	if p == "/v2/" || p == "/v2" {
		return target{route: routeBase}, nil
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return target{}, ErrNotFound
	}
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return target{}, ErrNotFound
	}
	ref, rest := rest[i+1:], rest[:i]
	j := strings.LastIndexByte(rest, '/')
	if j < 0 {
		return target{}, ErrNotFound
	}
	kind, name := rest[j+1:], rest[:j]

	t := target{name: name}
	switch {
	case kind == "manifests" && ref != "":
		t.route = routeManifest
	case kind == "blobs" && ref != "":
		t.route = routeBlob
	case kind == "tags" && ref == "list":
		t.route = routeTags
	default:
		return target{}, ErrNotFound
	}
	if !grammar.Repository(name) {
		return target{route: t.route}, ErrNameInvalid.withDetail(shortDetail("name", name))
	}

	switch t.route {
	case routeBlob:
		d, err := digest.Parse(ref)
		if err != nil {
			return target{route: t.route}, ErrDigestInvalid.withDetail(shortDetail("digest", ref))
		}
		t.dgst = d
	case routeManifest:
		if strings.Contains(ref, ":") {
			d, err := digest.Parse(ref)
			if err != nil {
				return target{route: t.route}, ErrDigestInvalid.withDetail(shortDetail("digest", ref))
			}
			t.dgst = d
		} else if !grammar.Tag(ref) {
			return target{route: t.route}, ErrManifestUnknown.withDetail(shortDetail("tag", ref))
		}
		t.ref = ref
	}
	return t, nil
}

// shortDetail echoes a client's own input back in an error detail, unless it
// is too long to be useful.
func shortDetail(key, value string) map[string]string {
	if len(value) > 256 {
		return nil
	}
	return map[string]string{key: value}
}

// parseRegistry validates containerd's ?ns= value as host[:port] and returns
// it lower-cased ("" stays ""). Hosts are DNS names, IPv4 or bracketed IPv6
// literals (see grammar.Registry).
func parseRegistry(ns string) (string, error) {
	if ns == "" {
		return "", nil
	}
	if !grammar.Registry(ns) {
		return "", ErrNameInvalid
	}
	return strings.ToLower(ns), nil
}

// byteRange is a satisfiable range: 0 <= start < size, 1 <= length <= size-start.
type byteRange struct {
	start, length int64
}

type rangeResult int

const (
	rangeIgnored       rangeResult = iota // serve the whole blob with 200
	rangePartial                          // serve byteRange with 206
	rangeUnsatisfiable                    // 416
)

// parseRange applies a Range header to a blob of size bytes (RFC 9110 §14).
// A header that is malformed, of another unit, or invalid (last < first) is
// ignored, as the RFC allows. So is a multi-range request: a runtime never
// sends one, and a whole body is simpler and as correct as multipart.
func parseRange(header string, size int64) (byteRange, rangeResult) {
	unit, set, ok := strings.Cut(header, "=")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return byteRange{}, rangeIgnored
	}
	// The RFC's list syntax allows empty elements and whitespace around them.
	var spec string
	n := 0
	for s := range strings.SplitSeq(set, ",") {
		if s = strings.Trim(s, " \t"); s != "" {
			spec = s
			n++
		}
	}
	if n != 1 {
		return byteRange{}, rangeIgnored
	}
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return byteRange{}, rangeIgnored
	}
	if first == "" { // suffix: the last n bytes
		n, ok := parseDigits(last)
		if !ok {
			return byteRange{}, rangeIgnored
		}
		if n == 0 || size <= 0 {
			return byteRange{}, rangeUnsatisfiable
		}
		n = min(n, size)
		return byteRange{start: size - n, length: n}, rangePartial
	}
	a, ok := parseDigits(first)
	if !ok {
		return byteRange{}, rangeIgnored
	}
	b := int64(math.MaxInt64)
	if last != "" {
		if b, ok = parseDigits(last); !ok || b < a {
			return byteRange{}, rangeIgnored
		}
	}
	if a >= size {
		return byteRange{}, rangeUnsatisfiable
	}
	b = min(b, size-1)
	return byteRange{start: a, length: b - a + 1}, rangePartial
}

// parseDigits parses a non-empty run of ASCII digits, saturating at
// MaxInt64: a position past any blob is still a valid, unsatisfiable one.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + d
	}
	return n, true
}
