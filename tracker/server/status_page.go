package server

import (
	"fmt"
	"html/template"
	"io"

	"github.com/shoal-dev/shoal/tracker"
)

// statusRefresh is how often the status page reloads itself, in seconds.
const statusRefresh = 5

// statusTemplate is the status page: plain HTML tables, no script, a meta
// refresh. Every value is escaped by html/template.
var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes":   formatBytes,
	"percent": percent,
	"short":   shortDigest,
	"seconds": func(f float64) string { return fmt.Sprintf("%.1fs", f) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>Shoal tracker</title>
<style>
body { font: 14px/1.4 sans-serif; margin: 1.5em; color: #1d2733; background: #fff; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
p.meta { color: #556; margin: 0 0 1em; }
table { border-collapse: collapse; min-width: 40em; }
th, td { border: 1px solid #c6cdd6; padding: .3em .7em; text-align: left; }
th { background: #2b5f8a; color: #fff; }
tr:nth-child(even) td { background: #eef3f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 13px monospace; }
.bar { display: inline-block; width: 8em; height: .8em; background: #dde3ea; vertical-align: middle; }
.bar span { display: block; height: 100%; background: #2e9b5f; }
.yes { color: #b35c00; font-weight: bold; }
</style>
</head>
<body>
<h1>Shoal tracker</h1>
<p class="meta">{{len .S.Agents}} peers alive · {{len .S.Swarms}} swarms · {{.Seeding}} seeding from the origin · at {{.S.Time.Format "2006-01-02 15:04:05 MST"}} · refreshes every {{.Refresh}}s</p>
<h2>Swarms</h2>
<table id="swarms">
<tr><th>digest</th><th>size</th><th>holders</th><th>complete</th><th>rollout</th><th>seeding</th></tr>
{{- range .S.Swarms}}
<tr><td><code title="{{.Digest}}">{{short .Digest}}</code></td><td class="num">{{if .SizeBytes}}{{bytes .SizeBytes}}{{else}}?{{end}}</td><td class="num">{{.Holders}}</td><td class="num">{{.Complete}}</td><td><span class="bar"><span style="width: {{percent .Complete .Holders}}%"></span></span> {{percent .Complete .Holders}}%</td><td>{{if .Seeding}}<span class="yes">seeding</span>{{else}}no{{end}}</td></tr>
{{- else}}
<tr><td colspan="6">no swarms: no live peer holds a blob</td></tr>
{{- end}}
</table>
{{- if .S.SwarmsOmitted}}<p>and {{.S.SwarmsOmitted}} more swarms not listed</p>{{end}}
{{- if .S.SeedJobs}}
<h2>Seed jobs</h2>
<table id="seedjobs">
<tr><th>job</th><th>image</th><th>state</th><th>blobs</th><th>error</th></tr>
{{- range .S.SeedJobs}}
<tr><td><code>{{.ID}}</code></td><td>{{.Image}}</td><td>{{.State}}</td><td class="num">{{.BlobsDone}} / {{.BlobsTotal}}</td><td>{{.Error}}</td></tr>
{{- end}}
</table>
{{- end}}
<h2>Peers alive</h2>
<table id="agents">
<tr><th>peer</th><th>role</th><th>blobs</th><th>complete</th><th>last announce</th></tr>
{{- range .S.Agents}}
<tr><td><code>{{.ID}}</code></td><td>{{if .Seeder}}seeder{{else}}agent{{end}}</td><td class="num">{{.Blobs}}</td><td class="num">{{.Complete}}</td><td class="num">{{seconds .AgeSeconds}} ago</td></tr>
{{- else}}
<tr><td colspan="5">no peer has announced within the peer TTL</td></tr>
{{- end}}
</table>
</body>
</html>
`))

func renderStatus(w io.Writer, st tracker.Status) error {
	seeding := 0
	for _, sw := range st.Swarms {
		if sw.Seeding {
			seeding++
		}
	}
	return statusTemplate.Execute(w, struct {
		S       tracker.Status
		Refresh int
		Seeding int
	}{st, statusRefresh, seeding})
}

// formatBytes writes n in binary units: 512 B, 1.5 KiB, 80.0 MiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func percent(part, whole int) int {
	if whole <= 0 {
		return 0
	}
	return part * 100 / whole
}

// shortDigest is the algorithm and the first 12 hex digits.
func shortDigest(d fmt.Stringer) string {
	s := d.String()
	if i := len("sha256:") + 12; len(s) > i {
		return s[:i]
	}
	return s
}
