package testbed

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseReceived(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		text    string
		want    Received
		wantErr bool
	}{
		{name: "empty", text: "", want: Received{}},
		{
			name: "all sources",
			text: "# HELP shoal_swarm_received_bytes_total Bytes.\n# TYPE shoal_swarm_received_bytes_total counter\n" +
				"shoal_swarm_received_bytes_total{source=\"origin\"} 10\n" +
				"shoal_swarm_received_bytes_total{source=\"peer\"} 2.097152e+06\n" +
				"shoal_swarm_received_bytes_total{source=\"seeder\"} 4096 1700000000000\n" +
				"shoal_swarm_received_bytes_total_other{source=\"peer\"} 99\n" +
				"process_resident_memory_bytes 1.2e+07\n",
			want: Received{Peer: 2097152, Seeder: 4096, Origin: 10},
		},
		{name: "other labels", text: `shoal_swarm_received_bytes_total{kind="x",source="peer"} 7`, want: Received{Peer: 7}},
		{name: "unknown source", text: `shoal_swarm_received_bytes_total{source="moon"} 7`, want: Received{}},
		{name: "bad value", text: `shoal_swarm_received_bytes_total{source="peer"} lots`, wantErr: true},
		{name: "negative", text: `shoal_swarm_received_bytes_total{source="peer"} -1`, wantErr: true},
		{name: "nan", text: `shoal_swarm_received_bytes_total{source="peer"} NaN`, wantErr: true},
		{name: "unterminated", text: `shoal_swarm_received_bytes_total{source="peer" 1`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseReceived(tt.text)
			if tt.wantErr {
				if !errors.Is(err, ErrParse) {
					t.Fatalf("err %v, want ErrParse", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseReceived(f *testing.F) {
	f.Add("shoal_swarm_received_bytes_total{source=\"peer\"} 1\n")
	f.Add("shoal_swarm_received_bytes_total{source=\"seeder\",x=\"}\"} 1e300\n")
	f.Add("shoal_swarm_received_bytes_total{")
	f.Fuzz(func(t *testing.T, text string) {
		r, err := parseReceived(text)
		if err == nil && (r.Peer < 0 || r.Seeder < 0 || r.Origin < 0) {
			t.Fatalf("negative counters %+v from %q", r, text)
		}
	})
}

func TestParseProc(t *testing.T) {
	t.Parallel()
	status := "Name:\tshoal\nVmPeak:\t 900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n"
	if got, err := parseVmHWM(status); err != nil || got != 51200<<10 {
		t.Fatalf("VmHWM %d, %v", got, err)
	}
	for _, bad := range []string{"", "VmHWM: lots kB\n", "VmHWM: 12 MB\n"} {
		if _, err := parseVmHWM(bad); !errors.Is(err, ErrParse) {
			t.Errorf("VmHWM of %q: err %v, want ErrParse", bad, err)
		}
	}
	// The command name holds a space and a parenthesis, as a hostile
	// process may choose.
	stat := "4242 (sh (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0"
	if got, err := parseCPU(stat); err != nil || got != 3.0 {
		t.Fatalf("cpu %v, %v; want 3.0", got, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 x y 0"} {
		if _, err := parseCPU(bad); !errors.Is(err, ErrParse) {
			t.Errorf("cpu of %q: err %v, want ErrParse", bad, err)
		}
	}
	netdev := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0: 5000000    4000    0    0    0     0          0         0 209715200  150000    0    0    0     0       0          0
`
	if got, err := parseNetDev(netdev, "eth0"); err != nil || got != (LinkBytes{Rx: 5000000, Tx: 209715200}) {
		t.Fatalf("eth0 %+v, %v", got, err)
	}
	if _, err := parseNetDev(netdev, "eth1"); !errors.Is(err, ErrParse) {
		t.Fatalf("missing device: err %v", err)
	}
	if _, err := parseNetDev("eth0: 1 2 3\n", "eth0"); !errors.Is(err, ErrParse) {
		t.Fatalf("short line: err %v", err)
	}
	if _, err := parseNetDev("eth0: x 2 3 4 5 6 7 8 9\n", "eth0"); !errors.Is(err, ErrParse) {
		t.Fatalf("bad rx: err %v", err)
	}
}

func FuzzParseProc(f *testing.F) {
	f.Add("4242 (sh) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0")
	f.Add("VmHWM:\t 12 kB\n")
	f.Add("  eth0: 1 2 3 4 5 6 7 8 9 10\n")
	f.Fuzz(func(t *testing.T, text string) {
		if v, err := parseCPU(text); err == nil && v < 0 {
			t.Fatalf("negative cpu %v", v)
		}
		if v, err := parseVmHWM(text); err == nil && v < 0 {
			t.Fatalf("negative rss %v", v)
		}
		if v, err := parseNetDev(text, "eth0"); err == nil && (v.Rx < 0 || v.Tx < 0) {
			t.Fatalf("negative link bytes %+v", v)
		}
	})
}

func TestParseCPUTimes(t *testing.T) {
	t.Parallel()
	a, err := parseCPUTimes("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5\n")
	if err != nil || a.total != 1000 || a.idle != 850 {
		t.Fatalf("%+v, %v", a, err)
	}
	b := cpuTimes{total: 2000, idle: 1350}
	if got := busy(a, b); got != 0.5 {
		t.Fatalf("busy %v, want 0.5", got)
	}
	if busy(b, a) != 0 {
		t.Fatal("busy with time going backwards")
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2 x 4 5 6"} {
		if _, err := parseCPUTimes(bad); !errors.Is(err, ErrParse) {
			t.Errorf("%q: err %v, want ErrParse", bad, err)
		}
	}
}

func TestParseMAC(t *testing.T) {
	t.Parallel()
	got, err := parseMAC([]byte(`[{"ifindex":2,"link_index":14,"ifname":"eth0","address":"9a:7c:65:7b:0b:15","broadcast":"ff:ff:ff:ff:ff:ff"}]` + "\n"))
	if err != nil || got != "9a:7c:65:7b:0b:15" {
		t.Fatalf("parseMAC = %q, %v", got, err)
	}
	for _, bad := range []string{"", "[]", `[{"ifname":"eth0"}]`, "not json", `[{"address":"a"},{"address":"b"}]`} {
		if _, err := parseMAC([]byte(bad)); err == nil {
			t.Errorf("parseMAC(%q) succeeded", bad)
		}
	}
}

func TestNeighborBatch(t *testing.T) {
	t.Parallel()
	hosts := []Host{
		{Name: "origin", IP: netip.MustParseAddr("10.213.0.2")},
		{Name: "h001", IP: netip.MustParseAddr("10.213.1.1")},
		{Name: "h002", IP: netip.MustParseAddr("10.213.1.2")},
	}
	macs := map[string]string{"origin": "02:00:00:00:00:01", "h001": "02:00:00:00:00:02", "h002": "02:00:00:00:00:03"}
	want := "neigh replace 10.213.0.2 lladdr 02:00:00:00:00:01 dev eth0 nud permanent\n" +
		"neigh replace 10.213.1.2 lladdr 02:00:00:00:00:03 dev eth0 nud permanent\n"
	if got := neighborBatch(hosts[1], hosts, macs); got != want {
		t.Errorf("neighborBatch(h001) =\n%s\nwant\n%s", got, want)
	}
}
