package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one tool's figures, medians over the runs.
type result struct {
	Tool             string    `json:"tool"`
	Command          string    `json:"command"`
	Runs             []float64 `json:"runs_seconds"`
	Seconds          float64   `json:"median_seconds"`
	MinSeconds       float64   `json:"min_seconds"`      // the least disturbed by other work
	CPU              []float64 `json:"runs_cpu_seconds"` // user + system of the client, plus containerd's
	CPUSeconds       float64   `json:"median_cpu_seconds"`
	CompressedMBps   float64   `json:"compressed_mb_per_s"`
	UnpackedMBps     float64   `json:"unpacked_mb_per_s"`
	PeakRSSMiB       float64   `json:"peak_rss_mib"`        // the client process
	DaemonPeakRSSMiB float64   `json:"daemon_peak_rss_mib"` // containerd, 0 otherwise
	Note             string    `json:"note,omitempty"`
}

type report struct {
	Date            time.Time `json:"date"`
	CPUs            int       `json:"cpus"`
	Kernel          string    `json:"kernel"`
	Layers          int       `json:"layers"`
	CompressedBytes int64     `json:"compressed_bytes"`
	UnpackedBytes   int64     `json:"unpacked_bytes"` // tar streams
	Files           int       `json:"files"`
	LoadAvgBefore   string    `json:"loadavg_before"` // other work on the machine skews the figures
	LoadAvgAfter    string    `json:"loadavg_after"`
	Results         []result  `json:"results"`
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func printTable(w io.Writer, rep report) {
	fmt.Fprintf(w, "\npull and unpack of a %d-layer gzip image (%.1f MB compressed, %.1f MB unpacked, %d files) from docker-registry on loopback, %d CPUs\n\n",
		rep.Layers, float64(rep.CompressedBytes)/1e6, float64(rep.UnpackedBytes)/1e6, rep.Files, rep.CPUs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\ttime (median)\tmin\tvs shoal\tin MB/s\tout MB/s\tCPU\tpeak RSS\tdaemon RSS\t")
	var base float64
	for _, r := range rep.Results {
		if r.Tool == "shoal" {
			base = r.Seconds
		}
	}
	for _, r := range rep.Results {
		if r.Note != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\t\n", r.Tool, r.Note)
			continue
		}
		ratio, daemon := "", ""
		if base > 0 {
			ratio = fmt.Sprintf("%.2f×", r.Seconds/base)
		}
		if r.DaemonPeakRSSMiB > 0 {
			daemon = fmt.Sprintf("%.0f MiB", r.DaemonPeakRSSMiB)
		}
		fmt.Fprintf(tw, "%s\t%.2f s\t%.2f s\t%s\t%.0f\t%.0f\t%.2f s\t%.0f MiB\t%s\t\n", r.Tool, r.Seconds, r.MinSeconds, ratio, r.CompressedMBps, r.UnpackedMBps, r.CPUSeconds, r.PeakRSSMiB, daemon)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nCPU is user+system of the client process, plus containerd's for ctr; load average %s before, %s after\n",
		rep.LoadAvgBefore, rep.LoadAvgAfter)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
