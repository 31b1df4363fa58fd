package p2p

import "github.com/libp2p/go-libp2p/core/host"

// LibP2P exposes the inner host so tests can speak raw, broken protocol.
func (h *Host) LibP2P() host.Host { return h.host }
