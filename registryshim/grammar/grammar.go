package grammar

import (
	"net/netip"
	"regexp"
	"strings"
)

// MaxRepository is the bound on a repository name's length in bytes that
// CNCF distribution and most clients apply (the spec leaves it to them).
const MaxRepository = 255

// MaxRegistry bounds a registry's host[:port] in bytes: a DNS name is at most
// 253 bytes, and nothing longer is a registry anyone can reach.
const MaxRegistry = 255

// Both from the OCI Distribution spec, anchored.
var (
	repositoryRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE        = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// Repository reports whether name is a repository name of the OCI
// Distribution spec ("library/alpine"), without a registry, tag or digest,
// and at most MaxRepository bytes long.
func Repository(name string) bool {
	return len(name) <= MaxRepository && repositoryRE.MatchString(name)
}

// Tag reports whether s is a tag of the OCI Distribution spec: up to 128
// letters, digits, '_', '.' and '-', not starting with '.' or '-'.
func Tag(s string) bool { return tagRE.MatchString(s) }

// Registry reports whether hostport is a registry address host[:port] of at
// most MaxRegistry bytes. The host is a DNS name (which covers IPv4
// literals: dot-separated labels of 1 to 63 ASCII letters, digits and inner
// hyphens, in either case) or a bracketed IPv6 literal without a zone; the
// port is decimal 1 to 65535 without a sign or leading zero.
func Registry(hostport string) bool {
	if hostport == "" || len(hostport) > MaxRegistry {
		return false
	}
	var port string
	hasPort := false
	if strings.HasPrefix(hostport, "[") {
		end := strings.IndexByte(hostport, ']')
		if end < 0 {
			return false
		}
		addr, err := netip.ParseAddr(hostport[1:end])
		if err != nil || !addr.Is6() || addr.Zone() != "" {
			return false
		}
		if rest := hostport[end+1:]; rest != "" {
			if port, hasPort = strings.CutPrefix(rest, ":"); !hasPort {
				return false
			}
		}
	} else {
		var host string
		host, port, hasPort = strings.Cut(hostport, ":")
		if !dnsName(host) {
			return false
		}
	}
	return !hasPort || validPort(port)
}

// dnsName reports whether h is dot-separated labels of 1 to 63 ASCII letters,
// digits and inner hyphens.
func dnsName(h string) bool {
	if h == "" {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validPort reports whether p is a decimal port 1..65535 without a sign or a
// leading zero.
func validPort(p string) bool {
	if p == "" || len(p) > 5 || p[0] == '0' {
		return false
	}
	n := 0
	for _, c := range []byte(p) {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}
