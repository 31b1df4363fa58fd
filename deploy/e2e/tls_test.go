package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// testCA is a CA that signs one server certificate for the DNS name
// localhost only: no IP SAN, so a client that dials 127.0.0.1 fails.
type testCA struct {
	caFile, certFile, keyFile string
}

func newTestCA(t *testing.T, dir, name string) testCA {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	c := testCA{caFile: filepath.Join(dir, name+"-ca.pem"), certFile: filepath.Join(dir, name+"-cert.pem"), keyFile: filepath.Join(dir, name+"-key.pem")}
	for file, block := range map[string]*pem.Block{
		c.caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		c.certFile: {Type: "CERTIFICATE", Bytes: der},
		c.keyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// The tracker serves its API over TLS with a certificate for a DNS name
// only; agents name its CA and read their token from a file. A swarm pull
// works, the origin sends about one copy, and the tracker takes two tokens
// at once (one being rotated out). An agent given the wrong CA refuses to
// start, with one line naming the tracker.
func TestTrackerTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newTestCA(t, dir, "tracker")
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("new-cluster-token\nold-cluster-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	oldToken := filepath.Join(dir, "old-token")
	if err := os.WriteFile(oldToken, []byte("old-cluster-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 3, LayerSize: 2 << 20, Seed: 77})
	ref := origin.Push(t, img, "tls/app:v1")
	size, err := imageBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	origin.ResetCounters()

	tracker := agenttest.StartShoal(t, shoalBin, "tracker", "--token-file", tokens, "--upstream", origin.URL,
		"--tls-cert", ca.certFile, "--tls-key", ca.keyFile)
	_, port, _ := strings.Cut(tracker.Addr, ":")
	url := "https://localhost:" + port

	nodes := []*agenttest.Shoal{
		startAgent(t, origin, "--tracker", url, "--tracker-ca", ca.caFile, "--tracker-token-file", tokens),
		startAgent(t, origin, "--tracker", url, "--tracker-ca", ca.caFile, "--tracker-token-file", oldToken),
	}
	for _, n := range nodes {
		agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, via(n, ref), nil)), img)
	}
	var swarmBytes float64
	for _, n := range nodes {
		swarmBytes += n.Metric(t, "shoal_swarm_received_bytes_total", "source=peer") +
			n.Metric(t, "shoal_swarm_received_bytes_total", "source=seeder")
		if failed := n.Metric(t, "shoal_swarm_announce_errors_total"); failed != 0 {
			t.Errorf("%v announces failed", failed)
		}
	}
	sent := origin.BytesSent()
	t.Logf("origin sent %.2f copies; agents got %.0f bytes from the swarm", float64(sent)/float64(size), swarmBytes)
	if sent >= size*3/2 {
		t.Errorf("the origin sent %.2f copies of the image, want about one", float64(sent)/float64(size))
	}
	if swarmBytes == 0 {
		t.Error("no byte came through the swarm")
	}

	// The wrong CA: the agent refuses to start.
	wrong := newTestCA(t, dir, "other")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, shoalBin, "agent", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--upstream", origin.URL, "--p2p-listen", "/ip4/127.0.0.1/tcp/0",
		"--tracker", url, "--tracker-ca", wrong.caFile, "--tracker-token-file", tokens).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	last := lines[len(lines)-1]
	if err == nil || !strings.HasPrefix(last, "shoal: tracker "+url) || !strings.Contains(last, "certificate") {
		t.Errorf("agent with the wrong CA: %v, last line %q; want an exit naming the tracker and its certificate", err, last)
	}
}
