package agenttest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/crypto/bcrypt"

	"github.com/shoal-dev/shoal/deploy/conf"
)

// DistributionBinary is where Debian's docker-registry package installs
// CNCF distribution 2.8.
const DistributionBinary = "/usr/bin/docker-registry"

// startTimeout bounds how long a child may take to answer.
const startTimeout = 20 * time.Second

// BasicAuth is a user name and password.
type BasicAuth struct {
	User     string
	Password string
}

// DistributionOptions configure an origin. The zero value is an anonymous,
// plain-HTTP registry on loopback.
type DistributionOptions struct {
	// BasicAuth protects the registry with an htpasswd file.
	BasicAuth *BasicAuth
	// Token protects the registry with bearer tokens from this service.
	// It excludes BasicAuth.
	Token *TokenService
	// ListenHost is the IP the origin is exposed on; default 127.0.0.1.
	// Tests in network namespaces expose it on a bridge address.
	ListenHost string
	// Rate caps the bytes per second the origin sends, over all clients
	// together (0: no cap). Origin.SetRate changes it later.
	Rate int64
	// Extra is appended to the registry's config as is, e.g. a
	// notifications: section.
	Extra string
}

// Origin is a running docker-registry behind a counting TCP proxy.
type Origin struct {
	// Addr is host:port of the proxy, which is what clients should use.
	Addr string
	// URL is "http://" + Addr.
	URL string
	// BackendAddr reaches the registry directly, bypassing the counters.
	BackendAddr string
	// Creds are what a client needs to pull (nil for an anonymous origin);
	// for a token origin they are the token service's credentials.
	Creds *BasicAuth
	// Token is the token service, if any.
	Token *TokenService
	// RootDir is the registry's storage directory.
	RootDir string

	proc     *Process
	proxy    *countingProxy
	stopOnce sync.Once
}

// StartDistribution starts docker-registry on a free loopback port with a
// generated config, behind a counting proxy, and waits until /v2/ answers.
// Everything stops in t.Cleanup. Without the binary the test is skipped
// (failed under CI=true).
func StartDistribution(t testing.TB, opts DistributionOptions) *Origin {
	t.Helper()
	if opts.BasicAuth != nil && opts.Token != nil {
		t.Fatal("agenttest: DistributionOptions: BasicAuth and Token are exclusive")
	}
	if _, err := os.Stat(DistributionBinary); err != nil {
		skipOrFatal(t, "%s missing: install Debian's docker-registry package (%s)", DistributionBinary, depsHint)
	}
	host := opts.ListenHost
	if host == "" {
		host = "127.0.0.1"
	}
	dir := t.TempDir()
	o := &Origin{RootDir: filepath.Join(dir, "storage"), Token: opts.Token}
	switch {
	case opts.BasicAuth != nil:
		o.Creds = &BasicAuth{User: opts.BasicAuth.User, Password: opts.BasicAuth.Password}
	case opts.Token != nil:
		o.Creds = &BasicAuth{User: opts.Token.user, Password: opts.Token.password}
	}

	var auth string
	switch {
	case opts.BasicAuth != nil:
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := writeHtpasswd(htpasswd, *opts.BasicAuth); err != nil {
			t.Fatalf("agenttest: %v", err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: %q\n    path: %q\n", "shoal-test", htpasswd)
	case opts.Token != nil:
		auth = fmt.Sprintf("auth:\n  token:\n    realm: %q\n    service: %q\n    issuer: %q\n    rootcertbundle: %q\n",
			opts.Token.Realm(), opts.Token.Service, opts.Token.Issuer, opts.Token.CertBundle)
	}

	// The backend port comes from FreePort and may be taken before the
	// registry binds it; retry with another one when it exits early.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		backend := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		cfg := filepath.Join(dir, fmt.Sprintf("config-%d.yml", attempt))
		if err := os.WriteFile(cfg, []byte(conf.Distribution(o.RootDir, backend, auth+opts.Extra)), 0o600); err != nil {
			t.Fatalf("agenttest: registry config: %v", err)
		}
		proc := StartProcess(t, ProcessOptions{}, DistributionBinary, "serve", cfg)
		if err := waitHTTP(t.Context(), proc, "http://"+backend+"/v2/"); err != nil {
			_ = proc.Stop()
			lastErr = fmt.Errorf("%w\n%s", err, proc.Logs())
			continue
		}
		o.proc, o.BackendAddr = proc, backend
		break
	}
	if o.proc == nil {
		t.Fatalf("agenttest: docker-registry did not start: %v", lastErr)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("agenttest: origin proxy: %v", err)
	}
	o.proxy = newCountingProxy(ln, o.BackendAddr)
	o.proxy.setRate(opts.Rate)
	o.Addr = ln.Addr().String()
	o.URL = "http://" + o.Addr
	t.Cleanup(func() { _ = o.Stop() })
	return o
}

func writeHtpasswd(path string, ba BasicAuth) error {
	if ba.User == "" || strings.ContainsAny(ba.User, ":\n") {
		return fmt.Errorf("htpasswd: bad user name %q", ba.User)
	}
	// MinCost keeps each authenticated request cheap; strength is moot here.
	hash, err := bcrypt.GenerateFromPassword([]byte(ba.Password), bcrypt.MinCost)
	if err != nil {
		return fmt.Errorf("htpasswd: %w", err)
	}
	return os.WriteFile(path, []byte(ba.User+":"+string(hash)+"\n"), 0o600)
}

// waitHTTP polls url until it answers with any HTTP status, the process
// exits, or startTimeout passes.
func waitHTTP(ctx context.Context, proc *Process, url string) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	// Readiness only: a TLS server's certificate is the test's own business.
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: time.Second, Transport: tr}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			return nil
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("%s exited before answering %s", proc.Name, url)
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer %s: %w", proc.Name, url, ctx.Err())
		case <-tick.C:
		}
	}
}

// Stop stops the proxy and the registry; clients see refused connections
// afterwards. It is called in t.Cleanup and safe to call again.
func (o *Origin) Stop() error {
	var err error
	o.stopOnce.Do(func() {
		err = o.proxy.close()
		if perr := o.proc.Stop(); err == nil {
			err = perr
		}
	})
	return err
}

// BytesSent is how many bytes the origin sent to clients, headers included.
func (o *Origin) BytesSent() int64 { return o.proxy.sent.Load() }

// BytesReceived is how many bytes clients sent to the origin.
func (o *Origin) BytesReceived() int64 { return o.proxy.received.Load() }

// Requests lists the HTTP requests clients sent, in arrival order per
// connection.
func (o *Origin) Requests() []Request { return o.proxy.snapshot() }

// BlobGets counts GET requests for blobs.
func (o *Origin) BlobGets() int {
	n := 0
	for _, r := range o.proxy.snapshot() {
		if r.IsBlobGet() {
			n++
		}
	}
	return n
}

// SetRate caps the bytes per second the origin sends, over all clients
// together, from now on; 0 removes the cap. Pushes are not slowed: only
// what the origin sends is capped.
func (o *Origin) SetRate(bytesPerSecond int64) { o.proxy.setRate(bytesPerSecond) }

// BlobGetsOf returns the GET requests for the blob with digest d (as
// "sha256:<hex>"), in arrival order per connection.
func (o *Origin) BlobGetsOf(d string) []Request {
	var out []Request
	for _, r := range o.proxy.snapshot() {
		if r.IsBlobGet() && strings.HasSuffix(r.Path, "/blobs/"+d) {
			out = append(out, r)
		}
	}
	return out
}

// ResetCounters zeroes the byte counters and forgets the requests seen, so
// a test can push first and then count only its pulls.
func (o *Origin) ResetCounters() { o.proxy.reset() }

// Ref returns a reference to repo (with :tag or @digest) on this origin.
func (o *Origin) Ref(repo string) string { return o.Addr + "/" + repo }

// Auth returns the go-containerregistry credentials for this origin.
func (o *Origin) Auth() authn.Authenticator {
	if o.Creds == nil {
		return authn.Anonymous
	}
	return &authn.Basic{Username: o.Creds.User, Password: o.Creds.Password}
}
