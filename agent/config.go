package agent

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/upstream"
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
}

// DefaultConfig returns the defaults of every part.
func DefaultConfig() Config {
	return Config{
		Store:              store.DefaultConfig(),
		Upstream:           upstream.DefaultConfig(),
		TagTTL:             5 * time.Second,
		ManifestCacheBytes: 64 << 20,
	}
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
	return errors.Join(c.storeConfig().Validate(), c.Upstream.Validate())
}

func (c Config) storeConfig() store.Config {
	s := c.Store
	if s.Dir == "" {
		s.Dir = filepath.Join(c.DataDir, "store")
	}
	return s
}
