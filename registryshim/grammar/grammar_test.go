package grammar

import (
	"strings"
	"testing"
)

func TestRepository(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"alpine", true},
		{"library/alpine", true},
		{"a/b/c-d_e.f__g--h", true},
		{"0", true},
		{"a.b", true},
		{"a_b", true},
		{"a__b", true},
		{"a-b", true},
		{"a---b", true},
		{strings.Repeat("a", MaxRepository), true},
		{strings.Repeat("a/", 127) + "a", true}, // 255 bytes

		{"", false},
		{"Alpine", false},
		{"/alpine", false},
		{"alpine/", false},
		{"a//b", false},
		{"a..b", false},
		{"a___b", false},
		{"a_-b", false},
		{"a._b", false},
		{"-a", false},
		{"a-", false},
		{".a", false},
		{"../x", false},
		{"a:tag", false},
		{"a@sha256:x", false},
		{"a?b", false},
		{"a%2fb", false},
		{"a b", false},
		{"é", false},
		{strings.Repeat("a", MaxRepository+1), false},
		{strings.Repeat("a/", 100), false},
		{strings.Repeat("a/", 128) + "a", false}, // 257 bytes
	}
	for _, tt := range tests {
		if got := Repository(tt.in); got != tt.want {
			t.Errorf("Repository(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestTag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"latest", true},
		{"v1.2.3-rc.1", true},
		{"_", true},
		{"A_b.C-d", true},
		{"0", true},
		{strings.Repeat("a", 128), true},

		{"", false},
		{".hidden", false},
		{"-x", false},
		{"a:b", false},
		{"a/b", false},
		{"a@b", false},
		{"a b", false},
		{"ä", false},
		{strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		if got := Tag(tt.in); got != tt.want {
			t.Errorf("Tag(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"registry.example", true},
		{"registry.example:5000", true},
		{"Registry-1.Docker.IO", true},
		{"localhost", true},
		{"localhost:5000", true},
		{"10.0.0.1:443", true},
		{"a:1", true},
		{"a:65535", true},
		{"[::1]", true},
		{"[fd00::1]:5000", true},
		{"[::ffff:10.0.0.1]", true},
		{"a-b.c", true},
		{strings.Repeat("a", 63) + ".io", true},

		{"", false},
		{"http://registry", false},
		{"registry/path", false},
		{"a.io?x", false},
		{"user@registry", false},
		{"under_score.io", false},
		{"registry:", false},
		{"registry:0", false},
		{"registry:05000", false},
		{"registry:+5000", false},
		{"registry:-1", false},
		{"registry:65536", false},
		{"registry:123456", false},
		{"a:1:2", false},
		{"-registry", false},
		{"registry-", false},
		{"reg..istry", false},
		{"registry.", false},
		{".registry", false},
		{strings.Repeat("a", 64) + ".io", false},
		{"\u212Aegistry", false}, // KELVIN SIGN, which strings.ToLower makes 'k'
		{"[::1", false},
		{"[::1]5000", false},
		{"[::1]x", false},
		{"[::1]:", false},
		{"[10.0.0.1]", false},
		{"[fe80::1%eth0]", false},
		{"::1", false},
		{strings.Repeat("a", 256), false},
		{strings.Repeat("a.", 128) + "io", false},
	}
	for _, tt := range tests {
		if got := Registry(tt.in); got != tt.want {
			t.Errorf("Registry(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// FuzzRepository checks that an accepted name can go into a /v2/ URL path
// as is, and that the grammar composes along its '/' separators.
func FuzzRepository(f *testing.F) {
	for _, s := range []string{"app", "team/app", "a/b/c", "../x", "a//b", "a/", "A", "a..b", "a__b", "a--b", "a?b", "a%2fb", strings.Repeat("a/", 128)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !Repository(name) {
			return
		}
		if len(name) > MaxRepository {
			t.Fatalf("%q: %d bytes accepted", name, len(name))
		}
		if strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789._/-") != "" || strings.ToLower(name) != name {
			t.Fatalf("%q: character outside [a-z0-9._/-] accepted", name)
		}
		if strings.Contains(name, "..") || strings.Contains(name, "//") ||
			strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") {
			t.Fatalf("%q: would change the request path", name)
		}
		for c := range strings.SplitSeq(name, "/") {
			if !Repository(c) {
				t.Fatalf("%q accepted but its component %q is not", name, c)
			}
			if first, last := c[0], c[len(c)-1]; !alnum(first) || !alnum(last) {
				t.Fatalf("%q: component %q does not start and end with a letter or digit", name, c)
			}
		}
		if len(name)+2 <= MaxRepository && !Repository(name+"/"+name[:1]) {
			t.Fatalf("%q accepted but not with one more component", name)
		}
	})
}

// FuzzRegistry checks that an accepted host[:port] is one URL authority: no
// path, query, fragment, user info or space.
func FuzzRegistry(f *testing.F) {
	for _, s := range []string{"docker.io", "localhost:5000", "[::1]:80", "[", "a:", ":1", "\u212A", "a:+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, hostport string) {
		if !Registry(hostport) {
			return
		}
		if len(hostport) > MaxRegistry || strings.ContainsAny(hostport, "/?#@%_ \t\r\n") {
			t.Fatalf("%q accepted", hostport)
		}
		for _, c := range []byte(hostport) {
			if c >= 0x80 {
				t.Fatalf("%q: non-ASCII accepted", hostport)
			}
		}
		if !Registry(strings.ToLower(hostport)) || !Registry(strings.ToUpper(hostport)) {
			t.Fatalf("%q accepted in one case only", hostport)
		}
	})
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
