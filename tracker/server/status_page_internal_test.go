package server

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
)

// TestRenderStatus renders every table, seed jobs too, and escapes what
// peers and job submitters wrote.
func TestRenderStatus(t *testing.T) {
	t.Parallel()
	st := tracker.Status{
		Time:          time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Swarms:        []tracker.SwarmStatus{{Digest: digest.FromString("a"), SizeBytes: 80 << 20, Holders: 4, Complete: 3}, {Digest: digest.FromString("b"), Seeding: true}},
		SwarmsOmitted: 7,
		Agents:        []tracker.AgentStatus{{ID: "seederID", Seeder: true, Blobs: 2, Complete: 2}, {ID: "agentID", Blobs: 1, AgeSeconds: 1.25}},
		SeedJobs:      []tracker.SeedJobStatus{{ID: "job1", Image: `app:<script>alert(1)</script>`, State: "running", BlobsDone: 1, BlobsTotal: 3}},
	}
	var b strings.Builder
	if err := renderStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		"2 peers alive · 2 swarms · 1 seeding from the origin",
		"80.0 MiB", "75%", "and 7 more swarms", `id="seedjobs"`, "job1", "1 / 3", "running",
		"seederID</code></td><td>seeder", "1.2s ago", "app:&lt;script&gt;",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") {
		t.Error("a job's image name is not escaped")
	}
}

func TestFormatBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 80 << 20: "80.0 MiB", 3 << 30: "3.0 GiB", 5 << 40: "5.0 TiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
