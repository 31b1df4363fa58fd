package agent

import (
	"fmt"
	"time"
)

// Config configures an Agent.
type Config struct {
	// TagTTL is how long a tag's resolution is reused before the upstream
	// is asked again. 0 asks on every request.
	TagTTL time.Duration
	// ManifestCacheBytes bounds the in-memory cache of manifests by digest.
	ManifestCacheBytes int64
	// Prefetch starts downloading an image's config and layers when a
	// runtime fetches its manifest.
	Prefetch bool
	// AuthTTL is how long the upstream's confirmation that a repository
	// holds a manifest or blob is trusted before the upstream is asked
	// again (see confirm.go).
	AuthTTL time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		TagTTL:             5 * time.Second,
		ManifestCacheBytes: 64 << 20,
		Prefetch:           true,
		AuthTTL:            10 * time.Minute,
	}
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if c.TagTTL < 0 {
		return fmt.Errorf("agent: tag-ttl %s is negative", c.TagTTL)
	}
	if c.AuthTTL <= 0 {
		return fmt.Errorf("agent: auth-ttl %s must be positive", c.AuthTTL)
	}
	if c.ManifestCacheBytes < 0 {
		return fmt.Errorf("agent: manifest cache of %d bytes", c.ManifestCacheBytes)
	}
	return nil
}
