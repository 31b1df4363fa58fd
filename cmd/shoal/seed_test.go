package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

func loadTracker(t *testing.T, env map[string]string, args ...string) (server.Config, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	cmd := newTrackerCmd()
	if err := cmd.Flags().Parse(args); err != nil {
		return server.Config{}, err
	}
	var f trackerFlags
	if err := loadConfig(cmd, &f); err != nil {
		return server.Config{}, err
	}
	cfg, _, err := f.config()
	return cfg, err
}

func TestTrackerSeedFlags(t *testing.T) {
	dir := t.TempDir()
	seeds := filepath.Join(dir, "seed")
	os.WriteFile(seeds, []byte("# CI\nseed-one\nseed-two\n"), 0o600)
	cfg, err := loadTracker(t, map[string]string{"SHOAL_SEED_PIN_TTL": "2h"},
		"--token", "cluster", "--data-dir", dir, "--seed-token-file", seeds, "--webhook-repos", "team/*,base/*", "--webhook-replicas", "2")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.SeedTokens, ",") != "seed-one,seed-two" || cfg.SeedPinTTL != 2*time.Hour ||
		strings.Join(cfg.WebhookRepos, ",") != "team/*,base/*" || cfg.WebhookReplicas != 2 {
		t.Errorf("config %+v", cfg)
	}
	same := filepath.Join(dir, "same")
	os.WriteFile(same, []byte("cluster\n"), 0o600)
	if _, err := loadTracker(t, nil, "--token", "cluster", "--data-dir", dir, "--seed-token-file", same); err == nil || !strings.Contains(err.Error(), "also a cluster token") {
		t.Errorf("a seed token equal to the cluster token: %v", err)
	}
	if _, err := loadTracker(t, nil, "--token", "cluster", "--data-dir", dir, "--webhook-tags", "[bad"); err == nil {
		t.Error("a bad webhook pattern was accepted")
	}
}

func TestSeedResolverKnowsTheConfiguredRegistries(t *testing.T) {
	t.Parallel()
	r := newSeedResolver(nil, upstream.Config{Default: "http://127.0.0.1:15000", Registries: []upstream.Registry{{Host: "docker.io"}, {Host: "ghcr.io"}}})
	for reg, want := range map[string]bool{"": true, "127.0.0.1:15000": true, "docker.io": true, "index.docker.io": true, "GHCR.io": true, "quay.io": false, "127.0.0.1:15001": false} {
		if got := r.Knows(reg); got != want {
			t.Errorf("Knows(%q) = %v, want %v", reg, got, want)
		}
	}
	if newSeedResolver(nil, upstream.Config{}).Knows("") {
		t.Error("no default upstream, yet the default registry is known")
	}
}

func TestSeedProgressLines(t *testing.T) {
	t.Parallel()
	job := &tracker.SeedJob{ID: "j1", State: tracker.JobPreheat, Replicas: 2, Images: []tracker.SeedImage{{Ref: "app:v1"}}, Blobs: []tracker.SeedBlob{
		{Digest: digest.FromString("a"), Size: 2 << 20, Bytes: 2 << 20, State: tracker.BlobDone, Holders: 1},
		{Digest: digest.FromString("b"), Size: 100, Bytes: 300, State: tracker.BlobFetching}, // more than the size: drawn full
	}}
	var bars, lines bytes.Buffer
	(&barProgress{w: &bars}).update(job)
	lp := &lineProgress{w: &lines, seen: map[digest.Digest]string{}}
	lp.update(job)
	lp.update(job) // nothing changed: nothing logged
	if n := strings.Count(lines.String(), "\n"); n != 2 || !strings.Contains(lines.String(), "done     2.0 MiB/2.0 MiB on 1/2 agents") {
		t.Errorf("log lines:\n%s", lines.String())
	}
	if !strings.Contains(bars.String(), "[########################]") {
		t.Errorf("bars:\n%s", bars.String())
	}
	job.Blobs[0].Holders = 2
	job.Blobs[1].State, job.Blobs[1].Holders = tracker.BlobDone, 2
	if !job.Complete() || !strings.Contains(summary(job, 1500*time.Millisecond), "seeded 1 images, 2 blobs, 2.0 MiB in 1.5s (job j1); every blob on 2 agents") {
		t.Errorf("summary %q", summary(job, 1500*time.Millisecond))
	}
}
