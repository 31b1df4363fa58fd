package tracker

import (
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a Server.
type Option interface{ applyServer(*Server) }

// ClientOption configures a Client.
type ClientOption interface{ applyClient(*Client) }

// SharedOption configures a Server or a Client alike.
type SharedOption interface {
	Option
	ClientOption
}

type serverOption func(*Server)

func (o serverOption) applyServer(s *Server) { o(s) }

type clientOption func(*Client)

func (o clientOption) applyClient(c *Client) { o(c) }

type loggerOption struct{ log *slog.Logger }

func (o loggerOption) applyServer(s *Server) {
	if o.log != nil {
		s.log = o.log
	}
}

func (o loggerOption) applyClient(c *Client) {
	if o.log != nil {
		c.log = o.log
	}
}

// WithLogger sets the logger of a Server or a Client (default: discard).
func WithLogger(l *slog.Logger) SharedOption { return loggerOption{l} }

// WithRegisterer sets where a Server registers its metrics (default: a
// private registry nobody reads).
func WithRegisterer(r prometheus.Registerer) Option {
	return serverOption(func(s *Server) { s.reg = r })
}

// WithClock sets the clock a Server uses for peer expiry and for its memory
// of seeding failures.
func WithClock(c Clock) Option {
	return serverOption(func(s *Server) {
		if c != nil {
			s.clock = c
		}
	})
}

// WithHTTPClient sets a Client's HTTP client (for TLS). Its Timeout, if any,
// must exceed the tracker's MetaInfoWait or long-polls fail.
func WithHTTPClient(h *http.Client) ClientOption {
	return clientOption(func(c *Client) {
		if h != nil {
			c.http = h
		}
	})
}
