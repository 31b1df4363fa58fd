package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loadAgent parses args as `shoal agent` does, with env set, and returns
// the node configuration it would build.
func loadAgent(t *testing.T, env map[string]string, args ...string) (nodeConfig, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cmd := newAgentCmd()
	if err := cmd.Flags().Parse(args); err != nil {
		return nodeConfig{}, err
	}
	var f agentFlags
	if err := loadConfig(cmd, &f); err != nil {
		return nodeConfig{}, err
	}
	return f.config()
}

func writeConfig(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every key comes from, in rising precedence, the default, the file, the
// SHOAL_* environment and the flag.
func TestConfigPrecedence(t *testing.T) {
	file := writeConfig(t, "shoal.yaml", `
data-dir: /var/lib/from-file
stall-timeout: 30s
max-in-flight: 6
max-uploads: 3
upload-queue: 1s
registry: [a.example=https://127.0.0.1:1, b.example]
zone: rack-1.file
`)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want func(nodeConfig) []string // mismatches
	}{
		{"defaults", nil, []string{"--data-dir", "/d"}, func(c nodeConfig) []string {
			return mismatches(
				c.Swarm.StallTimeout, 20*time.Second,
				c.Swarm.MaxInFlight, 8,
				c.Swarm.PerPeer, 2,
				c.Swarm.NodeInFlight, 6,
				c.P2P.MaxUploads, 8,
				c.Agent.TagTTL, 5*time.Second,
				c.Agent.AuthTTL, 10*time.Minute,
				c.Zone, "",
				c.DataDir, "/d")
		}},
		{"file", nil, []string{"--config", file}, func(c nodeConfig) []string {
			return mismatches(
				c.DataDir, "/var/lib/from-file",
				c.Swarm.StallTimeout, 30*time.Second,
				c.Swarm.MaxInFlight, 6,
				c.P2P.MaxUploads, 3,
				c.P2P.UploadQueue, time.Second,
				len(c.Upstream.Registries), 2,
				c.Zone, "rack-1.file",
				c.Swarm.PeersRefresh, 2*time.Second)
		}},
		{"env over file", map[string]string{"SHOAL_STALL_TIMEOUT": "40s", "SHOAL_PER_PEER_IN_FLIGHT": "3", "SHOAL_ZONE": "eu-west-1a"}, []string{"--config", file},
			func(c nodeConfig) []string {
				return mismatches(
					c.Swarm.StallTimeout, 40*time.Second,
					c.Zone, "eu-west-1a",
					c.Swarm.PerPeer, 3,
					c.Swarm.MaxInFlight, 6)
			}},
		{"flag over env", map[string]string{"SHOAL_STALL_TIMEOUT": "40s", "SHOAL_ZONE": "eu-west-1a"}, []string{"--config", file, "--stall-timeout", "50s", "--peers-refresh", "1s", "--zone", "rack_7", "--node-in-flight", "0"},
			func(c nodeConfig) []string {
				return mismatches(
					c.Swarm.StallTimeout, 50*time.Second,
					c.Swarm.NodeInFlight, 0,
					c.Zone, "rack_7",
					c.Swarm.PeersRefresh, time.Second,
					c.Swarm.MaxInFlight, 6)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadAgent(t, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.want(cfg) {
				t.Error(m)
			}
		})
	}
}

// mismatches compares got, want pairs and describes each that differs.
func mismatches(pairs ...any) []string {
	var out []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] != pairs[i+1] {
			out = append(out, fmt.Sprintf("pair %d: got %v, want %v", i/2, pairs[i], pairs[i+1]))
		}
	}
	return out
}

// Bad configuration is refused with a message naming what is wrong.
func TestConfigRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string // YAML; "" for none
		env  map[string]string
		args []string
		want string
	}{
		{"unknown key in the file", "stall-timeuot: 1s\n", nil, nil, "stall-timeuot"},
		{"wrong type in the file", "max-in-flight: many\n", nil, nil, "max-in-flight"},
		{"no data dir", "", nil, []string{"--data-dir", ""}, "data-dir"},
		{"zero in-flight", "", nil, []string{"--max-in-flight", "0"}, "max-in-flight"},
		{"negative node in-flight", "", nil, []string{"--node-in-flight", "-1"}, "node-in-flight"},
		{"zero stall timeout", "", map[string]string{"SHOAL_STALL_TIMEOUT": "0s"}, nil, "stall-timeout"},
		{"zero upload slots", "", nil, []string{"--tracker", "http://127.0.0.1:1", "--max-uploads", "0"}, "upload"},
		{"bad duration", "", nil, []string{"--stall-timeout", "soon"}, "stall-timeout"},
		{"bad registry", "", nil, []string{"--registry", "=http://x"}, "registry"},
		{"zero auth ttl", "", nil, []string{"--auth-ttl", "0s"}, "auth-ttl"},
		{"zone with upper case", "", nil, []string{"--zone", "EU-West"}, "zone"},
		{"zone with a slash", "zone: rack/1\n", nil, nil, "zone"},
		{"zone too long", "", map[string]string{"SHOAL_ZONE": strings.Repeat("z", 64)}, nil, "zone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.file != "" {
				args = append([]string{"--config", writeConfig(t, "shoal.yaml", tc.file)}, args...)
			}
			_, err := loadAgent(t, tc.env, args...)
			if err == nil {
				t.Fatalf("accepted; want an error naming %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}

// The tracker takes its token from a file, its own keys and the seeder's
// node keys the same way, and the seeder has its own upload defaults.
func TestTrackerConfig(t *testing.T) {
	token := writeConfig(t, "tokens", "# the new one, then the one being rotated out\ns3cret\n\nold-s3cret\n")
	file := writeConfig(t, "tracker.toml", "announce-interval = \"2s\"\nstall-timeout = \"45s\"\n")
	t.Setenv("SHOAL_TOKEN_FILE", token)
	cmd := newTrackerCmd()
	if err := cmd.Flags().Parse([]string{"--config", file, "--data-dir", t.TempDir(), "--max-in-flight", "8"}); err != nil {
		t.Fatal(err)
	}
	var f trackerFlags
	if err := loadConfig(cmd, &f); err != nil {
		t.Fatal(err)
	}
	tcfg, seed, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mismatches(
		len(tcfg.Tokens), 2,
		tcfg.Tokens[0], "s3cret",
		tcfg.Tokens[1], "old-s3cret",
		tcfg.AnnounceInterval, 2*time.Second,
		tcfg.PeerTTL, 6*time.Second,
		seed.Swarm.StallTimeout, 45*time.Second,
		seed.Swarm.MaxInFlight, 8,
		seed.P2P.MaxUploads, 16,
		seed.P2P.UploadQueue, 2*time.Second) {
		t.Error(m)
	}

	t.Setenv("SHOAL_TOKEN_FILE", "")
	cmd = newTrackerCmd()
	f = trackerFlags{}
	if err := loadConfig(cmd, &f); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.config(); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("no token: %v, want an error naming the token", err)
	}
}
