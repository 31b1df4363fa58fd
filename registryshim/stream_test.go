package registryshim_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/registryshim"
	"github.com/shoal-dev/shoal/registryshim/shimtest"
)

const chunk = 256 << 10 // the handler's copy buffer

// gatedServer serves a 1 MiB blob whose bytes the test releases through a gate.
func gatedServer(t *testing.T, opts ...registryshim.Option) (*fixture, *shimtest.Gate, *httptest.Server) {
	t.Helper()
	f := newFixture(t, 4*chunk, opts...)
	gate := f.mem.Gate(f.bdgst)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	return f, gate, srv
}

func get(t *testing.T, ctx context.Context, srv *httptest.Server, d digest.Digest) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v2/library/alpine/blobs/"+d.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The first bytes reach the client while the backend still holds back the
// rest: a runtime can unpack while the swarm fetches.
func TestStreamsWhileBackendDownloads(t *testing.T) {
	t.Parallel()
	f, gate, srv := gatedServer(t)
	gate.Release(chunk)
	resp := get(t, t.Context(), srv, f.bdgst)
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(f.blob)) {
		t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	head := make([]byte, chunk)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatalf("reading the released bytes: %v", err)
	}
	gate.Release(int64(len(f.blob)))
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(head, rest...), f.blob) {
		t.Error("streamed body differs from the blob")
	}
}

// A failure after the status line must break the transfer, never end it
// cleanly with a short body.
func TestFailureMidBodyAborts(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f, gate, srv := gatedServer(t, registryshim.WithRegisterer(reg))
	gate.Release(chunk)
	resp := get(t, t.Context(), srv, f.bdgst)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, chunk)); err != nil {
		t.Fatal(err)
	}
	gate.Fail(errors.New("piece 3: every peer failed"))
	if n, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Fatalf("body ended cleanly after %d more bytes; want a broken transfer", n)
	}
	srv.Close() // waits for the handler, so its metrics are recorded
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if got := metricValue(families, "shoal_registry_aborted_responses_total", map[string]string{"route": "blob"}); got != 1 {
		t.Errorf("aborted responses = %v, want 1", got)
	}
}

// Before the first byte, a failure is still a proper status the runtime acts on.
func TestFailureBeforeFirstByte(t *testing.T) {
	t.Parallel()
	f, gate, srv := gatedServer(t)
	gate.Fail(fmt.Errorf("origin 10.0.0.1: %w", registryshim.ErrUnavailable))
	resp := get(t, t.Context(), srv, f.bdgst)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	body, _ := io.ReadAll(resp.Body)
	if !bytes.Contains(body, []byte(`"UNAVAILABLE"`)) || bytes.Contains(body, []byte("10.0.0.1")) {
		t.Errorf("body = %s", body)
	}
}

// A client that leaves while the handler waits for bytes releases the
// handler (srv.Close waits for it) and is counted as 499.
func TestClientGoneWhileWaiting(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f, _, srv := gatedServer(t, registryshim.WithRegisterer(reg))
	opened := make(chan struct{})
	f.mem.SetHook(func(_ context.Context, c shimtest.Call) error {
		if c.Op == shimtest.OpBlob {
			close(opened)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v2/library/alpine/blobs/"+f.bdgst.String(), nil)
		resp, err := srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-opened
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v, want canceled", err)
	}
	srv.Close()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if got := metricValue(families, "shoal_registry_requests_total", map[string]string{"route": "blob", "method": "GET", "code": "499"}); got != 1 {
		t.Errorf("requests{code=499} = %v, want 1", got)
	}
}

func BenchmarkServeBlob(b *testing.B) {
	const size = 64 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	mem := shimtest.NewMemory()
	d := mem.PutBlob(alpine, data)
	srv := httptest.NewServer(registryshim.New(mem))
	defer srv.Close()
	url := srv.URL + "/v2/library/alpine/blobs/" + d.String()
	client := srv.Client()
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
}

func BenchmarkManifest(b *testing.B) {
	f := newFixture(b, 10)
	req := httptest.NewRequest("GET", "/v2/library/alpine/manifests/latest", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
