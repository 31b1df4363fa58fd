package testbed

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseUpstream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		text    string
		want    Upstream
		wantErr bool
	}{
		{name: "empty", text: "", want: Upstream{}},
		{
			name: "bytes and blob GETs over codes",
			text: "# HELP shoal_upstream_bytes_total Blob bytes.\n# TYPE shoal_upstream_bytes_total counter\n" +
				"shoal_upstream_bytes_total 5.24288e+07\n" +
				"shoal_upstream_requests_total{code=\"200\",kind=\"blob\"} 5\n" +
				"shoal_upstream_requests_total{code=\"206\",kind=\"blob\"} 2 1700000000000\n" +
				"shoal_upstream_requests_total{code=\"200\",kind=\"manifest\"} 9\n" +
				"shoal_upstream_requests_total{code=\"200\",kind=\"head-blob\"} 4\n" +
				"shoal_upstream_bytes_total_other 99\n" +
				"shoal_upstream_request_duration_seconds_count{kind=\"blob\"} 7\n",
			want: Upstream{BlobBytes: 52428800, BlobGets: 7},
		},
		{name: "none yet", text: "shoal_upstream_bytes_total 0\n", want: Upstream{}},
		{name: "bad value", text: "shoal_upstream_bytes_total lots", wantErr: true},
		{name: "negative", text: `shoal_upstream_requests_total{kind="blob"} -1`, wantErr: true},
		{name: "infinite", text: "shoal_upstream_bytes_total +Inf", wantErr: true},
		{name: "unterminated labels", text: `shoal_upstream_requests_total{kind="blob" 1`, want: Upstream{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseUpstream(tt.text)
			if tt.wantErr {
				if !errors.Is(err, ErrParse) {
					t.Fatalf("err %v, want ErrParse", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseUpstream(f *testing.F) {
	f.Add("shoal_upstream_bytes_total 1\n")
	f.Add("shoal_upstream_requests_total{kind=\"blob\",x=\"}\"} 1e300\n")
	f.Add("shoal_upstream_requests_total{")
	f.Fuzz(func(t *testing.T, text string) {
		u, err := parseUpstream(text)
		if err == nil && (u.BlobBytes < 0 || u.BlobGets < 0) {
			t.Fatalf("negative counters %+v from %q", u, text)
		}
	})
}

func TestBytesOf(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 27718: "27.1 KiB", 50 << 20: "50.0 MiB"} {
		if got := bytesOf(n); got != want {
			t.Errorf("bytesOf(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFinalLine(t *testing.T) {
	t.Parallel()
	out := "seed job 5f0c: 10.213.0.2:5000/bench:seeded\nseeded 1 images, 6 blobs, 50.0 MiB in 11.2s (job 5f0c)\n\n"
	if got := finalLine(out); got != "seeded 1 images, 6 blobs, 50.0 MiB in 11.2s (job 5f0c)" {
		t.Fatalf("final line %q", got)
	}
	if got := finalLine(""); got != "" {
		t.Fatalf("final line of nothing %q", got)
	}
}

// seededReport is sampleReport with a SEED=1 run: the rollout after the
// seed takes half the cold one's time and no blob from the origin.
func seededReport() *Report {
	rep := sampleReport()
	rep.P2P.OriginBlobs = &Upstream{BlobBytes: 100 << 20, BlobGets: 4}
	rep.Seed = &SeedReport{Image: "10.213.0.2:5000/bench:seeded", Seconds: 12.3, OriginEgressBytes: 101 << 20,
		Upstream: &Upstream{BlobBytes: 100 << 20, BlobGets: 3}, Summary: "seeded 1 images, 3 blobs, 100.0 MiB in 12.3s (job 1)"}
	rep.Seeded = &RunReport{
		Name:              "p2p-seeded",
		Hosts:             []HostResult{{Host: "h001", Seconds: 6}, {Host: "h002", Seconds: 5.5}, {Host: "h003", Seconds: 6.5}, {Host: "h004", Seconds: 6.5}},
		OriginEgressBytes: 20 << 10,
		OriginBlobs:       &Upstream{},
		Agents:            []AgentResult{{Host: "h001", Received: Received{Peer: 70 << 20, Seeder: 30 << 20}}},
	}
	rep.finish()
	return rep
}

func TestReportSeeded(t *testing.T) {
	t.Parallel()
	rep := seededReport()
	if v := rep.SeededVsCold; v == nil || v.P50 != 0.5 || v.Max != 0.5 {
		t.Fatalf("seeded vs cold %+v, want p50 0.5 (6/12) and max 0.5 (6.5/13)", v)
	}
	if rep.Seeded.Times == nil || rep.Seeded.Times.P50.Seconds != 6 || rep.Seeded.OriginEgressCopies != 0 {
		t.Fatalf("seeded summary %+v, %v copies", rep.Seeded.Times, rep.Seeded.OriginEgressCopies)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"origin blobs", "p2p-seeded", "4/4", "0 B in 0 GETs", "20.0 KiB (0.00 copies)", "100.0 MiB in 4 GETs",
		"shoal seed --wait: 12.30 s, origin egress 101.0 MiB (seeded 1 images, 3 blobs",
		"after seed vs cold: p50 0.50x, max 0.50x; origin blob bytes during the rollout 0 B vs 100.0 MiB",
		"p2p-seeded: agents received 100.0 MiB: peers 70.0 MiB (70.0%), seeder 30.0 MiB (30.0%), origin 0.0 MiB (0.0%)"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	// The runs in the order they ran: cold, seeded, baseline.
	var rows []string
	for _, line := range strings.Split(table.String(), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.Contains(f[1], "/") {
			rows = append(rows, f[0])
		}
	}
	if strings.Join(rows, " ") != "p2p p2p-seeded baseline" {
		t.Errorf("rows %q, want p2p p2p-seeded baseline:\n%s", rows, table.String())
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Seeded == nil || back.Seed == nil || back.SeededVsCold == nil || back.Seeded.OriginBlobs == nil ||
		*back.SeededVsCold != *rep.SeededVsCold || back.Seed.Seconds != 12.3 || back.P2P.OriginBlobs.BlobBytes != 100<<20 {
		t.Fatalf("JSON round trip lost the seeded run:\n%s", js.String())
	}
	for _, key := range []string{`"p2p_seeded"`, `"seed"`, `"seeded_vs_cold"`, `"origin_blobs"`, `"blob_bytes": 0`} {
		if !strings.Contains(js.String(), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
	var svg bytes.Buffer
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(svg.String(), "<polyline"); n != 7 {
		t.Fatalf("%d polylines, want 3 CDFs and 4 byte series", n)
	}
	if !strings.Contains(svg.String(), "p2p-seeded") {
		t.Error("the chart's legend lacks the seeded run")
	}
}

func TestReportWithoutSeed(t *testing.T) {
	t.Parallel()
	rep := sampleReport()
	var table, js bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if rep.SeededVsCold != nil || strings.Contains(table.String(), "seed --wait") || strings.Contains(table.String(), "after seed") ||
		strings.Contains(js.String(), `"seed":`) || strings.Contains(js.String(), "p2p_seeded") || strings.Contains(js.String(), "seeded_vs_cold") {
		t.Fatalf("a run without SEED=1 reports a seed:\n%s\n%s", table.String(), js.String())
	}
	// A seeded run where every pull failed has no ratio.
	rep.Seeded = &RunReport{Name: "p2p-seeded", Hosts: []HostResult{{Host: "h001", Err: "x"}}}
	rep.finish()
	if rep.SeededVsCold != nil {
		t.Fatalf("ratio %+v without a seeded completion", rep.SeededVsCold)
	}
}
