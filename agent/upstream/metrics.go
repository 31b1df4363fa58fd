package upstream

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric kinds. HEADs of manifests and blobs share the "head" label value;
// the split is kept internally so a 404 maps to the right OCI code.
const (
	kindManifest     = "manifest"
	kindBlob         = "blob"
	kindTags         = "tags"
	kindHeadManifest = "head-manifest"
	kindHeadBlob     = "head-blob"
)

func metricKind(kind string) string {
	switch kind {
	case kindHeadManifest, kindHeadBlob:
		return "head"
	}
	return kind
}

type metrics struct {
	requests *prometheus.CounterVec
	bytes    prometheus.Counter
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_upstream_requests_total",
			Help: "Requests to upstream registries, by kind and HTTP status (\"error\" when no answer came).",
		}, []string{"kind", "code"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_upstream_bytes_total",
			Help: "Blob bytes received from upstream registries, including bytes skipped for a Range the upstream ignored.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "shoal_upstream_request_duration_seconds",
			Help:    "Time until an upstream registry answered with headers, including a first request's ping and token exchange.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe records one request; code 0 means the upstream never answered.
func (m *metrics) observe(kind string, code int, since time.Time) {
	label := "error"
	if code != 0 {
		label = strconv.Itoa(code)
	}
	k := metricKind(kind)
	m.requests.WithLabelValues(k, label).Inc()
	m.duration.WithLabelValues(k).Observe(time.Since(since).Seconds())
}
