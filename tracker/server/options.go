package server

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the server's logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) {
		if l != nil {
			s.log = l
		}
	}
}

// WithRegisterer sets where a Server registers its metrics (default: a
// private registry nobody reads).
func WithRegisterer(r prometheus.Registerer) Option {
	return func(s *Server) { s.reg = r }
}

// WithClock sets the clock a Server uses for peer expiry and for its memory
// of seeding failures.
func WithClock(c Clock) Option {
	return func(s *Server) {
		if c != nil {
			s.clock = c
		}
	}
}

// WithSeed makes the handout's random choices derive from seed, so that a
// simulated rollout is repeated exactly (default: randomly seeded).
func WithSeed(seed uint64) Option {
	return func(s *Server) { s.seed = &seed }
}
