package store

import (
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option customises a Disk.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	registerer prometheus.Registerer
	// writeAt is the single point where ingest data reaches the filesystem;
	// tests replace it to inject faults such as ENOSPC.
	writeAt func(f *os.File, p []byte, off int64) (int, error)
	now     func() time.Time // WithClock (pin.go)
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithRegisterer registers the store's metrics with r (default: not registered).
func WithRegisterer(r prometheus.Registerer) Option {
	return func(o *options) { o.registerer = r }
}

func defaultOptions() options {
	return options{
		logger:  slog.New(slog.DiscardHandler),
		writeAt: func(f *os.File, p []byte, off int64) (int, error) { return f.WriteAt(p, off) },
	}
}
