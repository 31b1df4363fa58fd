package agent

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/swarm"
	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/p2p"
)

// Config configures an Agent.
type Config struct {
	// DataDir holds the content store (DataDir/store) and the agent's state.
	DataDir  string
	Store    store.Config // Store.Dir defaults to DataDir/store
	Upstream upstream.Config
	// TagTTL is how long a tag's resolution is reused before the upstream
	// is asked again. 0 asks on every request.
	TagTTL time.Duration
	// ManifestCacheBytes bounds the in-memory cache of manifests by digest.
	ManifestCacheBytes int64

	// Prefetch starts downloading an image's config and layers when a
	// runtime fetches its manifest.
	Prefetch bool

	// Tracker is the URL of the cluster's tracker; empty means no swarm:
	// every blob comes from the upstream.
	Tracker      string
	TrackerToken string
	P2P          p2p.Config
	Swarm        swarm.Config
	// Seeder makes this agent the tracker's seeder: it announces itself as
	// such and rations the copies of each piece it uploads.
	Seeder bool
}

// DefaultConfig returns the defaults of every part.
func DefaultConfig() Config {
	return Config{
		Store:              store.DefaultConfig(),
		Upstream:           upstream.DefaultConfig(),
		TagTTL:             5 * time.Second,
		ManifestCacheBytes: 64 << 20,
		Prefetch:           true,
		P2P:                p2p.DefaultConfig(),
		Swarm:              swarm.DefaultConfig(),
	}
}

// DefaultSeederConfig returns the defaults for the tracker's seeder. Every
// new piece crosses the seeder's link once, so the link must never idle:
// requests wait in line for a slot rather than be refused, and there are
// slots enough to send to many agents at once (each transfer gets only its
// fair share of an agent's download link, which the agents' own exchanges
// fill too).
func DefaultSeederConfig() Config {
	c := DefaultConfig()
	c.P2P.UploadQueue = 2 * time.Second
	c.P2P.MaxUploads = 16
	return c
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.DataDir == "" && c.Store.Dir == "" {
		return errors.New("agent: data-dir is required")
	}
	if c.TagTTL < 0 {
		return fmt.Errorf("agent: tag-ttl %s is negative", c.TagTTL)
	}
	if c.ManifestCacheBytes < 0 {
		return fmt.Errorf("agent: manifest cache of %d bytes", c.ManifestCacheBytes)
	}
	errs := []error{c.storeConfig().Validate(), c.Upstream.Validate()}
	if c.Tracker != "" {
		errs = append(errs, c.P2P.Validate(), c.Swarm.Validate())
	}
	return errors.Join(errs...)
}

func (c Config) storeConfig() store.Config {
	s := c.Store
	if s.Dir == "" {
		s.Dir = filepath.Join(c.DataDir, "store")
	}
	return s
}
