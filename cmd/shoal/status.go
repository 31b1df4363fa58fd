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
	"sync"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/shoal-dev/shoal/agent"
	"github.com/shoal-dev/shoal/tracker"
)

// reporter is the agent's status reporter over the node's parts; tc is the
// tracker's client (nil without one), probed on each report; a replica set
// is shown replica by replica.
func (n *node) reporter(cfg nodeConfig, tc agent.Pinger, trackerURL string) *agent.Reporter {
	parts := agent.StatusParts{Peer: n.peerID(), Zone: cfg.Zone, Capacity: cfg.Store.Capacity, TrackerURL: trackerURL}
	if n.host != nil {
		parts.Host = n.host
	}
	if tc != nil {
		parts.Tracker = tc
	}
	if reps, ok := tc.(*tracker.Replicas); ok {
		parts.Replicas = replicaViewer{reps}
	}
	return agent.NewReporter(n.agent, parts)
}

// replicaViewer shows a tracker.Replicas in an agent's status.
type replicaViewer struct{ r *tracker.Replicas }

func (v replicaViewer) ReplicaStatus(ctx context.Context, held []digest.Digest) []agent.ReplicaStatus {
	keys := make([]string, len(held))
	for i, d := range held {
		keys[i] = d.String()
	}
	views := v.r.View(ctx, keys)
	out := make([]agent.ReplicaStatus, len(views))
	for i, rv := range views {
		out[i] = agent.ReplicaStatus{Name: rv.Name, Answers: rv.Err == nil, PassedOver: rv.PassedOver, OwnedBlobs: rv.Owned}
		if rv.Err != nil {
			out[i].Error = rv.Err.Error()
		}
		if !rv.DownSince.IsZero() {
			t := rv.DownSince.UTC()
			out[i].DownSince = &t
		}
	}
	return out
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
		Use:   "status [--agent URL | --tracker URL[,URL...]]",
		Short: "Show what an agent (default " + defaultAgentURL + ") or the tracker is doing",
		Long: `Show an agent's store, downloads, bytes by source, peers, rates and whether
its tracker answers (each replica of several: whether it answers, whether
the agent passes it over and since when, how many of the node's blobs it
owns); or, with --tracker, the tracker's swarms, seed jobs and live peers,
replica by replica for several URLs or a dns+https://NAME:PORT. Both come
from GET /v1/status; the tracker's needs the cluster token (--token-file).`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	fs.StringVar(&f.agent, "agent", "", "agent URL (default "+defaultAgentURL+")")
	fs.StringVar(&f.tracker, "tracker", "", "tracker URL, e.g. https://tracker:7070; several comma-separated, or dns+https://NAME:PORT for every replica NAME resolves to")
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
			reports, err := f.trackerStatuses(ctx, net.DefaultResolver.LookupHost)
			if err != nil {
				return oneLine(err)
			}
			if len(reports) == 1 {
				if f.json {
					return printJSON(out, reports[0].Status)
				}
				printTrackerStatus(out, f.tracker, reports[0].Status)
				return nil
			}
			if f.json {
				return printJSON(out, reports)
			}
			for i, r := range reports {
				if i > 0 {
					fmt.Fprintln(out)
				}
				if r.Status == nil {
					fmt.Fprintf(out, "tracker replica %s NOT ANSWERING: %s\n", r.Replica, r.Error)
					continue
				}
				printTrackerStatus(out, "replica "+r.Replica, r.Status)
			}
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

// replicaReport is one tracker replica's status page, or why there is none.
type replicaReport struct {
	Replica string          `json:"replica"`
	Status  *tracker.Status `json:"status,omitempty"`
	Error   string          `json:"error,omitempty"`
}

// trackerStatuses asks --tracker for its status: one tracker's, or each
// replica's of several URLs (comma-separated) or of a dns+ name (resolved
// with lookup), each replica with its own status. It fails when no
// replica answers.
func (f statusFlags) trackerStatuses(ctx context.Context, lookup tracker.Lookup) ([]replicaReport, error) {
	urls := tracker.SplitURLs([]string{f.tracker})
	if len(urls) == 1 && !strings.HasPrefix(urls[0], tracker.DNSScheme) {
		st, err := f.trackerStatus(ctx)
		if err != nil {
			return nil, err
		}
		return []replicaReport{{Replica: urls[0], Status: st}}, nil
	}
	token, opts, err := f.trackerAccess()
	if err != nil {
		return nil, err
	}
	eps, err := tracker.Endpoints(ctx, urls, token, lookup, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracker %s: %w", f.tracker, err)
	}
	reports := make([]replicaReport, len(eps))
	var wg sync.WaitGroup
	for i, ep := range eps {
		wg.Go(func() {
			reports[i].Replica = ep.Name
			c, ok := ep.Member.(*tracker.Client)
			if !ok {
				reports[i].Error = "not a tracker client"
				return
			}
			st, err := c.Status(ctx)
			if errors.Is(err, tracker.ErrUnauthorized) {
				err = fmt.Errorf("refused the token of %s", f.tokenFile)
			}
			if err != nil {
				reports[i].Error = strings.Join(strings.Fields(err.Error()), " ")
				return
			}
			reports[i].Status = st
		})
	}
	wg.Wait()
	var errs []string
	for _, r := range reports {
		if r.Status != nil {
			return reports, nil
		}
		errs = append(errs, r.Replica+": "+r.Error)
	}
	return nil, fmt.Errorf("tracker %s: no replica answers: %s", f.tracker, strings.Join(errs, "; "))
}

// trackerAccess is the token and the client options of --token-file and
// --tracker-ca.
func (f statusFlags) trackerAccess() (string, []tracker.Option, error) {
	if f.tokenFile == "" {
		return "", nil, errors.New("--tracker needs the cluster token: --token-file")
	}
	toks, err := readTokens(f.tokenFile)
	if err != nil {
		return "", nil, err
	}
	var opts []tracker.Option
	if f.ca != "" {
		pool, err := readCA(f.ca)
		if err != nil {
			return "", nil, err
		}
		tp := http.DefaultTransport.(*http.Transport).Clone()
		tp.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		opts = append(opts, tracker.WithHTTPClient(&http.Client{Transport: tp}))
	}
	return toks[0], opts, nil
}

func (f statusFlags) trackerStatus(ctx context.Context) (*tracker.Status, error) {
	token, opts, err := f.trackerAccess()
	if err != nil {
		return nil, err
	}
	c, err := tracker.NewClient(f.tracker, token, opts...)
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
	if st.Zone != "" {
		fmt.Fprintf(tw, "zone\t%s\n", st.Zone)
	} else {
		fmt.Fprintf(tw, "zone\tnone: peers of every zone are alike\n")
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
	case len(t.Replicas) > 0:
		answering := 0
		for _, r := range t.Replicas {
			if r.Answers {
				answering++
			}
		}
		fmt.Fprintf(tw, "tracker\t%s: %d of %d replicas answer\n", t.URL, answering, len(t.Replicas))
	case t.Reachable:
		fmt.Fprintf(tw, "tracker\t%s answers\n", t.URL)
	default:
		fmt.Fprintf(tw, "tracker\t%s NOT ANSWERING: %s\n", t.URL, t.Error)
	}
	tw.Flush()
	if st.Tracker != nil && len(st.Tracker.Replicas) > 0 {
		printReplicas(w, st.Time, st.Tracker.Replicas)
	}
	fmt.Fprintf(w, "\ndownloads in flight: %d\n", len(st.Downloads))
	if len(st.Downloads) == 0 {
		return
	}
	fmt.Fprintln(tw, "DIGEST\tSIZE\tPROGRESS\tPIECES\tPEERS")
	for _, d := range st.Downloads {
		fmt.Fprintf(tw, "%s\t%s\t%d%%\t%d/%d\t%d\n", d.Digest, size(d.SizeBytes), pct(d.Have, d.Pieces), d.Have, d.Pieces, d.Peers)
	}
}

// printReplicas writes the tracker replicas of an agent's status at now:
// whether each answers its probe, whether the agent passes it over and
// since when, and how many of the node's blobs it owns.
func printReplicas(w io.Writer, now time.Time, reps []agent.ReplicaStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(w, "\ntracker replicas")
	fmt.Fprintln(tw, "REPLICA\tPROBE\tREQUESTS\tBLOBS OWNED\tERROR")
	for _, r := range reps {
		probe := "answers"
		if !r.Answers {
			probe = "NOT ANSWERING"
		}
		reqs := "sent to it"
		if r.DownSince != nil {
			since := fmt.Sprintf("since %s (%s ago)", r.DownSince.Format(time.TimeOnly), now.Sub(*r.DownSince).Round(time.Second))
			if r.PassedOver {
				reqs = "PASSED OVER " + since
			} else {
				reqs = "tried again, silent " + since
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.Name, probe, reqs, r.OwnedBlobs, strings.Join(strings.Fields(r.Error), " "))
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
