package agent

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	manifests   *prometheus.CounterVec
	blobs       *prometheus.CounterVec
	trackerDown prometheus.Counter
	confirms    *prometheus.CounterVec
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		manifests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_agent_manifest_lookups_total",
			Help: "Manifest lookups by result: hit (cache), miss (asked upstream), stale (upstream unreachable, last answer served).",
		}, []string{"result"}),
		blobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_agent_blob_lookups_total",
			Help: "Blob lookups by result: hit (in the store, complete or downloading), miss (download started or joined), range (a Range read of a blob the store lacks: only its pieces fetched).",
		}, []string{"result"}),
		trackerDown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_agent_tracker_unavailable_total",
			Help: "Blob downloads that went straight to the upstream because the tracker could not be reached.",
		}),
		confirms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_agent_confirmations_total",
			Help: "Checks that the upstream confirmed a repository holds a manifest or blob before it is served, by result: cached (confirmed within auth-ttl), upstream (a HEAD confirmed it), stale (upstream unreachable, an expired confirmation served), refused (the upstream said no).",
		}, []string{"result"}),
	}
	r.MustRegister(m.manifests, m.blobs, m.trackerDown, m.confirms)
	return m
}
