package registryshim

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// codeClientGone labels requests whose client went away before an answer
// (nginx's 499): no status was sent.
const codeClientGone = "499"

type metrics struct {
	requests *prometheus.CounterVec   // route, method, code
	bytes    *prometheus.CounterVec   // route
	aborted  *prometheus.CounterVec   // route
	duration *prometheus.HistogramVec // route
}

// newMetrics registers the handler's collectors with reg (none if nil). Two
// handlers given the same registerer share their collectors.
func newMetrics(reg prometheus.Registerer, log *slog.Logger) *metrics {
	return &metrics{
		requests: register(reg, log, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_registry_requests_total",
			Help: "Registry API requests answered, by route, method and HTTP status.",
		}, []string{"route", "method", "code"})),
		bytes: register(reg, log, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_registry_response_bytes_total",
			Help: "Response body bytes written, by route.",
		}, []string{"route"})),
		aborted: register(reg, log, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_registry_aborted_responses_total",
			Help: "Responses cut off after the status line because the body could not be read or written.",
		}, []string{"route"})),
		duration: register(reg, log, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shoal_registry_request_duration_seconds",
			Help: "Time from request to the end of the response, by route.",
			// 1 ms (a cached manifest) to ~4 min (a large blob from the swarm).
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"route"})),
	}
}

func register[C prometheus.Collector](reg prometheus.Registerer, log *slog.Logger, c C) C {
	if reg == nil {
		return c
	}
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	// New cannot fail; an unregistered collector still works, it is just not
	// exported.
	log.Warn("registryshim: metric not registered", "error", err)
	return c
}

func (m *metrics) observe(rt route, method string, rec *recorder, aborted bool, elapsed time.Duration) {
	label := rt.String()
	code := codeClientGone
	if rec.status != 0 {
		code = strconv.Itoa(rec.status)
	}
	switch method {
	case http.MethodGet, http.MethodHead:
	default:
		method = "other" // bounded label values
	}
	m.requests.WithLabelValues(label, method, code).Inc()
	m.bytes.WithLabelValues(label).Add(float64(rec.bytes))
	m.duration.WithLabelValues(label).Observe(elapsed.Seconds())
	if aborted {
		m.aborted.WithLabelValues(label).Inc()
	}
}

// recorder remembers the status and body size of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection to flush.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
