package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/p2p"
)

// Status is what an agent answers on GET /v1/status: a snapshot for an
// operator (`shoal status --agent`), not a protocol. Byte counts are since
// the agent started.
type Status struct {
	Peer      string           `json:"peer,omitempty"` // peer ID; empty without a swarm
	Zone      string           `json:"zone,omitempty"` // the zone it announces (--zone); empty: none
	Time      time.Time        `json:"time"`
	Store     StoreStatus      `json:"store"`
	Downloads []DownloadStatus `json:"downloads"`
	Received  ReceivedStatus   `json:"received"`
	Uploaded  int64            `json:"uploadedBytes"` // piece bytes sent to peers
	Peers     int              `json:"peers"`         // peers with an open connection
	Rates     RatesStatus      `json:"rates"`
	Tracker   *TrackerStatus   `json:"tracker,omitempty"` // nil: no tracker configured
}

// StoreStatus is the content store's use.
type StoreStatus struct {
	UsedBytes     int64 `json:"usedBytes"`     // committed blobs and ingests at full size
	CapacityBytes int64 `json:"capacityBytes"` // 0: unlimited
	Blobs         int   `json:"blobs"`         // committed blobs
}

// DownloadStatus is one blob the swarm is downloading now.
type DownloadStatus struct {
	Digest    digest.Digest `json:"digest"`
	SizeBytes int64         `json:"sizeBytes"`
	Pieces    int           `json:"pieces"`
	Have      int           `json:"have"`  // pieces verified and stored
	Peers     int           `json:"peers"` // peers followed for it
}

// ReceivedStatus counts the blob bytes received, by source.
type ReceivedStatus struct {
	Peers  int64 `json:"peersBytes"`
	Seeder int64 `json:"seederBytes"`
	Origin int64 `json:"originBytes"`
}

// RatesStatus are the transfer rates over the last WindowSeconds.
type RatesStatus struct {
	UploadBytesPerSecond   float64 `json:"uploadBytesPerSecond"`   // piece bytes sent to peers
	DownloadBytesPerSecond float64 `json:"downloadBytesPerSecond"` // blob bytes received from any source
	WindowSeconds          float64 `json:"windowSeconds"`          // 0: too early to tell
}

// TrackerStatus says whether the tracker answers its health probe.
type TrackerStatus struct {
	URL       string `json:"url"`
	Reachable bool   `json:"reachable"` // one replica at least answers
	Error     string `json:"error,omitempty"`
	// Replicas are the tracker replicas known now, with several (or a
	// dns+ name); empty with one tracker, or none known yet.
	Replicas []ReplicaStatus `json:"replicas,omitempty"`
}

// ReplicaStatus is one tracker replica as this agent sees it.
type ReplicaStatus struct {
	Name    string `json:"name"` // as agents rank it: the URL, or address:port of a dns+ name
	Answers bool   `json:"answers"`
	Error   string `json:"error,omitempty"` // of its health probe
	// PassedOver: the agent skips it now, after a request got no answer;
	// its digests go to the next replica meanwhile.
	PassedOver bool `json:"passedOver,omitempty"`
	// DownSince is when its current silence began; nil once it answers
	// the agent's requests.
	DownSince *time.Time `json:"downSince,omitempty"`
	// OwnedBlobs counts the node's blobs whose requests go to it now.
	OwnedBlobs int `json:"ownedBlobs"`
}

// ReplicaViewer is what a status report asks of a set of tracker replicas
// (cmd/shoal adapts *tracker.Replicas): each replica, with how many of
// digests it owns now.
type ReplicaViewer interface {
	ReplicaStatus(ctx context.Context, digests []digest.Digest) []ReplicaStatus
}

// Pinger is what a status report asks of the tracker (*tracker.Client).
type Pinger interface {
	Ping(ctx context.Context) error
}

// HostStats is what a status report asks of the peer transport (*p2p.Host).
type HostStats interface {
	Stats() p2p.Stats
}

// StatusParts are the parts of a node a Reporter reads besides the agent;
// each may be left empty.
type StatusParts struct {
	Peer       string    // the node's peer ID; empty without a swarm
	Capacity   int64     // the store's capacity in bytes (0: unlimited)
	Host       HostStats // nil without a swarm
	Tracker    Pinger    // nil without a tracker
	TrackerURL string
	Replicas   ReplicaViewer    // nil with a single tracker
	Zone       string           // the node's zone
	Now        func() time.Time // default time.Now
}

// rateWindow is the span the rates are measured over.
const rateWindow = 10 * time.Second

// trackerProbeTimeout bounds the health probe of one status request.
const trackerProbeTimeout = 2 * time.Second

// Reporter makes an agent's status reports. It only reads: the counters of
// the agent, store, swarm and host, and the tracker's health probe. Run
// samples the counters once a second for the rates.
type Reporter struct {
	a     *Agent
	parts StatusParts

	mu      sync.Mutex
	samples []rateSample // oldest first, spanning at most rateWindow
}

type rateSample struct {
	at       time.Time
	up, down int64
}

// NewReporter returns a Reporter of a with parts.
func NewReporter(a *Agent, parts StatusParts) *Reporter {
	if parts.Now == nil {
		parts.Now = time.Now
	}
	return &Reporter{a: a, parts: parts}
}

// Run samples the transfer counters every second until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	r.sample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.sample()
		}
	}
}

// counters returns the bytes uploaded and received so far.
func (r *Reporter) counters() (up, down int64) {
	st := r.a.Stats()
	if r.parts.Host != nil {
		up = r.parts.Host.Stats().UploadBytes
	}
	return up, st.Peer + st.Seeder + st.Origin
}

// sample records the counters now and returns the rates against the
// oldest sample kept, at most rateWindow old.
func (r *Reporter) sample() RatesStatus {
	up, down := r.counters()
	now := r.parts.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	// One sample a second at most, so that frequent requests do not grow
	// the list; the rates are still taken against the counters now.
	if len(r.samples) == 0 || now.Sub(r.samples[len(r.samples)-1].at) >= time.Second {
		r.samples = append(r.samples, rateSample{at: now, up: up, down: down})
	}
	drop := 0
	for drop < len(r.samples)-1 && now.Sub(r.samples[drop].at) > rateWindow {
		drop++
	}
	r.samples = r.samples[drop:]
	first := r.samples[0]
	span := now.Sub(first.at).Seconds()
	if span <= 0 {
		return RatesStatus{}
	}
	return RatesStatus{
		UploadBytesPerSecond:   float64(up-first.up) / span,
		DownloadBytesPerSecond: float64(down-first.down) / span,
		WindowSeconds:          span,
	}
}

// Status reports the agent now; ctx bounds the tracker's probe.
func (r *Reporter) Status(ctx context.Context) Status {
	st := Status{Peer: r.parts.Peer, Zone: r.parts.Zone, Time: r.parts.Now().UTC(), Downloads: []DownloadStatus{}}
	st.Store.UsedBytes = r.a.store.Usage()
	st.Store.CapacityBytes = r.parts.Capacity
	var held []digest.Digest // for the replicas' shares
	r.a.store.Walk(ctx, func(info store.Info) error {
		st.Store.Blobs++
		if r.parts.Replicas != nil {
			held = append(held, info.Digest)
		}
		return nil
	})
	if r.a.swarm != nil {
		for _, d := range r.a.swarm.Snapshot() {
			st.Downloads = append(st.Downloads, DownloadStatus{Digest: d.Digest, SizeBytes: d.Size, Pieces: d.Pieces, Have: d.Have, Peers: d.Peers})
		}
	}
	recv := r.a.Stats()
	st.Received = ReceivedStatus{Peers: recv.Peer, Seeder: recv.Seeder, Origin: recv.Origin}
	if h := r.parts.Host; h != nil {
		hs := h.Stats()
		st.Peers, st.Uploaded = hs.Peers, hs.UploadBytes
	}
	st.Rates = r.sample()
	if r.parts.Tracker != nil {
		pctx, cancel := context.WithTimeout(ctx, trackerProbeTimeout)
		err := r.parts.Tracker.Ping(pctx)
		cancel()
		st.Tracker = &TrackerStatus{URL: r.parts.TrackerURL, Reachable: err == nil}
		if err != nil {
			st.Tracker.Error = err.Error()
		}
		if r.parts.Replicas != nil {
			pctx, cancel := context.WithTimeout(ctx, trackerProbeTimeout)
			st.Tracker.Replicas = r.parts.Replicas.ReplicaStatus(pctx, held)
			cancel()
		}
	}
	return st
}

// Handler serves GET /v1/status as JSON.
func (r *Reporter) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := json.Marshal(r.Status(req.Context()))
		if err != nil {
			http.Error(w, "encoding the status failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(append(body, '\n'))
	})
}
