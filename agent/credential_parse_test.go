package agent

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestParseAuthorization(t *testing.T) {
	t.Parallel()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		header string
		want   authorization
		bad    bool
	}{
		{header: ""},
		{header: "Basic " + b64("u:p"), want: authorization{scheme: "basic", user: "u", password: "p"}},
		{header: "basic  " + b64("u:p:with:colons") + " ", want: authorization{scheme: "basic", user: "u", password: "p:with:colons"}},
		{header: "Basic " + b64(":"), want: authorization{}}, // empty credentials: none
		{header: "Basic " + b64(":token"), want: authorization{scheme: "basic", password: "token"}},
		{header: "Bearer abc.def", want: authorization{scheme: "bearer", password: "abc.def"}},
		{header: "Basic", bad: true},
		{header: "Basic %%%", bad: true},
		{header: "Basic " + b64("nocolon"), bad: true},
		{header: "Basic " + b64("u\x00:p"), bad: true},
		{header: "Basic " + b64("u:p\n"), bad: true},
		{header: "Basic " + b64("u:\xff"), bad: true},
		{header: "Bearer", bad: true},
		{header: "Bearer a b", bad: true},
		{header: "Negotiate abc", bad: true},
		{header: "Basic " + strings.Repeat("A", maxAuthorization), bad: true},
	} {
		got, err := parseAuthorization(tc.header)
		if tc.bad {
			if !errors.Is(err, errMalformedAuth) {
				t.Errorf("%.30q: err %v, want errMalformedAuth", tc.header, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%.30q: %+v, %v; want %+v", tc.header, got, err, tc.want)
		}
	}
}

// The keyed hash names the same credentials alike within one process,
// others and other processes' differently, and prints no secret.
func TestCredentialIdentity(t *testing.T) {
	t.Parallel()
	k1, err := newCredentials(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := newCredentials(prometheus.NewRegistry())
	a := authorization{scheme: "basic", user: "u", password: "hunter2"}
	b := authorization{scheme: "basic", user: "u", password: "hunter3"}
	if k1.credential(a).ID() != k1.credential(a).ID() {
		t.Error("one credential, two IDs")
	}
	if k1.credential(a).ID() == k1.credential(b).ID() || k1.credential(a).ID() == k2.credential(a).ID() {
		t.Error("IDs collide")
	}
	if k1.credential(authorization{}) != nil {
		t.Error("no header, yet a credential")
	}
	c := k1.credential(a)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprint(*c)} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("the secret is printed: %s", s)
		}
	}
}

// FuzzParseAuthorization: any header parses or fails with
// errMalformedAuth, never panics, and an error never quotes the header.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"", "Basic dTpw", "Basic Og==", "Bearer x", "Basic", "basic   dTpwOnE=", "Digest a=b", "Basic \xff\xfe", "Bearer a\tb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		a, err := parseAuthorization(h)
		if err != nil {
			if !errors.Is(err, errMalformedAuth) {
				t.Fatalf("%q: %v does not wrap errMalformedAuth", h, err)
			}
			if len(h) > 12 && strings.Contains(err.Error(), h) {
				t.Fatalf("%q: the error quotes the header: %v", h, err)
			}
			return
		}
		if a.scheme == "" && (a.user != "" || a.password != "") {
			t.Fatalf("%q: credentials without a scheme: %+v", h, a)
		}
		if a.scheme == "" && h != "" {
			// empty Basic credentials are the only header read as none
			_, v, _ := strings.Cut(strings.TrimSpace(h), " ")
			if raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(v)); string(raw) != ":" {
				t.Fatalf("%q: parsed as no credentials", h)
			}
		}
	})
}

// BenchmarkRequesterCredential is what requester mode adds to every
// request before the shim: parsing the header and the keyed hash.
func BenchmarkRequesterCredential(b *testing.B) {
	k, err := newCredentials(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	h := "Basic " + base64.StdEncoding.EncodeToString([]byte("tenant-a:a-token-of-forty-characters-or-so-0123"))
	b.ReportAllocs()
	for b.Loop() {
		a, err := parseAuthorization(h)
		if err != nil {
			b.Fatal(err)
		}
		if k.credential(a) == nil {
			b.Fatal("no credential")
		}
	}
}
