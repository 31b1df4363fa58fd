package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// silentListener accepts connections and never answers on them.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond

	t.Run("no answer", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig("http://" + silentListener(t))
		cfg.Timeout = timeout
		c := newClient(t, cfg)
		if _, _, err := c.Manifest(t.Context(), "", "app", "v1"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Manifest = %v, want ErrUnavailable", err)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		c := newClient(t, testConfig("http://"+addr))
		if _, err := c.BlobSize(t.Context(), "", "app", digest.FromString("x")); !errors.Is(err, ErrUnavailable) {
			t.Errorf("BlobSize = %v, want ErrUnavailable", err)
		}
	})

	t.Run("stalled blob body", func(t *testing.T) {
		t.Parallel()
		srv := serve(t, fakeOrigin(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.Write(make([]byte, 10))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}))
		cfg := testConfig(srv.URL)
		cfg.Timeout = timeout
		c := newClient(t, cfg)
		rc, err := c.Blob(t.Context(), "", "app", digest.FromString("x"), 0)
		if err != nil {
			t.Fatalf("Blob: %v", err)
		}
		defer rc.Close()
		n, err := io.Copy(io.Discard, rc)
		if n != 10 || !errors.Is(err, ErrUnavailable) {
			t.Errorf("read %d bytes, %v; want 10 bytes then ErrUnavailable", n, err)
		}
	})

	t.Run("caller cancels", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, testConfig("http://"+silentListener(t)))
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := c.Tags(ctx, "", "app", 0, ""); !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
			t.Errorf("Tags = %v, want context.Canceled and not ErrUnavailable", err)
		}
	})
}
