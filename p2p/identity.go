package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// LoadIdentity returns the Ed25519 key stored in path, creating it (mode
// 0600) if the file does not exist; an empty path yields a fresh key. Hand
// it to New with WithIdentity.
func LoadIdentity(path string) (crypto.PrivKey, error) { return loadIdentity(path) }

// loadIdentity returns the Ed25519 key stored in path, creating it if the
// file does not exist. An empty path yields a fresh key.
func loadIdentity(path string) (crypto.PrivKey, error) {
	if path == "" {
		return newKey()
	}
	if k, err := readKey(path); !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err := newKey()
	if err != nil {
		return nil, err
	}
	raw, err := crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("p2p: encoding identity: %w", err)
	}
	// Written aside, then linked into place: a crash leaves no half-written
	// key, and if another process won the race we use its key, not ours.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".identity-*")
	if err != nil {
		return nil, fmt.Errorf("p2p: creating identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("p2p: creating identity: %w", err)
	}
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("p2p: writing identity: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("p2p: writing identity: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("p2p: writing identity: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readKey(path)
		}
		return nil, fmt.Errorf("p2p: storing identity: %w", err)
	}
	return k, nil
}

func newKey() (crypto.PrivKey, error) {
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("p2p: generating identity: %w", err)
	}
	return k, nil
}

func readKey(path string) (crypto.PrivKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("p2p: reading identity: %w", err)
	}
	k, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("p2p: identity %s: %w", path, err)
	}
	if k.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("p2p: identity %s: %s key, want Ed25519", path, k.Type())
	}
	return k, nil
}
