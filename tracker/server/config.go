package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/shoal-dev/shoal/tracker"
)

// Config configures a Server.
type Config struct {
	// Tokens are the cluster tokens agents may send as "Authorization:
	// Bearer"; at least one. Several are accepted at once so that a token
	// can be rotated without downtime. Compared in constant time.
	Tokens []string
	// AnnounceInterval is told to agents: how often they announce.
	AnnounceInterval time.Duration
	// PeerTTL: a (peer, blob) not re-announced within this is forgotten.
	PeerTTL time.Duration
	// MaxAnnounceRate is the announces a second the tracker asks of its
	// whole swarm at most: past AnnounceInterval × MaxAnnounceRate live
	// peers the interval it tells (and PeerTTL with it) grows with their
	// number (interval.go). 0 keeps AnnounceInterval whatever the size.
	MaxAnnounceRate int
	// MaxHandout bounds the peers of one handout.
	MaxHandout int
	// SeedTimeout bounds one seeding of a blob from the origin.
	SeedTimeout time.Duration
	// MetaInfoWait bounds one metainfo long-poll.
	MetaInfoWait time.Duration
	// SeedErrorTTL is how long a failed seeding is answered from memory
	// before the next demand retries the origin, so a storm of askers does
	// not hammer it.
	SeedErrorTTL time.Duration
	// MaxSeeding bounds the seedings under way at once; a demand beyond
	// answers 503 (agents retry) rather than open unbounded origin fetches.
	MaxSeeding int
	// MaxInfos bounds the metainfos (and remembered seeding failures) kept
	// in memory; the least recently asked are dropped first.
	MaxInfos int
	// TLS is configured by the caller on the http.Server.

	// SeedTokens may create and read seed jobs and post webhooks, and do
	// nothing else; none: only the in-process API (CreateSeedJob) seeds.
	SeedTokens []string
	// SeedPinTTL is how long a seed job keeps its blobs in the seeder's
	// store, safe from eviction, after it fetched them.
	SeedPinTTL time.Duration
	// MaxSeedFetches bounds the blobs seed jobs fetch at once.
	MaxSeedFetches int
	// MaxSeedJobs bounds the seed jobs under way; a new one beyond is
	// refused with 429.
	MaxSeedJobs int
	// MaxSeedJobsKept bounds the settled jobs remembered for GET.
	MaxSeedJobsKept int
	// WebhookRepos and WebhookTags filter webhook pushes by path.Match
	// patterns of the repository and the tag; empty lets everything in
	// (with WebhookTags set, a push without a tag is left out).
	WebhookRepos, WebhookTags []string
	// WebhookReplicas is the replicas of a webhook's seed job.
	WebhookReplicas int
}

// DefaultConfig returns the defaults. Tokens are left empty: the caller must
// set them.
func DefaultConfig() Config {
	return Config{
		AnnounceInterval: 3 * time.Second,
		PeerTTL:          9 * time.Second,
		MaxAnnounceRate:  2000,
		MaxHandout:       50,
		SeedTimeout:      30 * time.Minute,
		MetaInfoWait:     10 * time.Second,
		SeedErrorTTL:     5 * time.Second,
		MaxSeeding:       64,
		MaxInfos:         10_000,
		SeedPinTTL:       time.Hour,
		MaxSeedFetches:   8,
		MaxSeedJobs:      64,
		MaxSeedJobsKept:  1000,
	}
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if len(c.Tokens) == 0 {
		errs = append(errs, errors.New("token is required"))
	}
	for _, tok := range c.Tokens {
		if err := tracker.ValidateToken(tok); err != nil {
			errs = append(errs, err)
			break
		}
	}
	if c.AnnounceInterval <= 0 {
		errs = append(errs, fmt.Errorf("announce interval %s must be positive", c.AnnounceInterval))
	}
	if c.PeerTTL < c.AnnounceInterval {
		errs = append(errs, fmt.Errorf("peer TTL %s shorter than the announce interval %s", c.PeerTTL, c.AnnounceInterval))
	}
	if c.MaxAnnounceRate < 0 {
		errs = append(errs, fmt.Errorf("max announce rate %d must not be negative", c.MaxAnnounceRate))
	}
	if c.MaxHandout < 1 {
		errs = append(errs, fmt.Errorf("max handout %d must be at least 1", c.MaxHandout))
	}
	if c.SeedTimeout <= 0 {
		errs = append(errs, fmt.Errorf("seed timeout %s must be positive", c.SeedTimeout))
	}
	if c.MetaInfoWait <= 0 {
		errs = append(errs, fmt.Errorf("metainfo wait %s must be positive", c.MetaInfoWait))
	}
	if c.SeedErrorTTL < 0 {
		errs = append(errs, fmt.Errorf("seed error TTL %s must not be negative", c.SeedErrorTTL))
	}
	if c.MaxSeeding < 1 {
		errs = append(errs, fmt.Errorf("max seeding %d must be at least 1", c.MaxSeeding))
	}
	if c.MaxInfos < 1 {
		errs = append(errs, fmt.Errorf("max infos %d must be at least 1", c.MaxInfos))
	}
	errs = append(errs, c.validateSeed()...)
	if len(errs) > 0 {
		return fmt.Errorf("tracker: config: %w", errors.Join(errs...))
	}
	return nil
}
