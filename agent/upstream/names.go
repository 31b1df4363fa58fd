package upstream

import (
	"fmt"
	"strings"

	// go-digest verifies only with hash functions linked into the binary.
	_ "crypto/sha256"
	_ "crypto/sha512"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim/grammar"
)

// Names and references arrive from runtimes and go into upstream URLs, so
// anything outside the OCI grammar is refused before a request is made.
func checkRepo(repo string) error {
	if !grammar.Repository(repo) {
		return fmt.Errorf("repository %q: %w", repo, ErrInvalidName)
	}
	return nil
}

// parseDigest accepts only digests whose algorithm this binary can verify.
func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("digest %q: %w: %w", s, ErrInvalidDigest, err)
	}
	if !d.Algorithm().Available() {
		return "", fmt.Errorf("digest %q: algorithm not supported: %w", s, ErrInvalidDigest)
	}
	return d, nil
}

// parseRef splits a manifest reference into a digest or a tag; exactly one
// of the results is set when err is nil.
func parseRef(ref string) (digest.Digest, string, error) {
	if strings.Contains(ref, ":") {
		d, err := parseDigest(ref)
		return d, "", err
	}
	if !grammar.Tag(ref) {
		// No manifest can be known under a name outside the grammar.
		return "", "", fmt.Errorf("tag %q: invalid: %w", ref, ErrManifestNotFound)
	}
	return "", ref, nil
}
