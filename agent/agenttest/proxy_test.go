package agenttest

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCountingProxy(t *testing.T) {
	t.Parallel()
	const body = "0123456789"
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, body)
	}))
	defer backend.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := newCountingProxy(ln, strings.TrimPrefix(backend.URL, "http://"))

	// One keep-alive connection carrying requests with and without bodies:
	// the parser must find each request line after the previous body.
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	base := "http://" + ln.Addr().String()
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/v2/", ""},
		{http.MethodPatch, "/v2/app/blobs/uploads/x", strings.Repeat("b", 100_000)},
		{http.MethodGet, "/v2/app/blobs/sha256:aa?ns=origin", ""},
		{http.MethodHead, "/v2/app/manifests/v1", ""},
	} {
		req, err := http.NewRequestWithContext(t.Context(), r.method, base+r.path, strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	client.CloseIdleConnections()

	if err := p.close(); err != nil {
		t.Fatal(err)
	}
	got := p.snapshot()
	want := []Request{
		{Method: "GET", Path: "/v2/"},
		{Method: "PATCH", Path: "/v2/app/blobs/uploads/x"},
		{Method: "GET", Path: "/v2/app/blobs/sha256:aa", Query: "ns=origin"},
		{Method: "HEAD", Path: "/v2/app/manifests/v1"},
	}
	if len(got) != len(want) {
		t.Fatalf("requests %+v, want %+v", got, want)
	}
	blobGets := 0
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("request %d = %+v, want %+v", i, got[i], want[i])
		}
		if got[i].IsBlobGet() {
			blobGets++
		}
	}
	if blobGets != 1 {
		t.Fatalf("%d blob GETs, want 1", blobGets)
	}
	// Three bodies came back (HEAD has none), plus headers.
	if sent := p.sent.Load(); sent < 3*int64(len(body)) || sent > 2000 {
		t.Fatalf("sent %d bytes", sent)
	}
	if recv := p.received.Load(); recv < 100_000 {
		t.Fatalf("received %d bytes, want the upload body counted", recv)
	}
	p.reset()
	if p.sent.Load() != 0 || len(p.snapshot()) != 0 {
		t.Fatal("reset left counts")
	}
}

func TestCountingProxyBackendDown(t *testing.T) {
	t.Parallel()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	_ = dead.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := newCountingProxy(ln, deadAddr)
	defer p.close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/v2/")
	if err == nil {
		_ = resp.Body.Close()
		t.Fatal("request through a proxy to a dead backend succeeded")
	}
}
