package testbed

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"math"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	vals := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		p    float64
		want float64
	}{{0, 1}, {10, 1}, {50, 5}, {51, 6}, {99, 10}, {100, 10}}
	for _, tt := range tests {
		if got := percentile(vals, tt.p); got != tt.want {
			t.Errorf("p%v = %v, want %v", tt.p, got, tt.want)
		}
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile of nothing is a number")
	}
}

func sampleReport() *Report {
	rep := &Report{
		Hosts: 4, ImageBytes: 100 << 20, Layers: 2,
		HostRate: 10 * MBps, HostUpload: 10 * MBps, OriginRate: 10 * MBps, TrackerRate: 10 * MBps,
		LimitSeconds: 10.49, BaselineExpectedSeconds: 41.9,
		P2P: &RunReport{
			Name: "p2p",
			Hosts: []HostResult{
				{Host: "h001", Seconds: 12, ClientCPUSeconds: 1.5}, {Host: "h002", Seconds: 11, ClientCPUSeconds: 1.25},
				{Host: "h003", Seconds: 13}, {Host: "h004", Seconds: 5, Err: "crane: connection refused\nmore"},
			},
			OriginEgressBytes: 110 << 20,
			MachineCPUSeconds: 20, MachineCPUBusy: 0.77,
			Agents: []AgentResult{
				{Host: "h001", Received: Received{Peer: 60 << 20, Seeder: 40 << 20}, ProcStats: ProcStats{PeakRSSBytes: 50e6, CPUSeconds: 2}},
				{Host: "h004", Received: Received{Origin: 1 << 20}, Err: "agent gone"},
			},
			Series: []Point{{Seconds: 0}, {Seconds: 6, Received: Received{Peer: 60 << 20}, OriginTx: 50 << 20}, {Seconds: 13, Received: Received{Peer: 200 << 20, Seeder: 100 << 20}, OriginTx: 110 << 20}},
		},
		Baseline: &RunReport{
			Name:              "baseline",
			Hosts:             []HostResult{{Host: "h001", Seconds: 30}, {Host: "h002", Seconds: 40}, {Host: "h003", Seconds: 41}, {Host: "h004", Seconds: 42}},
			OriginEgressBytes: 400 << 20,
		},
	}
	rep.finish()
	return rep
}

func TestReportSummary(t *testing.T) {
	t.Parallel()
	rep := sampleReport()
	p := rep.P2P
	if p.Failed != 1 || p.Times == nil || p.Times.Min.Seconds != 11 || p.Times.Max.Seconds != 13 || p.Times.P50.Seconds != 12 {
		t.Fatalf("p2p summary %+v %+v", p.Failed, p.Times)
	}
	if p.Times.Max.Ratio != round2(13/10.49) {
		t.Fatalf("ratio %v", p.Times.Max.Ratio)
	}
	if p.OriginEgressCopies != 1.1 || rep.Baseline.OriginEgressCopies != 4 {
		t.Fatalf("copies %v %v", p.OriginEgressCopies, rep.Baseline.OriginEgressCopies)
	}
	// The dead agent's counters count; its missing /proc stats do not.
	if p.Received.Origin != 1<<20 || p.AgentPeakRSS.Max != 50e6 || p.AgentCPU.Min != 2 {
		t.Fatalf("agents %+v %+v %+v", p.Received, p.AgentPeakRSS, p.AgentCPU)
	}
	if p.ClientCPUSeconds != 2.75 {
		t.Fatalf("client CPU %v, want 2.75", p.ClientCPUSeconds)
	}
	allFailed := &RunReport{Hosts: []HostResult{{Host: "h", Err: "x"}}}
	allFailed.summarize(1, 1)
	if allFailed.Times != nil || allFailed.Failed != 1 {
		t.Fatalf("all failed: %+v", allFailed)
	}
}

func TestReportOutputs(t *testing.T) {
	t.Parallel()
	rep := sampleReport()
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"p2p", "baseline", "3/4", "4/4", "S/B = 10.49 s", "h004 failed", "1.10 copies",
		"p2p CPU: machine 20.0 s (77% busy), of which clients 2.8 s, agents 2.0 s"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.P2P.Times.P99 != rep.P2P.Times.P99 {
		t.Fatalf("JSON round trip: %v", err)
	}
	var svg bytes.Buffer
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, and nothing that would fetch from elsewhere.
	dec := xml.NewDecoder(&svg)
	polylines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 6 {
		t.Fatalf("%d polylines, want 2 CDFs and 4 byte series", polylines)
	}
	if strings.Contains(svg.String(), "@import") || strings.Contains(svg.String(), "href") {
		t.Fatal("SVG references something outside itself")
	}
}

func TestNiceStep(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ span, want float64 }{{1, 0.2}, {10.5, 2}, {210, 50}, {0, 1}, {math.Inf(1), 1}, {math.NaN(), 1}} {
		if got := niceStep(tt.span); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("niceStep(%v) = %v, want %v", tt.span, got, tt.want)
		}
	}
}

// TestDownloadUse: each host's received bytes by the last sample before
// its pull ended, over what its cap allowed in that time; failed hosts and
// samples without links count for nothing.
func TestDownloadUse(t *testing.T) {
	t.Parallel()
	series := []Point{
		{Seconds: 1, Links: []LinkBytes{{Rx: 50}, {Rx: 100}, {Rx: 10}}},
		{Seconds: 2, Links: []LinkBytes{{Rx: 100}, {Rx: 200}, {Rx: 20}}},
		{Seconds: 3, Links: []LinkBytes{{Rx: 200}, {Rx: 200}, {Rx: 30}}},
	}
	hosts := []HostResult{{Seconds: 2.5}, {Seconds: 2}, {Seconds: 3, Err: "pull failed"}}
	got := downloadUse(series, hosts, 100)
	if got == nil || got.Min != 0.5 || got.Max != 1 {
		t.Fatalf("use %+v, want min 0.5 (host 0: 100 B by 2 s at 100 B/s), max 1 (host 1: 200 B by 2 s)", got)
	}
	if downloadUse([]Point{{Seconds: 1}}, hosts, 100) != nil {
		t.Error("samples without links give a use")
	}
}

// TestOriginDone: the last sample in which the origin sent more than 1%
// of its cap, and what of every agent's copy the agents lacked then; none
// while the origin is still sending at the end.
func TestOriginDone(t *testing.T) {
	t.Parallel()
	series := []Point{
		{Seconds: 0},
		{Seconds: 1, OriginTx: 100, Received: Received{Seeder: 50}},
		{Seconds: 2, OriginTx: 200, Received: Received{Seeder: 120, Peer: 30}},
		{Seconds: 3, OriginTx: 200, Received: Received{Seeder: 150, Peer: 200}},
		{Seconds: 4, OriginTx: 200, Received: Received{Seeder: 150, Peer: 400}},
	}
	got := originDone(series, 100, 400)
	if got == nil || got.Seconds != 2 || got.LackingBytes != 250 {
		t.Fatalf("originDone = %+v, want at 2 s with 250 B lacking", got)
	}
	if got := originDone(series[:3], 100, 400); got != nil {
		t.Errorf("origin still sending at the last sample: %+v, want nil", got)
	}
}

// TestSeederUse: the seeder's share of its cap counts until its link went
// idle for good, not over the whole run.
func TestSeederUse(t *testing.T) {
	t.Parallel()
	series := []Point{
		{Seconds: 0},
		{Seconds: 1, SeederTx: 80},
		{Seconds: 2, SeederTx: 150},
		{Seconds: 3, SeederTx: 150},
	}
	if got := seederUse(series, 100); got == nil || got.Seconds != 2 || got.Use != 0.75 {
		t.Fatalf("seederUse = %+v, want idle at 2 s after 75%% of its cap", got)
	}
	if got := seederUse(series[:1], 100); got != nil {
		t.Errorf("a seeder that never sent: %+v, want nil", got)
	}
}
