package testbed

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// FaultReport is the suite's outcome, one result per fault.
type FaultReport struct {
	Started      time.Time      `json:"started"`
	Hosts        int            `json:"hosts"`
	ImageBytes   int64          `json:"image_bytes"`
	Layers       int            `json:"layers"`
	HostRate     int64          `json:"host_bytes_per_second"`
	OriginRate   int64          `json:"origin_bytes_per_second"`
	TrackerRate  int64          `json:"tracker_bytes_per_second"`
	LimitSeconds float64        `json:"limit_seconds"`
	Results      []*FaultResult `json:"results"`
}

// NewFaultReport describes the suite's setting; add results as they come.
func NewFaultReport(cfg Config, img Image, layers int) *FaultReport {
	return &FaultReport{
		Started:      time.Now().UTC(),
		Hosts:        cfg.Hosts,
		ImageBytes:   img.Size(),
		Layers:       layers,
		HostRate:     cfg.HostDownload,
		OriginRate:   cfg.OriginRate,
		TrackerRate:  cfg.TrackerRate,
		LimitSeconds: round2(float64(img.Size()) / float64(cfg.HostDownload)),
	}
}

// FaultResult is one fault's rollout.
type FaultResult struct {
	Fault Fault `json:"fault"`
	// Injected says what was done to whom; InjectedSeconds is when, from
	// the common start of the pulls (0 for a fault present from the
	// start, -1 if its trigger never came).
	Injected        string  `json:"injected"`
	InjectedSeconds float64 `json:"injected_seconds"`
	// Touched are the hosts the fault acted on; MayFail those of them whose
	// pulls are allowed to fail.
	Touched []string     `json:"touched,omitempty"`
	MayFail []string     `json:"may_fail,omitempty"`
	Hosts   []HostResult `json:"hosts"`
	// Required is how many hosts must finish (all but MayFail), Completed
	// how many of them did with the right bytes.
	Required  int `json:"required"`
	Completed int `json:"completed"`
	// P50 and Max are over the required hosts that completed; MaxUntouched
	// over the completed hosts the fault did not act on.
	P50          float64 `json:"p50_seconds"`
	Max          float64 `json:"max_seconds"`
	MaxUntouched float64 `json:"max_untouched_seconds"`
	// OriginEgressBytes is what the origin's link sent during the rollout;
	// OriginEgressCopies that over the image size.
	OriginEgressBytes  int64   `json:"origin_egress_bytes"`
	OriginEgressCopies float64 `json:"origin_egress_copies"`
	// Received sums what the agents got from each source.
	Received Received `json:"received"`
	// StoreBlobs is how many stored blobs (every agent's and the seeder's)
	// were hashed and matched their names.
	StoreBlobs int `json:"store_blobs_verified"`
	// Notes are measured facts; Problems are broken expectations.
	Notes    []string `json:"notes,omitempty"`
	Problems []string `json:"problems,omitempty"`
	// WallSeconds is the whole scenario: bed, pushes, rollout, checks.
	WallSeconds float64 `json:"wall_seconds"`

	mu sync.Mutex // guards Notes and Problems: pulls' hooks add to them too
}

func (r *FaultResult) notef(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *FaultResult) problemf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// WriteJSON writes the report, indented.
func (r *FaultReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// result finds the fault's result, nil if it did not run.
func (r *FaultReport) result(f Fault) *FaultResult {
	for _, res := range r.Results {
		if res.Fault == f {
			return res
		}
	}
	return nil
}

// WriteTable writes the fault table: per fault when it struck, how many
// hosts that had to finish did, their completion times (p50, max, and max
// over the hosts the fault left alone, as a ratio to the undisturbed run's
// max if it ran), the origin's copies of the image and where the agents'
// bytes came from; then each fault's notes and problems.
func (r *FaultReport) WriteTable(w io.Writer) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Shoal fault suite: %d hosts, %s image in %d layers; hosts %s, origin %s, tracker %s; S/B = %.2f s\n\n",
		r.Hosts, mib(r.ImageBytes), r.Layers, mbps(r.HostRate), mbps(r.OriginRate), mbps(r.TrackerRate), r.LimitSeconds)
	var ref float64
	if none := r.result(FaultNone); none != nil {
		ref = none.Max
	}
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault\tat\tdone\tp50\tmax\tmax untouched\tvs none\torigin copies\tpeers/seeder/origin MiB\tcheck\t")
	for _, res := range r.Results {
		at := "-"
		switch {
		case res.Fault == FaultNone:
		case res.InjectedSeconds == 0:
			at = "start"
		case res.InjectedSeconds > 0:
			at = fmt.Sprintf("%.1f s", res.InjectedSeconds)
		default:
			at = "never"
		}
		ratio := "-"
		if ref > 0 && res.Max > 0 {
			ratio = fmt.Sprintf("%.2fx", res.Max/ref)
		}
		verdict := "ok"
		if len(res.Problems) > 0 {
			verdict = fmt.Sprintf("%d problems", len(res.Problems))
		}
		rc := res.Received
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%.2f s\t%.2f s\t%.2f s\t%s\t%.2f\t%.0f/%.0f/%.0f\t%s\t\n",
			res.Fault, at, res.Completed, res.Required, res.P50, res.Max, res.MaxUntouched, ratio, res.OriginEgressCopies,
			float64(rc.Peer)/(1<<20), float64(rc.Seeder)/(1<<20), float64(rc.Origin)/(1<<20), verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range r.Results {
		fmt.Fprintf(&sb, "\n%s: %s", res.Fault, orDash(res.Injected))
		if len(res.MayFail) > 0 {
			fmt.Fprintf(&sb, "; may fail: %s", strings.Join(res.MayFail, " "))
		}
		fmt.Fprintf(&sb, "; %d stored blobs verified; %.0f s in all\n", res.StoreBlobs, res.WallSeconds)
		for _, n := range res.Notes {
			fmt.Fprintf(&sb, "  - %s\n", n)
		}
		for _, p := range res.Problems {
			fmt.Fprintf(&sb, "  ! %s\n", firstLine(p))
		}
	}
	_, err := io.WriteString(w, sb.String())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "undisturbed"
	}
	return s
}
