package testbed

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of Run, written as JSON, a table and a chart.
type Report struct {
	Started time.Time `json:"started"`
	Hosts   int       `json:"hosts"`
	// ImageBytes is S: manifest, config and layers.
	ImageBytes int64 `json:"image_bytes"`
	Layers     int   `json:"layers"`
	// HostRate is B, each host's download cap, in bytes/s.
	HostRate    int64 `json:"host_download_bytes_per_second"`
	HostUpload  int64 `json:"host_upload_bytes_per_second"`
	OriginRate  int64 `json:"origin_bytes_per_second"`
	TrackerRate int64 `json:"tracker_bytes_per_second"`
	// LimitSeconds is S ÷ B, the fastest any host can get the image.
	LimitSeconds float64 `json:"limit_seconds"`
	// BaselineExpectedSeconds is N × S ÷ B_origin, what the last host
	// waits when the origin sends every copy.
	BaselineExpectedSeconds float64    `json:"baseline_expected_seconds"`
	SampleMillis            int64      `json:"sample_interval_ms"`
	P2P                     *RunReport `json:"p2p"`
	// Seed and Seeded are the SEED=1 run: shoal seed --wait on a fresh
	// swarm, then the same rollout of that image; SeededVsCold compares it
	// with P2P, the cold rollout.
	Seed         *SeedReport `json:"seed,omitempty"`
	Seeded       *RunReport  `json:"p2p_seeded,omitempty"`
	SeededVsCold *Versus     `json:"seeded_vs_cold,omitempty"`
	Baseline     *RunReport  `json:"baseline,omitempty"`
}

// SeedReport is one `shoal seed IMAGE --wait`, timed from its start to its
// exit.
type SeedReport struct {
	Image   string  `json:"image"`
	Seconds float64 `json:"seconds"`
	// OriginEgressBytes is what the origin's interface sent meanwhile.
	OriginEgressBytes int64 `json:"origin_egress_bytes"`
	// Upstream is what the seeder (and agents) took from the origin by
	// the seed's end, from their counters.
	Upstream *Upstream `json:"upstream,omitempty"`
	// Summary is shoal seed's last line.
	Summary string `json:"summary"`
}

// Versus is a rollout's completion times over another's (seeded over cold).
type Versus struct {
	P50 float64 `json:"p50_ratio"`
	Max float64 `json:"max_ratio"`
}

// RunReport is one rollout: through the swarm, or the baseline.
type RunReport struct {
	Name   string       `json:"name"`
	Hosts  []HostResult `json:"hosts"`
	Failed int          `json:"failed"`
	// Times are over the hosts whose pull succeeded; absent if none did.
	Times *Times `json:"completion,omitempty"`
	// OriginEgressBytes is what the origin's interface sent during the
	// rollout; OriginEgressCopies is that over the image size.
	OriginEgressBytes  int64   `json:"origin_egress_bytes"`
	OriginEgressCopies float64 `json:"origin_egress_copies"`
	// OriginBlobs is what the swarm (agents and seeder) took from the
	// origin during the rollout, from their upstream counters: blob bytes
	// and GETs; absent for the baseline and when an agent did not answer.
	OriginBlobs *Upstream `json:"origin_blobs,omitempty"`
	// Received sums what the agents got from each source (P2P only).
	Received *Received     `json:"received,omitempty"`
	Agents   []AgentResult `json:"agents,omitempty"`
	// AgentPeakRSS and AgentCPU summarize Agents.
	AgentPeakRSS *Spread `json:"agent_peak_rss_bytes,omitempty"`
	AgentCPU     *Spread `json:"agent_cpu_seconds,omitempty"`
	// DownloadUse is, over the hosts whose pull succeeded, what each
	// host's link received (headers included) until its pull ended, over
	// what its cap allows in that time (Series' Links).
	DownloadUse *Spread `json:"download_use,omitempty"`
	// OriginDone is when the origin's link went idle for good, so the
	// seeder held the whole image, and what the agents still lacked then:
	// the rollout's tail is the time they took to share that.
	OriginDone *OriginDone `json:"origin_done,omitempty"`
	// SeederUse is what the seeder's link sent (headers included) until
	// it went idle for good, over what its cap allows in that time: every
	// new piece enters the swarm through it, so below 1 it, not the
	// agents' links, held the rollout back.
	SeederUse *LinkUse   `json:"seeder_use,omitempty"`
	Tracker   *ProcStats `json:"tracker,omitempty"`
	// MachineCPUBusy is the fraction of the whole machine's CPU time in use
	// during the rollout (every process and the kernel's networking, the
	// shaping included); near 1 the cores, not the links, set the pace.
	MachineCPUBusy float64 `json:"machine_cpu_busy"`
	// MachineCPUSeconds is the CPU time the machine used in all, and
	// ClientCPUSeconds what the hosts' clients (crane) used of it.
	MachineCPUSeconds float64 `json:"machine_cpu_seconds"`
	ClientCPUSeconds  float64 `json:"client_cpu_seconds"`
	// Series is sampled during the rollout: cumulative bytes received by
	// source over all agents, and the origin's egress.
	Series []Point `json:"series"`
}

// HostResult is one host's pull, timed from the common start.
type HostResult struct {
	Host    string  `json:"host"`
	Seconds float64 `json:"seconds"`
	// ClientCPUSeconds is the CPU time of the host's client (crane).
	ClientCPUSeconds float64 `json:"client_cpu_seconds"`
	Err              string  `json:"error,omitempty"`
}

// AgentResult is one agent's share and cost.
type AgentResult struct {
	Host     string   `json:"host"`
	Received Received `json:"received"`
	ProcStats
	Err string `json:"error,omitempty"`
}

// Point is one sample of a rollout.
type Point struct {
	Seconds  float64  `json:"t"`
	Received Received `json:"received"`
	OriginTx int64    `json:"origin_tx"`
	// SeederTx is what the tracker's host, its seeder, sent (headers
	// included); zero in a run without a swarm.
	SeederTx int64 `json:"seeder_tx,omitempty"`
	// Links is what each host's link (index as hosts) carried since the
	// rollout started, headers included: a host whose link idles while
	// others run shows here. Zero for a host whose agent is gone.
	Links []LinkBytes `json:"links,omitempty"`
}

// LinkBytes is what a link received and sent.
type LinkBytes struct {
	Rx int64 `json:"rx"`
	Tx int64 `json:"tx"`
}

// LinkUse is when a link went idle for good (the last sample in which it
// sent more than 1% of its cap) and the share of its cap it sent until
// then.
type LinkUse struct {
	Seconds float64 `json:"seconds"`
	Use     float64 `json:"use"`
}

// OriginDone is the last sample in which the origin's link sent more than
// 1% of its cap, and the bytes of their copies the agents lacked by then.
type OriginDone struct {
	Seconds      float64 `json:"seconds"`
	LackingBytes int64   `json:"agents_lacking_bytes"`
}

// Times are completion-time statistics, each also as a ratio to S ÷ B.
type Times struct {
	Min Stat `json:"min"`
	P50 Stat `json:"p50"`
	P99 Stat `json:"p99"`
	Max Stat `json:"max"`
}

// Stat is a completion time and its ratio to the physical limit.
type Stat struct {
	Seconds float64 `json:"seconds"`
	Ratio   float64 `json:"ratio_to_limit"`
}

// Spread is min, median and max of one quantity over the agents.
type Spread struct {
	Min float64 `json:"min"`
	P50 float64 `json:"p50"`
	Max float64 `json:"max"`
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// runs are the rollouts that ran, in the order they ran.
func (r *Report) runs() []*RunReport {
	var out []*RunReport
	for _, rr := range []*RunReport{r.P2P, r.Seeded, r.Baseline} {
		if rr != nil {
			out = append(out, rr)
		}
	}
	return out
}

// finish computes every run's summary from its raw results.
func (r *Report) finish() {
	for _, rr := range r.runs() {
		rr.summarize(r.LimitSeconds, r.ImageBytes)
	}
	r.SeededVsCold = nil
	if r.P2P != nil && r.Seeded != nil && r.P2P.Times != nil && r.Seeded.Times != nil &&
		r.P2P.Times.P50.Seconds > 0 && r.P2P.Times.Max.Seconds > 0 {
		r.SeededVsCold = &Versus{
			P50: round2(r.Seeded.Times.P50.Seconds / r.P2P.Times.P50.Seconds),
			Max: round2(r.Seeded.Times.Max.Seconds / r.P2P.Times.Max.Seconds),
		}
	}
}

func (rr *RunReport) summarize(limit float64, imageBytes int64) {
	var secs []float64
	rr.Failed, rr.ClientCPUSeconds = 0, 0
	for _, h := range rr.Hosts {
		rr.ClientCPUSeconds += h.ClientCPUSeconds
		if h.Err != "" {
			rr.Failed++
			continue
		}
		secs = append(secs, h.Seconds)
	}
	slices.Sort(secs)
	if len(secs) > 0 {
		stat := func(v float64) Stat { return Stat{Seconds: round2(v), Ratio: round2(v / limit)} }
		rr.Times = &Times{
			Min: stat(secs[0]),
			P50: stat(percentile(secs, 50)),
			P99: stat(percentile(secs, 99)),
			Max: stat(secs[len(secs)-1]),
		}
	}
	if imageBytes > 0 {
		rr.OriginEgressCopies = round2(float64(rr.OriginEgressBytes) / float64(imageBytes))
	}
	if len(rr.Agents) == 0 {
		return
	}
	var total Received
	var rss, cpu []float64
	for _, a := range rr.Agents {
		total = total.add(a.Received)
		if a.Err == "" {
			rss = append(rss, float64(a.PeakRSSBytes))
			cpu = append(cpu, a.CPUSeconds)
		}
	}
	rr.Received = &total
	rr.AgentPeakRSS, rr.AgentCPU = spread(rss), spread(cpu)
}

// swarmCPU names the CPU time of the agents and the tracker, if measured.
func (rr *RunReport) swarmCPU() string {
	var agents float64
	for _, a := range rr.Agents {
		agents += a.CPUSeconds
	}
	if len(rr.Agents) == 0 {
		return ""
	}
	s := fmt.Sprintf(", agents %.1f s", agents)
	if rr.Tracker != nil {
		s += fmt.Sprintf(", tracker+seeder %.1f s", rr.Tracker.CPUSeconds)
	}
	return s
}

// downloadUse is, for each host whose pull succeeded, the bytes its link
// received by the last sample before its pull ended over rate times that
// sample's time; nil without samples of the links.
func downloadUse(series []Point, hosts []HostResult, rate float64) *Spread {
	var use []float64
	for i, h := range hosts {
		if h.Err != "" || rate <= 0 {
			continue
		}
		var last *Point
		for j := range series {
			p := &series[j]
			if p.Seconds > h.Seconds || len(p.Links) <= i {
				break
			}
			last = p
		}
		if last != nil && last.Seconds > 0 {
			use = append(use, float64(last.Links[i].Rx)/(rate*last.Seconds))
		}
	}
	return spread(use)
}

// lastBusy is the index of the last sample of series in which the link
// whose sent bytes tx reads (capped at rate) sent more than 1% of its cap
// since the sample before; -1 if none did.
func lastBusy(series []Point, rate float64, tx func(Point) int64) int {
	last := -1
	for i := 1; i < len(series); i++ {
		p, q := series[i-1], series[i]
		if dt := q.Seconds - p.Seconds; dt > 0 && rate > 0 && float64(tx(q)-tx(p)) > 0.01*rate*dt {
			last = i
		}
	}
	return last
}

// originDone finds when the origin's link (capped at rate) went idle for
// good in series and what of want bytes (every agent's copy) the agents
// had not received by then; nil if it never sent or never went idle.
func originDone(series []Point, rate float64, want int64) *OriginDone {
	i := lastBusy(series, rate, func(p Point) int64 { return p.OriginTx })
	if i < 0 || i == len(series)-1 {
		return nil
	}
	q := series[i]
	return &OriginDone{Seconds: q.Seconds, LackingBytes: max(want-q.Received.Total(), 0)}
}

// seederUse finds when the seeder's link (capped at rate) went idle for
// good in series and the share of its cap it sent until then; nil if it
// never sent.
func seederUse(series []Point, rate float64) *LinkUse {
	i := lastBusy(series, rate, func(p Point) int64 { return p.SeederTx })
	if i < 0 {
		return nil
	}
	q := series[i]
	return &LinkUse{Seconds: q.Seconds, Use: round2(float64(q.SeederTx) / (rate * q.Seconds))}
}

func spread(v []float64) *Spread {
	if len(v) == 0 {
		return nil
	}
	slices.Sort(v)
	return &Spread{Min: round2(v[0]), P50: round2(percentile(v, 50)), Max: round2(v[len(v)-1])}
}

// WriteJSON writes the report, indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people.
func (r *Report) WriteTable(w io.Writer) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Shoal swarm rollout: %d hosts, %s image in %d layers; hosts %s down / %s up, origin %s, tracker %s\n",
		r.Hosts, mib(r.ImageBytes), r.Layers, mbps(r.HostRate), mbps(r.HostUpload), mbps(r.OriginRate), mbps(r.TrackerRate))
	fmt.Fprintf(&sb, "physical limit S/B = %.2f s; baseline if the origin sends every copy, N*S/B_origin = %.1f s\n\n",
		r.LimitSeconds, r.BaselineExpectedSeconds)
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tdone\tmin\tp50\tp99\tmax\torigin egress\torigin blobs\tmachine CPU\t")
	for _, rr := range r.runs() {
		row := []string{rr.Name, fmt.Sprintf("%d/%d", len(rr.Hosts)-rr.Failed, len(rr.Hosts))}
		if t := rr.Times; t != nil {
			for _, s := range []Stat{t.Min, t.P50, t.P99, t.Max} {
				row = append(row, fmt.Sprintf("%.2f s (%.2fx)", s.Seconds, s.Ratio))
			}
		} else {
			row = append(row, "-", "-", "-", "-")
		}
		blobs := "-"
		if u := rr.OriginBlobs; u != nil {
			blobs = fmt.Sprintf("%s in %d GETs", bytesOf(u.BlobBytes), u.BlobGets)
		}
		row = append(row, fmt.Sprintf("%s (%.2f copies)", bytesOf(rr.OriginEgressBytes), rr.OriginEgressCopies), blobs, fmt.Sprintf("%.0f%%", 100*rr.MachineCPUBusy))
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if sd := r.Seed; sd != nil {
		fmt.Fprintf(&sb, "\nshoal seed --wait: %.2f s, origin egress %s (%s)\n", sd.Seconds, mib(sd.OriginEgressBytes), sd.Summary)
	}
	if v, c, s := r.SeededVsCold, r.P2P, r.Seeded; v != nil {
		fmt.Fprintf(&sb, "after seed vs cold: p50 %.2fx, max %.2fx", v.P50, v.Max)
		if c.OriginBlobs != nil && s.OriginBlobs != nil {
			fmt.Fprintf(&sb, "; origin blob bytes during the rollout %s vs %s", bytesOf(s.OriginBlobs.BlobBytes), bytesOf(c.OriginBlobs.BlobBytes))
		}
		sb.WriteString("\n")
	}
	if rr := r.P2P; rr != nil && rr.Received != nil {
		t := rr.Received
		fmt.Fprintf(&sb, "\nagents received %s: peers %s (%.1f%%), seeder %s (%.1f%%), origin %s (%.1f%%)\n",
			mib(t.Total()), mib(t.Peer), pct(t.Peer, t.Total()), mib(t.Seeder), pct(t.Seeder, t.Total()), mib(t.Origin), pct(t.Origin, t.Total()))
		if m, c := rr.AgentPeakRSS, rr.AgentCPU; m != nil && c != nil {
			fmt.Fprintf(&sb, "agent peak RSS min/p50/max: %.0f / %.0f / %.0f MB; CPU min/p50/max: %.2f / %.2f / %.2f s\n",
				m.Min/1e6, m.P50/1e6, m.Max/1e6, c.Min, c.P50, c.Max)
		}
		if tr := rr.Tracker; tr != nil {
			fmt.Fprintf(&sb, "tracker+seeder peak RSS %.0f MB, CPU %.2f s\n", float64(tr.PeakRSSBytes)/1e6, tr.CPUSeconds)
		}
		if u := rr.DownloadUse; u != nil {
			fmt.Fprintf(&sb, "host links received, until each pull ended, min/p50/max: %.0f / %.0f / %.0f%% of their cap\n", 100*u.Min, 100*u.P50, 100*u.Max)
		}
		if u := rr.SeederUse; u != nil {
			fmt.Fprintf(&sb, "seeder link sent %.0f%% of its cap until it went idle at %.1f s\n", 100*u.Use, u.Seconds)
		}
		if o, t := rr.OriginDone, rr.Times; o != nil && t != nil && r.HostRate > 0 {
			fmt.Fprintf(&sb, "origin link idle from %.1f s (the seeder held the image); the agents lacked %s then, %.1f s of their links; the last pull ended %.1f s later\n",
				o.Seconds, mib(o.LackingBytes), float64(o.LackingBytes)/float64(r.HostRate)/float64(len(rr.Hosts)), t.Max.Seconds-o.Seconds)
		}
	}
	if rr := r.Seeded; rr != nil && rr.Received != nil {
		t := rr.Received
		fmt.Fprintf(&sb, "%s: agents received %s: peers %s (%.1f%%), seeder %s (%.1f%%), origin %s (%.1f%%)\n", rr.Name,
			mib(t.Total()), mib(t.Peer), pct(t.Peer, t.Total()), mib(t.Seeder), pct(t.Seeder, t.Total()), mib(t.Origin), pct(t.Origin, t.Total()))
	}
	for _, rr := range r.runs() {
		if rr.MachineCPUSeconds > 0 {
			fmt.Fprintf(&sb, "%s CPU: machine %.1f s (%.0f%% busy), of which clients %.1f s%s\n",
				rr.Name, rr.MachineCPUSeconds, 100*rr.MachineCPUBusy, rr.ClientCPUSeconds, rr.swarmCPU())
		}
	}
	for _, rr := range r.runs() {
		for _, h := range rr.Hosts {
			if h.Err != "" {
				fmt.Fprintf(&sb, "%s: %s failed after %.2f s: %s\n", rr.Name, h.Host, h.Seconds, firstLine(h.Err))
			}
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

// bytesOf is n in bytes or KiB when small (the target after a seed is
// 0 B), else in MiB.
func bytesOf(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return mib(n)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func mbps(n int64) string { return fmt.Sprintf("%g MB/s", float64(n)/MBps) }

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
