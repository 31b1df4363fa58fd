package testbed

import (
	"fmt"
	"html"
	"io"
	"math"
	"slices"
	"strings"
)

// Chart geometry: two panels side by side.
const (
	chartW, chartH     = 1100, 440
	panelW, panelH     = 430, 320
	panelTop           = 60
	panelLeft1         = 80
	panelLeft2         = 620
	chartFont          = `font-family="sans-serif" font-size="12"`
	colorP2P           = "#1f77b4"
	colorBaseline      = "#d62728"
	colorSeeded        = "#17becf"
	colorPeer          = "#2ca02c"
	colorSeeder        = "#ff7f0e"
	colorOrigin        = "#9467bd"
	colorOriginEgress  = "#7f7f7f"
	colorLimit         = "#444444"
	chartStrokeWidth   = "2"
	chartMaxTickLabels = 6
)

// WriteSVG draws the completion-time CDFs of both runs and the bytes the
// agents received by source over time during the P2P run. It is plain SVG
// with a generic font family, so it renders anywhere without fetching
// anything.
func (r *Report) WriteSVG(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>`+"\n", chartW, chartH, chartW, chartH, chartFont)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	title := fmt.Sprintf("Shoal rollout: %d hosts, %s in %d layers, hosts %s, origin %s", r.Hosts, mib(r.ImageBytes), r.Layers, mbps(r.HostRate), mbps(r.OriginRate))
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", panelLeft1, html.EscapeString(title))
	r.cdfPanel(&b)
	r.bytesPanel(&b)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) cdfPanel(b *strings.Builder) {
	xmax := r.LimitSeconds
	for _, rr := range r.runs() {
		if rr.Times != nil {
			xmax = max(xmax, rr.Times.Max.Seconds)
		}
	}
	ax := newAxes(panelLeft1, xmax, 1, "completion time (s)", "fraction of hosts done")
	ax.draw(b, "Completion time CDF", func(v float64) string { return trimFloat(v) })
	// The limit S/B: no host can finish left of it.
	x := ax.x(r.LimitSeconds)
	fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="4 3"/>`+"\n", x, panelTop, x, panelTop+panelH, colorLimit)
	fmt.Fprintf(b, `<text x="%.1f" y="%d" fill="%s">S/B</text>`+"\n", x+3, panelTop+12, colorLimit)
	var legend []legendItem
	for _, run := range []struct {
		rr    *RunReport
		color string
	}{{r.P2P, colorP2P}, {r.Seeded, colorSeeded}, {r.Baseline, colorBaseline}} {
		if run.rr == nil {
			continue
		}
		var secs []float64
		for _, h := range run.rr.Hosts {
			if h.Err == "" {
				secs = append(secs, h.Seconds)
			}
		}
		slices.Sort(secs)
		n := float64(len(run.rr.Hosts))
		// A step for each host: the curve reaches 1 only if every host
		// succeeded.
		pts := [][2]float64{{0, 0}}
		for i, s := range secs {
			pts = append(pts, [2]float64{s, float64(i) / n}, [2]float64{s, float64(i+1) / n})
		}
		ax.polyline(b, pts, run.color)
		legend = append(legend, legendItem{run.rr.Name, run.color})
	}
	ax.legend(b, legend)
}

func (r *Report) bytesPanel(b *strings.Builder) {
	if r.P2P == nil || len(r.P2P.Series) == 0 {
		return
	}
	series := r.P2P.Series
	last := series[len(series)-1]
	ymax := float64(max(last.Received.Peer, last.Received.Seeder, last.Received.Origin, last.OriginTx)) / (1 << 20)
	ax := newAxes(panelLeft2, last.Seconds, max(ymax, 1), "time since the pulls started (s)", "MiB (cumulative)")
	ax.draw(b, "P2P run: bytes received by source, origin egress", func(v float64) string { return trimFloat(v) })
	lines := []struct {
		name  string
		color string
		get   func(Point) int64
	}{
		{"from peers", colorPeer, func(p Point) int64 { return p.Received.Peer }},
		{"from seeder", colorSeeder, func(p Point) int64 { return p.Received.Seeder }},
		{"from origin", colorOrigin, func(p Point) int64 { return p.Received.Origin }},
		{"origin egress", colorOriginEgress, func(p Point) int64 { return p.OriginTx }},
	}
	var legend []legendItem
	for _, l := range lines {
		pts := make([][2]float64, 0, len(series))
		for _, p := range series {
			pts = append(pts, [2]float64{p.Seconds, float64(l.get(p)) / (1 << 20)})
		}
		ax.polyline(b, pts, l.color)
		legend = append(legend, legendItem{l.name, l.color})
	}
	ax.legend(b, legend)
}

type legendItem struct{ name, color string }

// axes maps data to one panel.
type axes struct {
	left         int
	xmax, ymax   float64
	xstep, ystep float64
	xlabel       string
	ylabel       string
}

func newAxes(left int, xmax, ymax float64, xlabel, ylabel string) axes {
	xstep, ystep := niceStep(xmax), niceStep(ymax)
	// Round the ends up to a tick so the last tick sits on the frame.
	return axes{
		left: left, xlabel: xlabel, ylabel: ylabel,
		xmax: math.Ceil(max(xmax, 1e-9)/xstep) * xstep, xstep: xstep,
		ymax: math.Ceil(max(ymax, 1e-9)/ystep) * ystep, ystep: ystep,
	}
}

func (a axes) x(v float64) float64 { return float64(a.left) + v/a.xmax*panelW }
func (a axes) y(v float64) float64 { return float64(panelTop+panelH) - v/a.ymax*panelH }

func (a axes) draw(b *strings.Builder, title string, label func(float64) string) {
	fmt.Fprintf(b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", a.left, panelTop-10, html.EscapeString(title))
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#000"/>`+"\n", a.left, panelTop, panelW, panelH)
	for v := 0.0; v <= a.xmax+a.xstep/2; v += a.xstep {
		x := a.x(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`, x, panelTop, x, panelTop+panelH)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, panelTop+panelH+16, label(v))
	}
	for v := 0.0; v <= a.ymax+a.ystep/2; v += a.ystep {
		y := a.y(v)
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`, a.left, y, a.left+panelW, y)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", a.left-6, y+4, label(v))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", a.left+panelW/2, panelTop+panelH+36, html.EscapeString(a.xlabel))
	fmt.Fprintf(b, `<text transform="translate(%d %d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", a.left-50, panelTop+panelH/2, html.EscapeString(a.ylabel))
}

func (a axes) polyline(b *strings.Builder, pts [][2]float64, color string) {
	var sb strings.Builder
	for i, p := range pts {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "%.1f,%.1f", a.x(p[0]), a.y(p[1]))
	}
	fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="%s" points="%s"/>`+"\n", color, chartStrokeWidth, sb.String())
}

func (a axes) legend(b *strings.Builder, items []legendItem) {
	for i, it := range items {
		y := panelTop + panelH + 58
		x := a.left + i*(panelW/max(len(items), 1))
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`, x, y-4, x+18, y-4, it.color)
		fmt.Fprintf(b, `<text x="%d" y="%d">%s</text>`+"\n", x+22, y, html.EscapeString(it.name))
	}
}

// niceStep picks a tick step of 1, 2 or 5 times a power of ten that cuts
// span into at most chartMaxTickLabels intervals.
func niceStep(span float64) float64 {
	if !(span > 0) || math.IsInf(span, 0) {
		return 1
	}
	raw := span / chartMaxTickLabels
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*pow >= raw {
			return m * pow
		}
	}
	return 10 * pow
}

func trimFloat(v float64) string {
	if math.Abs(v-math.Round(v)) < 1e-9 {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}
