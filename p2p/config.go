package p2p

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// Config configures a Host.
type Config struct {
	// ListenAddrs are TCP multiaddrs to listen on (agents pass --p2p-listen).
	ListenAddrs []string
	// KeyFile persists the host's Ed25519 identity; it is created (mode
	// 0600) if missing. Empty means a fresh identity on every start.
	KeyFile string
	// Security is "tls" (fastest on our machines) or "noise". Every peer
	// of a cluster must use the same.
	Security string
	// PSK, if set, is the 32-byte key of a libp2p private network shared
	// by all cluster members; hosts with another key cannot connect.
	PSK []byte
	// MaxUploads bounds the piece uploads served at once. A request beyond
	// it waits up to UploadQueue for a slot, first come first served, with
	// at most MaxQueued others waiting; past either it is refused with Busy
	// and the client asks elsewhere. Zero UploadQueue refuses at once: an
	// agent does, so that clients move on to idle peers; a seeder waits,
	// so that its link, which every new piece must cross once, never idles.
	MaxUploads  int
	UploadQueue time.Duration
	MaxQueued   int
	// UploadRate and DownloadRate cap the piece bytes per second sent and
	// received, shared by all transfers; 0 means unlimited.
	UploadRate   int64
	DownloadRate int64
	// MaxPeers sizes the connection manager and the resource limits: the
	// connection manager trims unprotected connections beyond it.
	MaxPeers int
	// RequestTimeout bounds how long a server waits for a request after a
	// stream opens.
	RequestTimeout time.Duration
	// StallTimeout bounds how long a transfer may make no progress, on
	// either side, before the stream is reset.
	StallTimeout time.Duration
	// Admit, if set, is asked about every peer before a connection to or
	// from it is accepted, and before each piece, have or meta request
	// from it is served; agents and the seeder pass Admission.Admit, which
	// admits the peers the tracker lists. nil admits everyone.
	Admit func(peer.ID) bool
}

// Supported Config.Security values.
const (
	SecurityTLS   = "tls"
	SecurityNoise = "noise"
)

// DefaultConfig returns a loopback-only, TLS, unlimited-rate configuration.
func DefaultConfig() Config {
	return Config{
		ListenAddrs:    []string{"/ip4/127.0.0.1/tcp/0"},
		Security:       SecurityTLS,
		MaxUploads:     8,
		MaxQueued:      64,
		MaxPeers:       512,
		RequestTimeout: 10 * time.Second,
		StallTimeout:   15 * time.Second,
	}
}

// DefaultSeederConfig returns the defaults for the tracker's seeder. Every
// new piece crosses the seeder's link once, so the link must never idle:
// requests wait in line for a slot rather than be refused, and there are
// slots enough to send to many agents at once (each transfer gets only its
// fair share of an agent's download link, which the agents' own exchanges
// fill too).
func DefaultSeederConfig() Config {
	c := DefaultConfig()
	c.UploadQueue = 2 * time.Second
	c.MaxUploads = 16
	return c
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	if len(c.ListenAddrs) == 0 {
		return fmt.Errorf("%w: no listen address", ErrInvalidConfig)
	}
	for _, s := range c.ListenAddrs {
		a, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return fmt.Errorf("%w: listen address %q: %v", ErrInvalidConfig, s, err)
		}
		if !isTCP(a) {
			return fmt.Errorf("%w: listen address %q: only /ip4|ip6|dns…/tcp/<port> is supported", ErrInvalidConfig, s)
		}
	}
	switch {
	case c.Security != SecurityTLS && c.Security != SecurityNoise:
		return fmt.Errorf("%w: security %q: want %q or %q", ErrInvalidConfig, c.Security, SecurityTLS, SecurityNoise)
	case c.PSK != nil && len(c.PSK) != 32:
		return fmt.Errorf("%w: private network key of %d bytes, want 32", ErrInvalidConfig, len(c.PSK))
	case c.MaxUploads < 1:
		return fmt.Errorf("%w: max uploads %d", ErrInvalidConfig, c.MaxUploads)
	case c.UploadQueue < 0 || c.MaxQueued < 0:
		return fmt.Errorf("%w: negative upload queue", ErrInvalidConfig)
	case c.UploadQueue >= c.StallTimeout:
		return fmt.Errorf("%w: upload queue %s must be shorter than the stall timeout %s, when clients give up", ErrInvalidConfig, c.UploadQueue, c.StallTimeout)
	case c.UploadRate < 0 || c.DownloadRate < 0:
		return fmt.Errorf("%w: negative rate limit", ErrInvalidConfig)
	case c.MaxPeers < 1:
		return fmt.Errorf("%w: max peers %d", ErrInvalidConfig, c.MaxPeers)
	case c.RequestTimeout <= 0 || c.StallTimeout <= 0:
		return fmt.Errorf("%w: timeouts must be positive", ErrInvalidConfig)
	}
	return nil
}

// isTCP reports whether a is exactly a network address followed by /tcp.
func isTCP(a multiaddr.Multiaddr) bool {
	if len(a) != 2 || a[1].Protocol().Code != multiaddr.P_TCP {
		return false
	}
	switch a[0].Protocol().Code {
	case multiaddr.P_IP4, multiaddr.P_IP6, multiaddr.P_DNS, multiaddr.P_DNS4, multiaddr.P_DNS6:
		return true
	}
	return false
}
