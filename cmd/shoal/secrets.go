package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/shoal-dev/shoal/tracker"
)

// readTokens reads tokens from a file, one per line; blank lines and lines
// starting with # are left out.
func readTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var toks []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			toks = append(toks, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("%s: no token in the file", path)
	}
	return toks, nil
}

// readCA reads PEM certificates into a pool.
func readCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New(path + ": no PEM certificate in the file")
	}
	return pool, nil
}

// caClient is the tracker client option that checks the tracker's TLS
// certificate against the CAs of the PEM file path; none for "" (the
// system roots).
func caClient(path string) ([]tracker.Option, error) {
	if path == "" {
		return nil, nil
	}
	pool, err := readCA(path)
	if err != nil {
		return nil, err
	}
	tp := http.DefaultTransport.(*http.Transport).Clone()
	tp.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return []tracker.Option{tracker.WithHTTPClient(&http.Client{Transport: tp})}, nil
}

// readPSK reads a 32-byte key, raw or as 64 hex digits.
func readPSK(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if s := strings.TrimSpace(string(b)); len(s) == 64 {
		var key [32]byte
		if _, err := fmt.Sscanf(s, "%x", &key); err == nil {
			return key[:], nil
		}
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("p2p-psk-file %s: want 32 raw bytes or 64 hex digits", path)
	}
	return b, nil
}
