package tracker

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim/grammar"
)

// Sentinels of the seed API (see codes in errors.go).
var (
	// ErrForbidden: the token is known but may not do this (a seed token
	// announcing, a cluster token creating a seed job).
	ErrForbidden = errors.New("tracker: forbidden")
	// ErrBusy: the tracker has as many seed jobs queued as it takes; retry
	// later.
	ErrBusy = errors.New("tracker: busy")
)

// Seed job and blob states.
const (
	JobResolving = "resolving" // reading the manifests
	JobFetching  = "fetching"  // the seeder fetches the blobs
	JobPreheat   = "preheating"
	JobDone      = "done"
	JobFailed    = "failed"

	BlobPending  = "pending"
	BlobFetching = "fetching"
	BlobDone     = "done"
	BlobFailed   = "failed"
)

// Seed API bounds.
const (
	MaxSeedImages    = 64
	MaxSeedPlatforms = 32
	MaxReplicas      = 64
	maxSeedJobBody   = 8 << 20
	maxImageRefLen   = 512
)

// SeedRequest is the body of POST /v1/seed.
type SeedRequest struct {
	// Images are references: [registry/]repository(:tag|@digest). Without a
	// registry, the tracker's default upstream.
	Images []string `json:"images"`
	// Platforms chooses the manifests of an index: "os/arch[/variant]";
	// empty or "all" takes every platform.
	Platforms []string `json:"platforms,omitempty"`
	// Replicas asks the tracker to place every blob on this many agents
	// besides the seeder before the job is done.
	Replicas int `json:"replicas,omitempty"`
	// Shard, set when the cluster runs tracker replicas, keeps the job to
	// the blobs this tracker owns (replica_seed.go).
	Shard *SeedShard `json:"shard,omitempty"`
}

// Validate checks a request as the server does.
func (r SeedRequest) Validate() error {
	if len(r.Images) == 0 || len(r.Images) > MaxSeedImages {
		return fmt.Errorf("%w: %d images, want 1 to %d", ErrInvalid, len(r.Images), MaxSeedImages)
	}
	for _, img := range r.Images {
		if _, err := ParseImage(img); err != nil {
			return err
		}
	}
	if err := r.Shard.validate(); err != nil {
		return err
	}
	if len(r.Platforms) > MaxSeedPlatforms {
		return fmt.Errorf("%w: %d platforms, at most %d", ErrInvalid, len(r.Platforms), MaxSeedPlatforms)
	}
	for _, p := range r.Platforms {
		if _, err := ParsePlatform(p); err != nil {
			return err
		}
	}
	if r.Replicas < 0 || r.Replicas > MaxReplicas {
		return fmt.Errorf("%w: replicas %d, want 0 to %d", ErrInvalid, r.Replicas, MaxReplicas)
	}
	return nil
}

// DecodeSeedRequest reads the body of POST /v1/seed strictly.
func DecodeSeedRequest(rd io.Reader) (SeedRequest, error) {
	var r SeedRequest
	if err := decodeStrict(rd, MaxRequestBody, &r); err != nil {
		return r, err
	}
	return r, r.Validate()
}

// ImageRef is a parsed image reference.
type ImageRef struct {
	Registry string // "" for the tracker's default upstream
	Repo     string
	Tag      string // one of Tag and Digest is set
	Digest   digest.Digest
}

// Ref is the tag or digest, as a manifest reference.
func (r ImageRef) Ref() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}

func (r ImageRef) String() string {
	s := r.Repo
	if r.Registry != "" {
		s = r.Registry + "/" + s
	}
	if r.Digest != "" {
		return s + "@" + r.Digest.String()
	}
	return s + ":" + r.Tag
}

// ParseImage reads [registry/]repository[:tag][@digest]; a first path
// component with a dot or a colon, or "localhost", is the registry. A
// reference with neither tag nor digest means :latest.
func ParseImage(s string) (ImageRef, error) {
	bad := func(why string) (ImageRef, error) {
		return ImageRef{}, fmt.Errorf("%w: image %q: %s", ErrInvalid, truncate(s), why)
	}
	if s == "" || len(s) > maxImageRefLen {
		return bad("empty or too long")
	}
	var r ImageRef
	rest := s
	if name, dg, ok := strings.Cut(rest, "@"); ok {
		d, err := digest.Parse(dg)
		if err != nil || ValidateDigest(d) != nil {
			return bad("digest must be sha256:<64 hex>")
		}
		r.Digest, rest = d, name
	}
	if first, after, ok := strings.Cut(rest, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		if !grammar.Registry(first) {
			return bad("registry is not host[:port]")
		}
		r.Registry, rest = first, after
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		r.Tag, rest = rest[i+1:], rest[:i]
		if !grammar.Tag(r.Tag) {
			return bad("tag")
		}
	}
	if !grammar.Repository(rest) {
		return bad("repository name")
	}
	r.Repo = rest
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

// Platform is os/arch[/variant].
type Platform struct{ OS, Arch, Variant string }

func (p Platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ParsePlatform reads os/arch[/variant], or "all" (the zero Platform).
func ParsePlatform(s string) (Platform, error) {
	if s == "all" {
		return Platform{}, nil
	}
	parts := strings.Split(s, "/")
	ok := len(parts) == 2 || len(parts) == 3
	for _, p := range parts {
		ok = ok && p != "" && len(p) <= 32 && printable(p)
	}
	if !ok {
		return Platform{}, fmt.Errorf("%w: platform %q: want os/arch[/variant] or all", ErrInvalid, truncate(s))
	}
	p := Platform{OS: parts[0], Arch: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// SeedJob is the answer to POST /v1/seed (202) and GET /v1/seed/{id}.
type SeedJob struct {
	ID       string `json:"id"`
	State    string `json:"state"` // JobResolving … JobFailed
	Error    string `json:"error,omitempty"`
	Replicas int    `json:"replicas,omitempty"`
	// Images as resolved: the manifests whose blobs are seeded.
	Images []SeedImage `json:"images"`
	Blobs  []SeedBlob  `json:"blobs"`
	// PinnedUntil: the seeder keeps the blobs from eviction until then.
	PinnedUntil time.Time `json:"pinnedUntil,omitzero"`
	Created     time.Time `json:"created"`
	Finished    time.Time `json:"finished,omitzero"`
}

// SeedImage is one requested image and the manifests it resolved to.
type SeedImage struct {
	Ref       string          `json:"ref"`
	Digest    digest.Digest   `json:"digest,omitempty"`
	Manifests []digest.Digest `json:"manifests,omitempty"` // the platforms' manifests of an index
	Error     string          `json:"error,omitempty"`
}

// SeedBlob is one blob of a job.
type SeedBlob struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	State  string        `json:"state"` // BlobPending … BlobFailed
	Bytes  int64         `json:"bytes"` // in the seeder's store
	// Holders are the live agents (not the seeder) holding the whole blob.
	Holders int    `json:"holders"`
	Error   string `json:"error,omitempty"`
}

// Complete reports whether every blob is in the seeder and on replicas
// agents: what `shoal seed --wait` waits for.
func (j *SeedJob) Complete() bool {
	if j.State == JobFailed || len(j.Blobs) == 0 {
		return false
	}
	for _, b := range j.Blobs {
		if b.State != BlobDone || b.Holders < j.Replicas {
			return false
		}
	}
	return true
}

// Settled reports whether the job will change no more by itself: done or
// failed.
func (j *SeedJob) Settled() bool { return j.State == JobDone || j.State == JobFailed }

func (j *SeedJob) validate() error {
	if j.ID == "" || len(j.ID) > 64 || !printable(j.ID) {
		return fmt.Errorf("%w: seed job id %q", ErrInvalid, truncate(j.ID))
	}
	switch j.State {
	case JobResolving, JobFetching, JobPreheat, JobDone, JobFailed:
	default:
		return fmt.Errorf("%w: seed job state %q", ErrInvalid, truncate(j.State))
	}
	for _, b := range j.Blobs {
		if err := ValidateDigest(b.Digest); err != nil {
			return err
		}
	}
	return nil
}
