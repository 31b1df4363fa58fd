package trackertest

import (
	"bytes"
	"crypto/sha256"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/shoal-dev/shoal/tracker"
)

// Real peer identities for tests that name their peers ("agent1"): each
// name has a fixed Ed25519 key, so its peer ID is the same in every run and
// announces for it can be signed.

var names sync.Map // peer ID string → name

// Key returns the Ed25519 key of name, derived from it.
func Key(name string) crypto.PrivKey {
	seed := sha256.Sum256([]byte("trackertest peer " + name))
	k, _, err := crypto.GenerateEd25519Key(bytes.NewReader(seed[:]))
	if err != nil {
		panic(err) // unreachable: the reader holds the 32 bytes it reads
	}
	return k
}

// ID returns the peer ID of Key(name).
func ID(name string) string {
	p, err := peer.IDFromPrivateKey(Key(name))
	if err != nil {
		panic(err) // unreachable for an Ed25519 key
	}
	names.Store(p.String(), name)
	return p.String()
}

// Name returns the name whose ID (made by ID) is id, or id itself.
func Name(id string) string {
	if n, ok := names.Load(id); ok {
		return n.(string)
	}
	return id
}

// Sign sets the signature header of req, an announce with body, as the
// peer name signs it at time at.
func Sign(tb testing.TB, req *http.Request, name string, body []byte, at time.Time) {
	tb.Helper()
	sig, err := tracker.SignAnnounce(Key(name), body, at)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set(tracker.SignatureHeader, sig)
}

// ClientAs returns a client of tr with tr's token that signs its announces
// as the peer name.
func (tr *Tracker) ClientAs(tb testing.TB, name string, opts ...tracker.Option) *tracker.Client {
	tb.Helper()
	return tr.Client(tb, append(opts, tracker.WithKey(Key(name)))...)
}
