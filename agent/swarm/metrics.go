package swarm

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	bytes          *prometheus.CounterVec
	pieces         *prometheus.CounterVec
	fallbacks      prometheus.Counter
	announceErrors prometheus.Counter
	peersDropped   prometheus.Counter
}

func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_swarm_received_bytes_total",
			Help: "Blob bytes received, by source: peer (another agent), seeder, origin.",
		}, []string{"source"}),
		pieces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_swarm_pieces_total",
			Help: "Piece fetches by result: verified, rejected (hash mismatch), failed (refused, timed out, peer gone).",
		}, []string{"result"}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_swarm_origin_fallbacks_total",
			Help: "Downloads that stalled in the swarm and finished from the origin.",
		}),
		announceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_swarm_announce_errors_total",
			Help: "Announces the tracker did not accept or answer.",
		}),
		peersDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_swarm_peers_dropped_total",
			Help: "Peers dropped from a download for sending a piece that did not match its hash.",
		}),
	}
	r.MustRegister(m.bytes, m.pieces, m.fallbacks, m.announceErrors, m.peersDropped)
	return m
}
