package main

import (
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/agent/upstream"
)

// --credentials sets the mode of every registry, or of one host (listed
// if it was not; the default upstream's host keeps its URL), from a flag,
// a file or the environment; a mode outside node|requester|auto is refused.
func TestCredentialsFlag(t *testing.T) {
	cfg, err := loadAgent(t, nil, "--upstream", "http://127.0.0.1:15000", "--registry", "ghcr.io",
		"--credentials", "requester", "--credentials", "ghcr.io=node", "--credentials", "127.0.0.1:15000=requester")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Upstream.Credentials != upstream.ModeRequester {
		t.Errorf("default mode %q", cfg.Upstream.Credentials)
	}
	modes := map[string]upstream.Registry{}
	for _, r := range cfg.Upstream.Registries {
		modes[r.Host] = r
	}
	if modes["ghcr.io"].Credentials != upstream.ModeNode {
		t.Errorf("ghcr.io: %+v", modes["ghcr.io"])
	}
	if r := modes["127.0.0.1:15000"]; r.Credentials != upstream.ModeRequester || r.Endpoint != "http://127.0.0.1:15000" || !r.Insecure {
		t.Errorf("the default upstream's host: %+v", r)
	}
	if _, err := upstream.New(cfg.Upstream); err != nil {
		t.Errorf("the upstream client refuses it: %v", err)
	}

	cfg, err = loadAgent(t, nil, "--config", writeConfig(t, "shoal.yaml", "credentials: [docker.io=requester]\n"))
	if err != nil || len(cfg.Upstream.Registries) != 1 || cfg.Upstream.Registries[0].Credentials != upstream.ModeRequester {
		t.Errorf("from a file: %+v, %v", cfg.Upstream.Registries, err)
	}
	for _, bad := range []string{"tenant", "ghcr.io=everyone"} {
		if _, err := loadAgent(t, nil, "--credentials", bad); err == nil || !strings.Contains(err.Error(), "credentials") {
			t.Errorf("--credentials %s: %v, want an error naming credentials", bad, err)
		}
	}
	cfg, err = loadAgent(t, map[string]string{"SHOAL_CREDENTIALS": "requester"})
	if err != nil || cfg.Upstream.Credentials != upstream.ModeRequester {
		t.Errorf("from the environment: %q, %v", cfg.Upstream.Credentials, err)
	}
}
