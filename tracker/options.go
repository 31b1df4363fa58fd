package tracker

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Option configures a Client.
type Option func(*Client)

// WithLogger sets the client's logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *Client) {
		if l != nil {
			c.log = l
		}
	}
}

// WithHTTPClient sets the client's HTTP client (for TLS). Its Timeout, if
// any, must exceed the tracker's MetaInfoWait or long-polls fail.
func WithHTTPClient(h *http.Client) Option {
	return func(c *Client) {
		if h != nil {
			c.http = h
		}
	}
}

// WithKey makes the client sign its announces with key, the libp2p key of
// the peer it announces (see SignatureHeader). A tracker refuses announces
// that are unsigned or signed by another peer's key.
func WithKey(key crypto.PrivKey) Option {
	return func(c *Client) { c.key = key }
}

// WithClock sets the clock that dates signed announces (default: the system
// clock); tests pass the tracker's fake clock.
func WithClock(c interface{ Now() time.Time }) Option {
	return func(cl *Client) {
		if c != nil {
			cl.now = c.Now
		}
	}
}
