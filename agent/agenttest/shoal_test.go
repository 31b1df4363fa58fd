package agenttest

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

const sampleMetrics = `# HELP shoal_swarm_received_bytes_total Blob bytes received, by source.
# TYPE shoal_swarm_received_bytes_total counter
shoal_swarm_received_bytes_total{source="origin"} 10
shoal_swarm_received_bytes_total{source="peer"} 2.5e+06
shoal_swarm_received_bytes_total{source="seeder"} 7
shoal_agent_blob_lookups_total{result="hit"} 3
shoal_agent_blob_lookups_total{result="miss"} 4
shoal_agent_tracker_unavailable_total 1
`

func TestSumMetric(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{"one series", "shoal_swarm_received_bytes_total", []string{"source=peer"}, 2.5e6},
		{"all series", "shoal_swarm_received_bytes_total", nil, 2.5e6 + 17},
		{"no labels", "shoal_agent_tracker_unavailable_total", nil, 1},
		{"label not matching", "shoal_agent_blob_lookups_total", []string{"result=stale"}, 0},
		{"absent metric", "shoal_nothing_total", nil, 0},
		{"name prefix is not a match", "shoal_agent_blob_lookups", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := sumMetric(strings.NewReader(sampleMetrics), tc.metric, tc.labels)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("sum %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSumMetricBadInput(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"shoal_x_total", "shoal_x_total{a=\"b\"} notanumber"} {
		if _, err := sumMetric(strings.NewReader(in), "shoal_x_total", nil); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func FuzzSumMetric(f *testing.F) {
	f.Add(sampleMetrics, "shoal_swarm_received_bytes_total", "source=peer")
	f.Add("a{b=\"c\",d=\"e\"} 1\n", "a", "d=e")
	f.Fuzz(func(t *testing.T, in, name, label string) {
		_, _ = sumMetric(strings.NewReader(in), name, []string{label})
	})
}

const sampleStatus = `Name:	shoal
VmPeak:	 1300000 kB
VmHWM:	   51200 kB
VmRSS:	   20480 kB
Threads:	9
`

func TestParseStatus(t *testing.T) {
	t.Parallel()
	m, err := parseStatus(strings.NewReader(sampleStatus))
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS != 20<<20 || m.Peak != 50<<20 {
		t.Fatalf("got %+v, want RSS 20 MiB and peak 50 MiB", m)
	}
	for _, bad := range []string{"Name: kthreadd\n", "VmRSS: 12 MB\nVmHWM: 1 kB\n", "VmRSS: x kB\nVmHWM: 1 kB\n"} {
		if _, err := parseStatus(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestProcessMemorySelf(t *testing.T) {
	t.Parallel()
	m, err := ProcessMemory(os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if m.RSS <= 0 || m.Peak < m.RSS {
		t.Fatalf("implausible %+v", m)
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add(sampleStatus)
	f.Fuzz(func(t *testing.T, in string) {
		_, _ = parseStatus(strings.NewReader(in))
	})
}

func TestFlagValue(t *testing.T) {
	t.Parallel()
	args := []string{"agent", "--listen", "127.0.0.1:1", "--data-dir=/d", "--tracker"}
	for _, tc := range []struct {
		name, want string
		ok         bool
	}{
		{"listen", "127.0.0.1:1", true},
		{"data-dir", "/d", true},
		{"tracker", "", false}, // no value follows
		{"upstream", "", false},
		{"listen-addr", "", false},
	} {
		got, ok := flagValue(args, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("flagValue(%q) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestCountingProxyRate checks a capped proxy delivers everything intact,
// records Range headers, and that close frees a transfer parked in the
// limiter. It asserts no timing.
func TestCountingProxyRate(t *testing.T) {
	t.Parallel()
	payload := bytes.Repeat([]byte("shoal"), 40_000) // 200 kB: several chunks
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(payload)
	}))
	defer backend.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := newCountingProxy(ln, strings.TrimPrefix(backend.URL, "http://"))
	p.setRate(16 << 20)
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "http://" + ln.Addr().String() + "/v2/app/blobs/sha256:aa"

	get := func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Range", "bytes=5-")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		return io.ReadAll(resp.Body)
	}
	got, err := get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("got %d bytes through a capped proxy, want %d intact", len(got), len(payload))
	}
	if reqs := p.snapshot(); len(reqs) != 1 || reqs[0].Range != "bytes=5-" {
		t.Fatalf("requests %+v, want one with Range bytes=5-", reqs)
	}

	// At 1 kB/s the transfer parks in the limiter; close must free it.
	p.setRate(1000)
	errc := make(chan error, 1)
	go func() {
		_, err := get(context.Background())
		errc <- err
	}()
	for p.sent.Load() == 0 { // wait until the response has started
		select {
		case err := <-errc:
			t.Fatalf("a 200 kB transfer at 1 kB/s ended at once: %v", err)
		default:
		}
		time.Sleep(time.Millisecond)
	}
	if err := p.close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil {
		t.Fatal("a transfer cut by close reported success")
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	line := "4242 (shoal (x) y) S 1 4242 4242 0 -1 4194560 2417 0 0 0 150 25 0 0 20 0 9 0 123 456 789\n"
	got, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if got != 1750*time.Millisecond {
		t.Fatalf("cpu %v, want 1.75s", got)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 -1 0"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if cpu, err := ProcessCPU(os.Getpid()); err == nil && cpu < 0 {
		t.Fatalf("own cpu %v", cpu)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add("1 (shoal) S 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 1 1")
	f.Fuzz(func(t *testing.T, in string) {
		if d, err := parseStat(in); err == nil && d < 0 {
			t.Fatalf("negative cpu %v", d)
		}
	})
}
