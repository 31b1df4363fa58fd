package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/tracker"
)

// reporter is the agent's status reporter over the node's parts; tc is the
// tracker's client (nil without one), probed on each report.
func (n *node) reporter(cfg nodeConfig, tc agent.Pinger, trackerURL string) *agent.Reporter {
	parts := agent.StatusParts{Peer: n.peerID(), Capacity: cfg.Store.Capacity, TrackerURL: trackerURL}
	if n.host != nil {
		parts.Host = n.host
	}
	if tc != nil {
		parts.Tracker = tc
	}
	return agent.NewReporter(n.agent, parts)
}

// withStatus adds GET /v1/status to an agent's handler.
func withStatus(h, status http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.Handle("GET /v1/status", status)
	return mux
}

// defaultAgentURL is where `shoal status` looks without --agent or --tracker.
const defaultAgentURL = "http://127.0.0.1:5050"

// maxAgentStatus bounds an agent's status answer.
const maxAgentStatus = 8 << 20

type statusFlags struct {
	agent, tracker string
	ca, tokenFile  string
	json           bool
	timeout        time.Duration
}

func newStatusCmd() *cobra.Command {
	var f statusFlags
	cmd := &cobra.Command{
		Use:   "status [--agent URL | --tracker URL]",
		Short: "Show what an agent (default " + defaultAgentURL + ") or the tracker is doing",
		Long: `Show an agent's store, downloads, bytes by source, peers, rates and whether
its tracker answers; or, with --tracker, the tracker's swarms, seed jobs and
live peers. Both come from GET /v1/status; the tracker's needs the cluster
token (--token-file).`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&f.agent, "agent", "", "agent URL (default "+defaultAgentURL+")")
	fs.StringVar(&f.tracker, "tracker", "", "tracker URL, e.g. https://tracker:7070")
	fs.StringVar(&f.ca, "tracker-ca", "", "PEM file of the CA certificates the tracker's TLS certificate is checked against (default: the system roots)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the cluster token (its first token), for --tracker")
	fs.BoolVar(&f.json, "json", false, "print the JSON status as it came")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "bound on the whole request")
	cmd.MarkFlagsMutuallyExclusive("agent", "tracker")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
		defer cancel()
		out := cmd.OutOrStdout()
		if f.tracker != "" {
			st, err := f.trackerStatus(ctx)
			if err != nil {
				return oneLine(err)
			}
			if f.json {
				return printJSON(out, st)
			}
			printTrackerStatus(out, f.tracker, st)
			return nil
		}
		base := f.agent
		if base == "" {
			base = defaultAgentURL
		}
		st, err := agentStatus(ctx, base)
		if err != nil {
			return oneLine(err)
		}
		if f.json {
			return printJSON(out, st)
		}
		printAgentStatus(out, base, st)
		return nil
	}
	return cmd
}

func (f statusFlags) trackerStatus(ctx context.Context) (*tracker.Status, error) {
	if f.tokenFile == "" {
		return nil, errors.New("--tracker needs the cluster token: --token-file")
	}
	toks, err := readTokens(f.tokenFile)
	if err != nil {
		return nil, err
	}
	tp := http.DefaultTransport.(*http.Transport).Clone()
	defer tp.CloseIdleConnections()
	if f.ca != "" {
		pool, err := readCA(f.ca)
		if err != nil {
			return nil, err
		}
		tp.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c, err := tracker.NewClient(f.tracker, toks[0], tracker.WithHTTPClient(&http.Client{Transport: tp}))
	if err != nil {
		return nil, err
	}
	st, err := c.Status(ctx)
	switch {
	case errors.Is(err, tracker.ErrUnauthorized):
		return nil, fmt.Errorf("tracker %s refused the token of %s", f.tracker, f.tokenFile)
	case err != nil:
		return nil, fmt.Errorf("tracker %s: %w", f.tracker, err)
	}
	return st, nil
}

// agentStatus asks the agent at base for GET /v1/status.
func agentStatus(ctx context.Context, base string) (*agent.Status, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("agent URL %q: want http(s)://host:port", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	tp := http.DefaultTransport.(*http.Transport).Clone()
	defer tp.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tp}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent %s not reachable: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAgentStatus+1))
	if err != nil {
		return nil, fmt.Errorf("agent %s: reading the status: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent %s answered HTTP %d to GET /v1/status: %.200s", base, resp.StatusCode, body)
	}
	if len(body) > maxAgentStatus {
		return nil, fmt.Errorf("agent %s: status larger than %d bytes", base, maxAgentStatus)
	}
	var st agent.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("agent %s: not a status answer: %w", base, err)
	}
	return &st, nil
}

// oneLine keeps an error on one line, as a CLI error should be.
func oneLine(err error) error {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	return errors.New(msg)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printAgentStatus(w io.Writer, base string, st *agent.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "agent\t%s\n", base)
	if st.Peer != "" {
		fmt.Fprintf(tw, "peer\t%s\n", st.Peer)
	}
	store := fmt.Sprintf("%s used, %d blobs, no capacity limit", size(st.Store.UsedBytes), st.Store.Blobs)
	if c := st.Store.CapacityBytes; c > 0 {
		store = fmt.Sprintf("%s of %s (%d%%), %d blobs", size(st.Store.UsedBytes), size(c), st.Store.UsedBytes*100/c, st.Store.Blobs)
	}
	fmt.Fprintf(tw, "store\t%s\n", store)
	r := st.Received
	fmt.Fprintf(tw, "received\tpeers %s, seeder %s, origin %s\n", size(r.Peers), size(r.Seeder), size(r.Origin))
	fmt.Fprintf(tw, "uploaded\t%s to peers\n", size(st.Uploaded))
	fmt.Fprintf(tw, "peers\t%d connected\n", st.Peers)
	if st.Rates.WindowSeconds > 0 {
		fmt.Fprintf(tw, "rates\tup %s/s, down %s/s (last %.0fs)\n", size(int64(st.Rates.UploadBytesPerSecond)), size(int64(st.Rates.DownloadBytesPerSecond)), st.Rates.WindowSeconds)
	} else {
		fmt.Fprintf(tw, "rates\tnot measured yet\n")
	}
	switch t := st.Tracker; {
	case t == nil:
		fmt.Fprintf(tw, "tracker\tnone: every blob comes from the upstream\n")
	case t.Reachable:
		fmt.Fprintf(tw, "tracker\t%s answers\n", t.URL)
	default:
		fmt.Fprintf(tw, "tracker\t%s NOT ANSWERING: %s\n", t.URL, t.Error)
	}
	tw.Flush()
	fmt.Fprintf(w, "\ndownloads in flight: %d\n", len(st.Downloads))
	if len(st.Downloads) == 0 {
		return
	}
	fmt.Fprintln(tw, "DIGEST\tSIZE\tPROGRESS\tPIECES\tPEERS")
	for _, d := range st.Downloads {
		fmt.Fprintf(tw, "%s\t%s\t%d%%\t%d/%d\t%d\n", d.Digest, size(d.SizeBytes), pct(d.Have, d.Pieces), d.Have, d.Pieces, d.Peers)
	}
}

func printTrackerStatus(w io.Writer, base string, st *tracker.Status) {
	seeding := 0
	for _, sw := range st.Swarms {
		if sw.Seeding {
			seeding++
		}
	}
	fmt.Fprintf(w, "tracker %s at %s: %d peers alive, %d swarms, %d seeding from the origin\n",
		base, st.Time.Format(time.RFC3339), len(st.Agents), len(st.Swarms)+st.SwarmsOmitted, seeding)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nswarms")
	fmt.Fprintln(tw, "DIGEST\tSIZE\tHOLDERS\tCOMPLETE\tROLLOUT\tSEEDING")
	for _, sw := range st.Swarms {
		sz := "?"
		if sw.SizeBytes > 0 {
			sz = size(sw.SizeBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d%%\t%s\n", sw.Digest, sz, sw.Holders, sw.Complete, pct(sw.Complete, sw.Holders), yesNo(sw.Seeding))
	}
	tw.Flush()
	if st.SwarmsOmitted > 0 {
		fmt.Fprintf(w, "and %d more swarms\n", st.SwarmsOmitted)
	}
	if len(st.SeedJobs) > 0 {
		fmt.Fprintln(w, "\nseed jobs")
		fmt.Fprintln(tw, "JOB\tIMAGE\tSTATE\tBLOBS\tERROR")
		for _, j := range st.SeedJobs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", j.ID, j.Image, j.State, j.BlobsDone, j.BlobsTotal, j.Error)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\npeers alive")
	fmt.Fprintln(tw, "PEER\tROLE\tBLOBS\tCOMPLETE\tLAST ANNOUNCE")
	for _, a := range st.Agents {
		role := "agent"
		if a.Seeder {
			role = "seeder"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1fs ago\n", a.ID, role, a.Blobs, a.Complete, a.AgeSeconds)
	}
	tw.Flush()
}

// size writes n bytes in binary units.
func size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return mib(n)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func pct(part, whole int) int {
	if whole <= 0 {
		return 0
	}
	return part * 100 / whole
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// opsHandler serves what an operator's tools read, without the registry:
// /metrics, the probes and GET /v1/status.
func opsHandler(agentHandler http.Handler, reg *prometheus.Registry, status http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/healthz", agentHandler)
	mux.Handle("/readyz", agentHandler)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("GET /v1/status", status)
	return mux
}

// serveOps serves h on addr until ctx ends, beside the main listener.
func serveOps(ctx context.Context, addr string, h http.Handler, grace time.Duration, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics-listen: %w", err)
	}
	log.Info("serving metrics and status", "addr", ln.Addr().String())
	go func() {
		if err := serve(ctx, ln, h, grace, func() {}, log); err != nil {
			log.Error("metrics listener failed", "err", err)
		}
	}()
	return nil
}
