package tracker

import (
	"log/slog"
	"net/http"
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
