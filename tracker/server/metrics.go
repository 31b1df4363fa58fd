package server

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	announces     prometheus.Counter
	refused       *prometheus.CounterVec
	handouts      prometheus.Counter
	handoutPeers  prometheus.Histogram
	peers         prometheus.Gauge
	seeds         *prometheus.CounterVec
	metaInfoCalls *prometheus.CounterVec
}

// Result label values. Never a digest or a peer ID.
const (
	resultOK          = "ok"
	resultPending     = "pending"
	resultNotFound    = "not_found"
	resultUnavailable = "unavailable"
	resultInvalid     = "invalid"
	resultCanceled    = "canceled"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_tracker_announces_refused_total",
			Help: "Announces refused although well-formed, by reason: seeder (an agent claiming to be one: only the tracker's own seeder, in process, is), unsigned, stale, no_public_key, bad_signature (forged, or another peer's ID), bad_session; piece_policy counts announces of agents of another piece policy, listed but with their blobs left out.",
		}, []string{"reason"}),
		announces: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_tracker_announces_total",
			Help: "Announces accepted from agents (and the seeder): each lists every blob a peer holds or downloads.",
		}),
		handouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_tracker_handouts_total",
			Help: "Lists of peers holding a blob handed out to agents that asked.",
		}),
		handoutPeers: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_tracker_handout_peers",
			Help:    "Peers in one handout: few while a blob is new to the swarm.",
			Buckets: []float64{0, 1, 2, 5, 10, 20, 50, 100, 200},
		}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_tracker_peers",
			Help: "Known (peer, blob) pairs: how many blob copies, whole or partial, live peers announce.",
		}),
		seeds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_tracker_seeds_total",
			Help: "Seedings of a blob from the origin, by result.",
		}, []string{"result"}),
		metaInfoCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_tracker_metainfo_requests_total",
			Help: "Metainfo requests from agents, by result: ok, pending (seeding, nothing known yet), not_found, unavailable, invalid, canceled.",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.announces, m.refused, m.handouts, m.handoutPeers, m.peers, m.seeds, m.metaInfoCalls} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("tracker: register metrics: %w", err)
		}
	}
	return m, nil
}
