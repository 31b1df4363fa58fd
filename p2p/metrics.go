package p2p

import "github.com/prometheus/client_golang/prometheus"

// Result label values.
const (
	resultOK          = "ok"
	resultNoPiece     = "no_piece"
	resultUnknownBlob = "unknown_blob"
	resultBusy        = "busy"
	resultRationed    = "rationed"
	resultBadPiece    = "bad_piece"
	resultError       = "error"
)

type metrics struct {
	uploads        *prometheus.CounterVec
	uploadBytes    prometheus.Counter
	uploadsActive  prometheus.Gauge
	fetches        *prometheus.CounterVec
	downloadBytes  prometheus.Counter
	fetchSeconds   prometheus.Histogram
	watchesServed  prometheus.Gauge
	protocolErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, peers func() float64) (*metrics, error) {
	m := &metrics{
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_p2p_uploads_total",
			Help: "Piece requests served, by result.",
		}, []string{"result"}),
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_p2p_upload_bytes_total",
			Help: "Piece bytes sent to peers.",
		}),
		uploadsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_p2p_uploads_active",
			Help: "Piece uploads to peers in progress right now.",
		}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_p2p_fetches_total",
			Help: "Piece fetches from peers, by result.",
		}, []string{"result"}),
		downloadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_p2p_download_bytes_total",
			Help: "Piece bytes received from peers, verified or not.",
		}),
		fetchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shoal_p2p_fetch_duration_seconds",
			Help:    "Time to fetch and verify one piece, successful fetches only.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		watchesServed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shoal_p2p_watches_served_active",
			Help: "Have subscriptions served to peers right now.",
		}),
		protocolErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_p2p_protocol_errors_total",
			Help: "Streams reset because a peer broke the wire protocol.",
		}),
	}
	for _, c := range []prometheus.Collector{
		m.uploads, m.uploadBytes, m.uploadsActive, m.fetches, m.downloadBytes,
		m.fetchSeconds, m.watchesServed, m.protocolErrors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "shoal_p2p_peers",
			Help: "Peers with an open connection.",
		}, peers),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
