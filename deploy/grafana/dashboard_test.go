package grafana

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

var shoalBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shoal-grafana-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "grafana:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	shoalBin, err = agenttest.BuildShoal(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "grafana:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// dashboard is the part of Grafana's dashboard model the test reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile("shoal.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("shoal.json: %v", err)
	}
	return d
}

var metricName = regexp.MustCompile(`\bshoal_[a-z0-9_]+`)

// queried returns the metric names the dashboard's panels and variables
// query, each with where it is used.
func (d dashboard) queried() map[string]string {
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				out[m] = fmt.Sprintf("panel %q", p.Title)
			}
		}
	}
	for _, v := range d.Templating.List {
		q, _ := json.Marshal(v.Query)
		for _, m := range metricName.FindAllString(string(q), -1) {
			out[m] = fmt.Sprintf("variable %q", v.Name)
		}
	}
	return out
}

// TestDashboardShape: panels have unique IDs, fit the 24-column grid, say
// what they show, and query something.
func TestDashboardShape(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q, uid %q", d.Title, d.UID)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v outside the grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Description == "" || len(p.Targets) == 0 {
			t.Errorf("panel %q: description %q, %d targets; want both", p.Title, p.Description, len(p.Targets))
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] || !metricName.MatchString(tg.Expr) {
				t.Errorf("panel %q: target %s %q: refId repeated or no shoal_ metric", p.Title, tg.RefID, tg.Expr)
			}
			refs[tg.RefID] = true
		}
	}
	for _, want := range []string{"shoal_swarm_received_bytes_total", "shoal_upstream_bytes_total", "shoal_p2p_upload_bytes_total", "shoal_p2p_download_bytes_total", "shoal_store_size_bytes", "shoal_swarm_pieces_total"} {
		if _, ok := d.queried()[want]; !ok {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// TestDashboardMetricsExist runs a tracker and two agents, pulls an image
// through each, and checks that every metric the dashboard queries is
// served by one of them, and that every shoal_* metric served has Help
// that says what it means.
func TestDashboardMetricsExist(t *testing.T) {
	t.Parallel()
	origin := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(origin.Close)
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 2, LayerSize: 2 << 20, Seed: 16})
	originHost := strings.TrimPrefix(origin.URL, "http://")
	agenttest.Push(t, img, originHost+"/dash/app:v1", nil)

	const token = "grafana-test-token"
	tracker := agenttest.StartShoal(t, shoalBin, "tracker", "--token", token, "--upstream", origin.URL)
	var agents []*agenttest.Shoal
	for range 2 {
		a := agenttest.StartShoal(t, shoalBin, "agent", "--upstream", origin.URL, "--tracker", tracker.URL, "--tracker-token", token,
			"--store-capacity", "1000000000")
		agents = append(agents, a)
		ref, err := name.ParseReference(a.Addr+"/dash/app:v1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		pulled, err := remote.Image(ref, remote.WithContext(t.Context()))
		if err != nil {
			t.Fatalf("pull through %s: %v", a.Addr, err)
		}
		layers, err := pulled.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				t.Fatalf("layer through %s: %v", a.Addr, err)
			}
		}
	}

	served := map[string]family{}
	for _, s := range append([]*agenttest.Shoal{tracker}, agents...) {
		for n, f := range scrape(t, s.URL+"/metrics") {
			served[n] = f
		}
	}
	for m, where := range loadDashboard(t).queried() {
		if _, ok := served[m]; ok {
			continue
		}
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
		if f, ok := served[base]; ok && (f.typ == "histogram" || f.typ == "summary") {
			continue
		}
		t.Errorf("%s queries %s, which neither the tracker nor the agents serve", where, m)
	}
	var names []string
	for n, f := range served {
		if !strings.HasPrefix(n, "shoal_") {
			continue
		}
		names = append(names, n)
		if problem := vagueHelp(f.help); problem != "" {
			t.Errorf("%s: Help %q %s", n, f.help, problem)
		}
	}
	slices.Sort(names)
	t.Logf("%d shoal_* metrics served: %s", len(names), strings.Join(names, " "))
}

// TestEveryMetricHasHelp reads every metric the module declares (Name and
// Help in one Opts literal) and checks its Help, including the metrics a
// short run does not show (labelled ones with no value yet).
func TestEveryMetricHasHelp(t *testing.T) {
	t.Parallel()
	decl := regexp.MustCompile(`Name:\s*"(shoal_[a-z0-9_]+)",\s*Help:\s*"((?:[^"\\]|\\.)*)"`)
	named := regexp.MustCompile(`Name:\s*"(shoal_[a-z0-9_]+)"`)
	found := 0
	err := filepath.WalkDir("../..", func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			// Nested modules (deploy/kubernetes) and hidden directories
			// are not this module's code.
			if path != "../.." && (strings.HasPrefix(de.Name(), ".") || fileExists(filepath.Join(path, "go.mod"))) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		withHelp := map[string]bool{}
		for _, m := range decl.FindAllStringSubmatch(string(src), -1) {
			found++
			withHelp[m[1]] = true
			if problem := vagueHelp(m[2]); problem != "" {
				t.Errorf("%s: %s: Help %q %s", path, m[1], m[2], problem)
			}
		}
		for _, m := range named.FindAllStringSubmatch(string(src), -1) {
			if !withHelp[m[1]] {
				t.Errorf("%s: %s has no Help right after its Name", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 20 {
		t.Errorf("found %d metric declarations: the pattern no longer matches the code", found)
	}
}

// vagueHelp says what is wrong with a Help text, or "".
func vagueHelp(help string) string {
	switch {
	case strings.TrimSpace(help) == "":
		return "is empty"
	case len(strings.Fields(help)) < 5:
		return "is too short to say what the metric counts (five words at least)"
	case !strings.HasSuffix(strings.TrimSpace(help), "."):
		return "is not a sentence (no final period)"
	}
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

type family struct {
	typ, help string
}

// scrape reads the metric families of a Prometheus text exposition.
func scrape(t *testing.T, url string) map[string]family {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	out := map[string]family{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			n, help, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			f := out[n]
			f.help = strings.ReplaceAll(help, `\\`, `\`)
			out[n] = f
		case strings.HasPrefix(line, "# TYPE "):
			n, typ, _ := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
			f := out[n]
			f.typ = typ
			out[n] = f
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
