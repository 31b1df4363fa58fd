package p2p

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Stats is what a host has moved so far and how many peers it is connected
// to, for status reports; rates are taken from two of them.
type Stats struct {
	Peers         int   // peers with an open connection
	UploadBytes   int64 // piece bytes sent to peers
	DownloadBytes int64 // piece bytes received from peers
}

// Stats reads the host's counters.
func (h *Host) Stats() Stats {
	return Stats{
		Peers:         len(h.host.Network().Peers()),
		UploadBytes:   counterValue(h.m.uploadBytes),
		DownloadBytes: counterValue(h.m.downloadBytes),
	}
}

func counterValue(c prometheus.Counter) int64 {
	var m dto.Metric
	if c.Write(&m) != nil {
		return 0
	}
	return int64(m.GetCounter().GetValue())
}
