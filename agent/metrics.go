package agent

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	manifests   *prometheus.CounterVec
	blobs       *prometheus.CounterVec
	trackerDown prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		manifests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_agent_manifest_lookups_total",
			Help: "Manifest lookups by result: hit (cache), miss (asked upstream), stale (upstream unreachable, last answer served).",
		}, []string{"result"}),
		blobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_agent_blob_lookups_total",
			Help: "Blob lookups by result: hit (in the store, complete or downloading) or miss (download started or joined).",
		}, []string{"result"}),
		trackerDown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_agent_tracker_unavailable_total",
			Help: "Blob downloads that went straight to the upstream because the tracker could not be reached.",
		}),
	}
	r.MustRegister(m.manifests, m.blobs, m.trackerDown)
	return m
}
