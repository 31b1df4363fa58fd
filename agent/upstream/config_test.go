package upstream

import (
	"errors"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		ok     bool
	}{
		{"default", func(*Config) {}, true},
		{"http default URL", func(c *Config) { c.Default = "http://127.0.0.1:15000" }, true},
		{"default names a table host", func(c *Config) {
			c.Registries = []Registry{{Host: "ghcr.io"}}
			c.Default = "ghcr.io"
		}, true},
		{"https endpoint", func(c *Config) {
			c.Registries = []Registry{{Host: "docker.io", Endpoint: "https://mirror.example:5000"}}
		}, true},
		{"insecure http endpoint", func(c *Config) {
			c.Registries = []Registry{{Host: "a.example", Endpoint: "http://127.0.0.1:5000", Insecure: true}}
		}, true},
		{"http endpoint without insecure", func(c *Config) {
			c.Registries = []Registry{{Host: "a.example", Endpoint: "http://127.0.0.1:5000"}}
		}, false},
		{"endpoint with a path", func(c *Config) {
			c.Registries = []Registry{{Host: "a.example", Endpoint: "https://mirror.example/prefix"}}
		}, false},
		{"endpoint without scheme", func(c *Config) {
			c.Registries = []Registry{{Host: "a.example", Endpoint: "mirror.example"}}
		}, false},
		{"endpoint with credentials in it", func(c *Config) {
			c.Registries = []Registry{{Host: "a.example", Endpoint: "https://u:p@mirror.example"}}
		}, false},
		{"empty host", func(c *Config) { c.Registries = []Registry{{Endpoint: "https://x.example"}} }, false},
		{"host with a path", func(c *Config) { c.Registries = []Registry{{Host: "a.example/x"}} }, false},
		{"same host twice", func(c *Config) {
			c.Registries = []Registry{{Host: "docker.io"}, {Host: "index.docker.io"}}
		}, false},
		{"username without password", func(c *Config) { c.Registries = []Registry{{Host: "a.example", Username: "u"}} }, false},
		{"default names an unknown host", func(c *Config) { c.Default = "ghcr.io" }, false},
		{"default with ftp scheme", func(c *Config) { c.Default = "ftp://a.example" }, false},
		{"zero timeout", func(c *Config) { c.Timeout = 0 }, false},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			tc.modify(&cfg)
			err := cfg.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
			if _, nerr := New(cfg); (nerr == nil) != tc.ok {
				t.Errorf("New() = %v, want ok=%v", nerr, tc.ok)
			}
		})
	}
}

func TestMapStatus(t *testing.T) {
	t.Parallel()
	// The sentinels are checked in fetch_test.go against a server; here
	// only the cases a server test cannot reach cheaply.
	for _, tc := range []struct {
		kind   string
		status int
		codes  []string
		want   error
	}{
		{kindBlob, 404, nil, ErrBlobNotFound},
		{kindHeadBlob, 404, nil, ErrBlobNotFound},
		{kindHeadManifest, 404, nil, ErrManifestNotFound},
		{kindTags, 404, nil, ErrRepositoryNotFound},
		{kindBlob, 404, []string{"NAME_UNKNOWN"}, ErrRepositoryNotFound},
		{kindBlob, 416, nil, ErrRangeNotSatisfiable},
		{kindManifest, 503, []string{"MANIFEST_UNKNOWN"}, ErrUnavailable},
		{kindManifest, 401, []string{"DENIED"}, ErrUnauthorized},
		{kindManifest, 400, []string{"DIGEST_INVALID"}, ErrInvalidDigest},
		{kindManifest, 405, []string{"UNSUPPORTED"}, ErrUnsupported},
	} {
		if err := mapStatus(tc.kind, tc.status, tc.codes); err != tc.want {
			t.Errorf("mapStatus(%s, %d, %v) = %v, want %v", tc.kind, tc.status, tc.codes, err, tc.want)
		}
	}
}
