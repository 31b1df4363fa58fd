package agenttest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// Request is one HTTP request seen on the way to an origin.
type Request struct {
	Method string
	Path   string
	Query  string // raw, e.g. "ns=docker.io" from a containerd mirror
	Range  string // the Range header, e.g. "bytes=1048576-" from a resuming client
}

// IsBlobGet reports whether r fetches a blob (GET /v2/<name>/blobs/<digest>).
func (r Request) IsBlobGet() bool {
	return r.Method == http.MethodGet && strings.HasPrefix(r.Path, "/v2/") &&
		strings.Contains(r.Path, "/blobs/") && !strings.Contains(r.Path, "/blobs/uploads")
}

// countingProxy forwards TCP connections to a backend, counting the bytes
// each way and noting the HTTP requests clients send. Counting at the TCP
// level sees everything an origin sends, headers included, whatever the
// client does with it.
type countingProxy struct {
	ln      net.Listener
	backend string

	sent     atomic.Int64 // backend → clients
	received atomic.Int64 // clients → backend

	// limit caps the bytes per second the backend sends, summed over all
	// connections, like an origin's uplink. rate.Inf means no cap.
	limit *rate.Limiter
	// ctx ends at close, so that no writer stays parked in the limiter.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	requests []Request

	wg     sync.WaitGroup
	connMu sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newCountingProxy(ln net.Listener, backend string) *countingProxy {
	p := &countingProxy{ln: ln, backend: backend, conns: map[net.Conn]struct{}{},
		limit: rate.NewLimiter(rate.Inf, throttleChunk)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.accept()
	return p
}

func (p *countingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(c)
		}()
	}
}

// track records an open connection so close can cut it; false once closed.
func (p *countingProxy) track(c net.Conn) bool {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.closed {
		_ = c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *countingProxy) untrack(c net.Conn) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	delete(p.conns, c)
}

func (p *countingProxy) serve(client net.Conn) {
	defer p.untrack(client)
	defer client.Close()
	backend, err := net.Dial("tcp", p.backend)
	if err != nil {
		return
	}
	if !p.track(backend) {
		return
	}
	defer p.untrack(backend)
	defer backend.Close()

	// The request parser reads a copy of the client's stream; it never
	// holds up forwarding for longer than it takes to read a header.
	pr, pw := io.Pipe()
	parsed := make(chan struct{})
	go func() {
		defer close(parsed)
		p.parseRequests(pr)
		_, _ = io.Copy(io.Discard, pr) // keep the tee flowing after a parse error
	}()

	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(backend, io.TeeReader(countReader{client, &p.received}, pw))
		_ = pw.Close()
		closeWrite(backend)
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(throttledWriter{countWriter{client, &p.sent}, p}, backend)
		closeWrite(client)
		done <- struct{}{}
	}()
	<-done
	<-done
	<-parsed
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func (p *countingProxy) parseRequests(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.requests = append(p.requests, Request{Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Range: req.Header.Get("Range")})
		p.mu.Unlock()
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
	}
}

func (p *countingProxy) snapshot() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.requests...)
}

func (p *countingProxy) reset() {
	p.mu.Lock()
	p.requests = nil
	p.mu.Unlock()
	p.sent.Store(0)
	p.received.Store(0)
}

// close stops accepting, cuts open connections and waits for every
// goroutine the proxy started.
func (p *countingProxy) close() error {
	err := p.ln.Close()
	p.cancel()
	p.connMu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.connMu.Unlock()
	p.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// throttleChunk is the most a throttled write sends at once; it is also the
// limiter's burst, so a cap holds over any span longer than a few chunks.
const throttleChunk = 32 << 10

// setRate caps what the backend sends to bytesPerSecond over all
// connections; 0 or less removes the cap.
func (p *countingProxy) setRate(bytesPerSecond int64) {
	if bytesPerSecond <= 0 {
		p.limit.SetLimit(rate.Inf)
		return
	}
	p.limit.SetLimit(rate.Limit(bytesPerSecond))
}

// throttledWriter writes in chunks, each waiting for the proxy's limiter.
type throttledWriter struct {
	w io.Writer
	p *countingProxy
}

func (t throttledWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		n := min(len(b), throttleChunk)
		if err := t.p.limit.WaitN(t.p.ctx, n); err != nil {
			return written, err
		}
		m, err := t.w.Write(b[:n])
		written += m
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}
