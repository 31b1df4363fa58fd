package trackerload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

var (
	loadRun    = flag.Bool("load", false, "run TestLoad: the load generator with the flags below")
	loadServe  = flag.Bool("load.serve", false, "internal: run TestLoadServe, the tracker under load")
	agents     = flag.Int("load.agents", 10_000, "simulated agents, each with its own key")
	blobsEach  = flag.Int("load.blobs", 20, "blobs each agent announces")
	blobPool   = flag.Int("load.pool", 500, "distinct blobs in the swarm")
	conns      = flag.Int("load.conns", 64, "HTTP connections the agents' announces share")
	duration   = flag.Duration("load.duration", 10*time.Second, "length of the measured run")
	serverCPU  = flag.String("load.server-cpu", "0", "CPU list the tracker is pinned to with taskset (empty: not pinned)")
	cpuProfile = flag.String("load.cpuprofile", "", "write the tracker's CPU profile of the measured run to this file")
	sessions   = flag.Bool("load.sessions", true, "announce with the session MAC the tracker hands out (false: an Ed25519 signature on every announce)")
)

const token = "load-test-token"

// stubSeeder never fetches: announces do not ask the seeder.
type stubSeeder struct{}

func (stubSeeder) Seed(ctx context.Context, _ tracker.Source, _ func(*piece.Info)) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestLoadServe is the tracker under load, started by TestLoad as a child
// process: it prints its address, serves until its stdin closes, and
// answers GET /load/heap with its heap after a forced GC and POST
// /load/profile with a CPU profile that ends when stdin closes.
func TestLoadServe(t *testing.T) {
	if !*loadServe {
		t.Skip("the tracker side of TestLoad (-load.serve)")
	}
	cfg := server.DefaultConfig()
	cfg.Tokens = []string{token}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(stubSeeder{}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	mux := http.NewServeMux()
	mux.Handle("/", srv.Handler())
	mux.HandleFunc("GET /load/heap", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Fprintf(w, "%d\n", m.HeapAlloc)
	})
	var profiling atomic.Bool
	mux.HandleFunc("POST /load/profile", func(w http.ResponseWriter, _ *http.Request) {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		profiling.Store(true)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	fmt.Printf("addr=%s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin) // the parent's end
	if profiling.Load() {
		pprof.StopCPUProfile()
	}
	hs.Close()
}

// agent is one simulated agent: its announce body, and the request that
// sends it, signed in advance (a signature is good for
// tracker.MaxSignatureSkew, longer than a run), or MAC'd with its session.
type agent struct {
	id   string
	body []byte
	req  []byte
}

func request(body []byte, name, value string) []byte {
	var req bytes.Buffer
	fmt.Fprintf(&req, "POST /v1/announce HTTP/1.1\r\nHost: tracker\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nAccept: application/json\r\n%s: %s\r\n",
		token, name, value)
	if *sessions {
		fmt.Fprintf(&req, "%s: new\r\n", tracker.SessionHeader)
	}
	fmt.Fprintf(&req, "Content-Length: %d\r\n\r\n", len(body))
	req.Write(body)
	return req.Bytes()
}

func makeAgents(n, each, pool int, at time.Time) ([]agent, error) {
	ds := make([]digest.Digest, pool)
	for i := range ds {
		ds[i] = digest.FromString(fmt.Sprintf("layer %d", i))
	}
	out := make([]agent, n)
	for i := range out {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, err
		}
		id, err := peer.IDFromPrivateKey(key)
		if err != nil {
			return nil, err
		}
		blobs := make([]tracker.BlobState, each)
		for j := range blobs {
			blobs[j] = tracker.BlobState{Digest: ds[(i+j*(pool/each))%pool], Have: 40, Complete: j%2 == 0}
		}
		body, err := json.Marshal(map[string]any{
			"peer":   map[string]any{"id": id.String(), "addrs": []string{fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4001", i>>16&255, i>>8&255, i&255)}, "seeder": false},
			"blobs":  blobs,
			"pieces": piece.Policy,
		})
		if err != nil {
			return nil, err
		}
		sig, err := tracker.SignAnnounce(key, body, at)
		if err != nil {
			return nil, err
		}
		out[i] = agent{id: id.String(), body: body, req: request(body, tracker.SignatureHeader, sig)}
	}
	return out, nil
}

// useSessions rebuilds each agent's request with the MAC of the session
// its signed announce got (answers holds those answers' bodies).
func useSessions(as []agent, answers [][]byte, at time.Time) error {
	for i := range as {
		var resp tracker.AnnounceResponse
		if err := json.Unmarshal(answers[i], &resp); err != nil {
			return err
		}
		if resp.Session == nil {
			return fmt.Errorf("agent %d: no session in the answer", i)
		}
		h, err := tracker.MACAnnounce(*resp.Session, as[i].id, as[i].body, at)
		if err != nil {
			return err
		}
		var req bytes.Buffer
		fmt.Fprintf(&req, "POST /v1/announce HTTP/1.1\r\nHost: tracker\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nAccept: application/json\r\n%s: %s\r\nContent-Length: %d\r\n\r\n",
			token, tracker.SessionHeader, h, len(as[i].body))
		req.Write(as[i].body)
		as[i].req = req.Bytes()
	}
	return nil
}

// conn is one keep-alive HTTP/1.1 connection that sends raw requests and
// reads just the status and the body's length, so the load generator
// costs far less CPU than the tracker it loads.
type conn struct {
	c net.Conn
	r *bufio.Reader
}

func dial(addr string) (*conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 16<<10)}, nil
}

// do sends req and returns the answer's status and body.
func (c *conn) do(req []byte) (int, []byte, error) {
	if _, err := c.c.Write(req); err != nil {
		return 0, nil, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	f := strings.Fields(string(line))
	if len(f) < 2 {
		return 0, nil, fmt.Errorf("status line %q", line)
	}
	status, _ := strconv.Atoi(f[1])
	length := -1
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(h) <= 2 {
			break
		}
		if k, v, ok := strings.Cut(string(h), ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if length < 0 {
		return 0, nil, errors.New("answer without Content-Length")
	}
	body := make([]byte, length)
	_, err = io.ReadFull(c.r, body)
	return status, body, err
}

// result is one phase's figures.
type result struct {
	n       int
	wall    time.Duration
	cpu     time.Duration // the tracker's
	latency []time.Duration
}

// drive sends the agents' announces over conns connections, each agent in
// turn, until every agent announced once (until is zero) or until passes.
// answers, when not nil, gets each agent's answer body (first round only).
func drive(addr string, as []agent, nconn int, until time.Duration, pid int, answers [][]byte) (result, error) {
	cpu0, err := cpuTime(pid)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	lat := make([][]time.Duration, nconn)
	errs := make([]error, nconn)
	var wg sync.WaitGroup
	for w := range nconn {
		wg.Go(func() {
			c, err := dial(addr)
			if err != nil {
				errs[w] = err
				return
			}
			defer c.c.Close()
			for i := w; ; i += nconn {
				if until == 0 && i >= len(as) {
					return
				}
				if until > 0 && time.Since(start) >= until {
					return
				}
				t0 := time.Now()
				status, body, err := c.do(as[i%len(as)].req)
				if err != nil {
					errs[w] = err
					return
				}
				if status != http.StatusOK {
					errs[w] = fmt.Errorf("announce: HTTP %d: %s", status, body)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
				if answers != nil && i < len(as) {
					answers[i] = body
				}
			}
		})
	}
	wg.Wait()
	r := result{wall: time.Since(start)}
	cpu1, err := cpuTime(pid)
	if err != nil {
		return r, err
	}
	r.cpu = cpu1 - cpu0
	for _, l := range lat {
		r.latency = append(r.latency, l...)
	}
	r.n = len(r.latency)
	slices.Sort(r.latency)
	return r, errors.Join(errs...)
}

// cpuTime is the user and system time of process pid so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command's closing parenthesis; utime and stime
	// are the 14th and 15th of the line.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

func heap(addr string) (int64, error) {
	resp, err := http.Get("http://" + addr + "/load/heap")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

func pct(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[min(len(l)-1, int(p*float64(len(l))))]
}

// TestLoad is the load generator (make bench-tracker).
func TestLoad(t *testing.T) {
	if !*loadRun {
		t.Skip("the tracker load generator: make bench-tracker (-load)")
	}
	if *blobsEach < 1 || *blobPool < *blobsEach {
		t.Fatalf("want 1 <= -load.blobs <= -load.pool")
	}
	at := time.Now()
	as, err := makeAgents(*agents, *blobsEach, *blobPool, at)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d agents, keys made and announces signed in %s", len(as), time.Since(at).Round(time.Millisecond))

	args := []string{"-test.run", "^TestLoadServe$", "-load.serve", "-load.cpuprofile", *cpuProfile}
	name := os.Args[0]
	if *serverCPU != "" {
		if p, err := exec.LookPath("taskset"); err == nil {
			args = append([]string{"-c", *serverCPU, name}, args...)
			name = p
		} else {
			t.Logf("no taskset: the tracker is not pinned to a core (GOMAXPROCS=1 still)")
		}
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "addr="); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("the tracker did not start")
	}
	go io.Copy(io.Discard, stdout)
	pid := cmd.Process.Pid

	h0, err := heap(addr)
	if err != nil {
		t.Fatal(err)
	}
	answers := make([][]byte, len(as))
	warm, err := drive(addr, as, *conns, 0, pid, answers)
	if err != nil {
		t.Fatal(err)
	}
	mode := "every announce signed (Ed25519)"
	if *sessions {
		if err := useSessions(as, answers, time.Now()); err != nil {
			t.Fatal(err)
		}
		mode = "session MACs, unchanged bodies"
	}
	h1, err := heap(addr)
	if err != nil {
		t.Fatal(err)
	}
	pairs := len(as) * *blobsEach
	if *cpuProfile != "" {
		resp, err := http.Post("http://"+addr+"/load/profile", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	run, err := drive(addr, as, *conns, *duration, pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	perCore := float64(run.n) / run.cpu.Seconds()
	fmt.Printf("tracker load: %d agents × %d blobs (%d pairs, %d distinct blobs), %d connections, tracker GOMAXPROCS=1 on CPU %q\n",
		len(as), *blobsEach, pairs, *blobPool, *conns, *serverCPU)
	fmt.Printf("  first announces (signed): %d in %s: %.0f/s wall, %.0f per tracker CPU-second\n", warm.n, warm.wall.Round(time.Millisecond), float64(warm.n)/warm.wall.Seconds(), float64(warm.n)/warm.cpu.Seconds())
	fmt.Printf("  memory:          %.0f B per (peer, blob) (heap %d → %d B)\n", float64(h1-h0)/float64(pairs), h0, h1)
	fmt.Printf("  steady announces (%s): %d in %s: %.0f/s wall, %.0f per tracker CPU-second (%.2f s of CPU)\n",
		mode, run.n, run.wall.Round(time.Millisecond), float64(run.n)/run.wall.Seconds(), perCore, run.cpu.Seconds())
	fmt.Printf("  latency:         p50 %s, p99 %s, max %s\n", pct(run.latency, .5), pct(run.latency, .99), pct(run.latency, 1))
}
