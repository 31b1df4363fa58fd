package upstream

import "testing"

// TestConfigured names the registries the agent serves in the
// registry-in-path form: those of Config.Registries, canonically, and no
// other (not the default URL's host, not unknown ones).
func TestConfigured(t *testing.T) {
	t.Parallel()
	cfg := testConfig("http://127.0.0.1:15000")
	cfg.AllowUnknown = true
	cfg.Registries = []Registry{{Host: "docker.io"}, {Host: "ghcr.io"}}
	c := newClient(t, cfg)
	for host, want := range map[string]bool{
		"docker.io": true, "index.docker.io": true, "ghcr.io": true,
		"quay.io": false, "127.0.0.1:15000": false, "": false, "not a host": false,
	} {
		if got := c.Configured(host); got != want {
			t.Errorf("Configured(%q) = %v, want %v", host, got, want)
		}
	}
}
