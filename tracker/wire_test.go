package tracker

import (
	"strings"
	"testing"
)

func TestValidRegistry(t *testing.T) {
	t.Parallel()
	for r, want := range map[string]bool{
		"registry.example":       true,
		"registry.example:5000":  true,
		"localhost":              true,
		"localhost:5000":         true,
		"10.0.0.1:443":           true,
		"[::1]":                  true,
		"[fd00::1]:5000":         true,
		"a-b.c":                  true,
		"":                       false,
		"http://registry":        false,
		"registry/path":          false,
		"registry:":              false,
		"registry:0":             false,
		"registry:65536":         false,
		"registry:05000":         false,
		"-registry":              false,
		"registry-":              false,
		"reg..istry":             false,
		"[::1":                   false,
		"[::1]5000":              false,
		"[10.0.0.1]":             false,
		"[fe80::1%eth0]":         false,
		"::1":                    false,
		"user@registry":          false,
		strings.Repeat("a", 256): false,
	} {
		if got := validRegistry(r); got != want {
			t.Errorf("validRegistry(%q) = %v, want %v", r, got, want)
		}
	}
}

func TestValidRepo(t *testing.T) {
	t.Parallel()
	for r, want := range map[string]bool{
		"alpine":                  true,
		"library/alpine":          true,
		"a/b/c-d_e.f__g--h":       true,
		"":                        false,
		"Alpine":                  false,
		"/alpine":                 false,
		"alpine/":                 false,
		"a//b":                    false,
		"a_-b":                    false,
		"a:tag":                   false,
		"a@sha256:x":              false,
		strings.Repeat("a", 256):  false,
		strings.Repeat("a/", 100): false,
	} {
		if got := validRepo(r); got != want {
			t.Errorf("validRepo(%q) = %v, want %v", r, got, want)
		}
	}
}

func TestStatusRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range codes {
		code, status := StatusOf(c.err)
		if code != c.code || errorOf(status) != c.err {
			t.Errorf("%v: code %s status %d maps back to %v", c.err, code, status, errorOf(status))
		}
	}
}
