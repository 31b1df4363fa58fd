package tracker

import (
	"context"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"
)

// Status is the answer to GET /v1/status: what the tracker knows now, for
// an operator (`shoal status --tracker`, the status page), not for agents.
type Status struct {
	Time time.Time `json:"time"`
	// Swarms are the blobs some live peer holds or the seeder is fetching,
	// by digest; at most MaxStatusSwarms, the rest counted in
	// SwarmsOmitted.
	Swarms        []SwarmStatus `json:"swarms"`
	SwarmsOmitted int           `json:"swarmsOmitted,omitempty"`
	// Agents are the peers whose last announce is younger than the peer
	// TTL, the seeder among them (Seeder set once it holds a blob: the
	// tracker learns who is the seeder from its holdings).
	Agents []AgentStatus `json:"agents"`
	// SeedJobs are the seed jobs the tracker runs, if it runs any.
	SeedJobs []SeedJobStatus `json:"seedJobs,omitempty"`
}

// MaxStatusSwarms bounds the swarms of one Status.
const MaxStatusSwarms = 1000

// SwarmStatus is one blob's swarm.
type SwarmStatus struct {
	Digest    digest.Digest `json:"digest"`
	SizeBytes int64         `json:"sizeBytes,omitempty"` // 0: no metainfo known yet
	Holders   int           `json:"holders"`             // live peers holding a piece or more, the seeder too
	Complete  int           `json:"complete"`            // of them, those holding the whole blob
	Seeding   bool          `json:"seeding"`             // the seeder is fetching it from the origin now
}

// AgentStatus is one live peer.
type AgentStatus struct {
	ID         string  `json:"id"`
	Seeder     bool    `json:"seeder,omitempty"`
	Blobs      int     `json:"blobs"`                  // blobs in its last announce
	Complete   int     `json:"complete"`               // of them, those it holds whole
	AgeSeconds float64 `json:"lastAnnounceAgeSeconds"` // since its last announce
}

// SeedJobStatus is one seed job: blobs the tracker was asked to fetch
// ahead of a rollout.
type SeedJobStatus struct {
	ID         string `json:"id"`
	Image      string `json:"image,omitempty"`
	State      string `json:"state"`
	BlobsDone  int    `json:"blobsDone"`
	BlobsTotal int    `json:"blobsTotal"`
	Error      string `json:"error,omitempty"`
}

// maxStatusBody bounds a status answer: MaxStatusSwarms swarms and a few
// thousand agents.
const maxStatusBody = 8 << 20

// Status asks the tracker what it knows now (GET /v1/status).
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, nil, maxStatusBody, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
