package store

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of an ingest, the values of the result label.
const (
	resultCommitted      = "committed"
	resultDigestMismatch = "digest_mismatch"
	resultSizeMismatch   = "size_mismatch"
	resultNoSpace        = "no_space"
	resultCanceled       = "canceled"
	resultPartial        = "partial"
	resultError          = "error"
)

type metrics struct {
	size         prometheus.Gauge
	evictions    prometheus.Counter
	evictedBytes prometheus.Counter
	ingests      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		size: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_store_size_bytes",
			Help: "Bytes used by committed blobs and ingests.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_store_evictions_total",
			Help: "Blobs and idle partial ingests removed to free space.",
		}),
		evictedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_store_evicted_bytes_total",
			Help: "Bytes of blobs and partial ingests removed to keep the store under its capacity.",
		}),
		ingests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_store_ingests_total",
			Help: "Downloads into the store that ended, by result: committed, digest_mismatch, size_mismatch, no_space, canceled, partial (a range fill), error.",
		}, []string{"result"}),
	}
	for _, r := range []string{resultCommitted, resultDigestMismatch, resultSizeMismatch, resultNoSpace, resultCanceled, resultPartial, resultError} {
		m.ingests.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.size, m.evictions, m.evictedBytes, m.ingests} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("store: register metrics: %w", err)
		}
	}
	return m, nil
}
