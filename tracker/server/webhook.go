package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim/grammar"
	"github.com/shoal-dev/shoal/tracker"
)

// Webhook sources, as metric labels.
const (
	sourceDistribution = "distribution"
	sourceHarbor       = "harbor"
)

// Content types of CNCF distribution's notification envelopes: v1 up to
// distribution 2.8, v2 from 3.0.
const (
	EventsV1MediaType = "application/vnd.docker.distribution.events.v1+json"
	EventsV2MediaType = "application/vnd.docker.distribution.events.v2+json"
)

// maxWebhookRefs bounds the references of one pushed manifest.
const maxWebhookRefs = 4096

// PushedImage is a manifest a registry reports pushed: what a webhook
// seeds.
type PushedImage struct {
	Registry string // host[:port] as the registry names itself
	Repo     string
	Tag      string // "" for a push by digest
	Digest   digest.Digest
	// Blobs are the manifest's references (config and layers) when the
	// registry sent them for an image manifest; nil: read the manifest.
	Blobs []tracker.Source
	Sizes []int64
}

// ParseDistribution reads a CNCF distribution notification envelope and
// returns the pushes of manifests and indexes in it; other events (pulls,
// deletes, blob pushes) are counted in ignored. A malformed envelope or
// event is an error wrapping tracker.ErrInvalid that says what is wrong.
func ParseDistribution(body []byte) (pushed []PushedImage, ignored int, err error) {
	var env struct {
		Events []struct {
			ID     string `json:"id"`
			Action string `json:"action"`
			Target struct {
				MediaType  string        `json:"mediaType"`
				Digest     digest.Digest `json:"digest"`
				Repository string        `json:"repository"`
				URL        string        `json:"url"`
				Tag        string        `json:"tag"`
				References []descriptor  `json:"references"`
			} `json:"target"`
			Request struct {
				Host string `json:"host"`
			} `json:"request"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, 0, fmt.Errorf("%w: envelope: %v", tracker.ErrInvalid, err)
	}
	if env.Events == nil {
		return nil, 0, fmt.Errorf("%w: envelope has no events list", tracker.ErrInvalid)
	}
	for i, ev := range env.Events {
		t := ev.Target
		if ev.Action != "push" || !isManifestType(t.MediaType) {
			ignored++
			continue
		}
		bad := func(why string) ([]PushedImage, int, error) {
			return nil, 0, fmt.Errorf("%w: event %d (%q): %s", tracker.ErrInvalid, i, truncateMsg(ev.ID), why)
		}
		if tracker.ValidateDigest(t.Digest) != nil {
			return bad("target.digest is not sha256:<64 hex>")
		}
		if !grammar.Repository(t.Repository) {
			return bad("target.repository is not a repository name")
		}
		if t.Tag != "" && !grammar.Tag(t.Tag) {
			return bad("target.tag is not a tag")
		}
		host := ev.Request.Host
		if host == "" {
			if u, err := url.Parse(t.URL); err == nil {
				host = u.Host
			}
		}
		if !grammar.Registry(host) {
			return bad("neither request.host nor target.url names the registry as host[:port]")
		}
		p := PushedImage{Registry: host, Repo: t.Repository, Tag: t.Tag, Digest: t.Digest}
		if len(t.References) > maxWebhookRefs {
			return bad(fmt.Sprintf("%d references, at most %d", len(t.References), maxWebhookRefs))
		}
		if t.MediaType == mtOCIManifest || t.MediaType == mtDockerManifest {
			for _, r := range t.References {
				if tracker.ValidateDigest(r.Digest) != nil || r.Size < 0 {
					return bad("a reference has no sha256 digest or a negative size")
				}
				p.Blobs = append(p.Blobs, tracker.Source{Registry: host, Repo: t.Repository, Digest: r.Digest})
				p.Sizes = append(p.Sizes, r.Size)
			}
		}
		pushed = append(pushed, p)
	}
	return pushed, ignored, nil
}

// harborData is the event data of a Harbor artifact event, the same in
// the default payload (under event_data) and in CloudEvents (under data).
type harborData struct {
	Resources []struct {
		Digest      digest.Digest `json:"digest"`
		Tag         string        `json:"tag"`
		ResourceURL string        `json:"resource_url"`
	} `json:"resources"`
	Repository struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		FullName  string `json:"repo_full_name"`
	} `json:"repository"`
}

// ParseHarbor reads a Harbor webhook payload, default or CloudEvents
// (told apart by "specversion"), and returns the artifacts of a
// PUSH_ARTIFACT (harbor.artifact.pushed) event; other event types are
// ignored (ignored = 1).
func ParseHarbor(body []byte) (pushed []PushedImage, ignored int, err error) {
	var p struct {
		SpecVersion string          `json:"specversion"`
		Type        string          `json:"type"`
		EventData   *harborData     `json:"event_data"`
		Data        json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, 0, fmt.Errorf("%w: payload: %v", tracker.ErrInvalid, err)
	}
	data := p.EventData
	switch {
	case p.SpecVersion != "":
		if p.Type != "harbor.artifact.pushed" {
			return nil, 1, nil
		}
		data = new(harborData)
		if err := json.Unmarshal(p.Data, data); err != nil {
			return nil, 0, fmt.Errorf("%w: CloudEvents data: %v", tracker.ErrInvalid, err)
		}
	case p.Type == "":
		return nil, 0, fmt.Errorf("%w: payload has no type", tracker.ErrInvalid)
	case p.Type != "PUSH_ARTIFACT":
		return nil, 1, nil
	case data == nil:
		return nil, 0, fmt.Errorf("%w: PUSH_ARTIFACT without event_data", tracker.ErrInvalid)
	}
	repo := data.Repository.FullName
	if repo == "" && data.Repository.Namespace != "" {
		repo = data.Repository.Namespace + "/" + data.Repository.Name
	}
	if !grammar.Repository(repo) {
		return nil, 0, fmt.Errorf("%w: repository %q is not a repository name", tracker.ErrInvalid, truncateMsg(repo))
	}
	if len(data.Resources) == 0 {
		return nil, 0, fmt.Errorf("%w: PUSH_ARTIFACT without resources", tracker.ErrInvalid)
	}
	seen := make(map[digest.Digest]bool)
	for i, r := range data.Resources {
		if tracker.ValidateDigest(r.Digest) != nil {
			return nil, 0, fmt.Errorf("%w: resource %d: digest is not sha256:<64 hex>", tracker.ErrInvalid, i)
		}
		host, _, _ := strings.Cut(r.ResourceURL, "/")
		if !grammar.Registry(host) {
			return nil, 0, fmt.Errorf("%w: resource %d: resource_url does not start with the registry's host[:port]", tracker.ErrInvalid, i)
		}
		if r.Tag != "" && !grammar.Tag(r.Tag) {
			return nil, 0, fmt.Errorf("%w: resource %d: tag is not a tag", tracker.ErrInvalid, i)
		}
		if seen[r.Digest] {
			continue
		}
		seen[r.Digest] = true
		pushed = append(pushed, PushedImage{Registry: host, Repo: repo, Tag: r.Tag, Digest: r.Digest})
	}
	return pushed, 0, nil
}

// webhookAuth admits seed tokens only, counting refusals.
func (s *Server) webhookAuth(source string, next http.HandlerFunc) http.Handler {
	inner := s.seedAuth(false, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.roleOf(r) != roleSeed {
			s.seedJobs.metrics.webhooks.WithLabelValues(source, "unauthorized").Inc()
		}
		inner.ServeHTTP(w, r)
	})
}

// WebhookResponse is the answer to a webhook: 202, the seed jobs started
// or found for it and how many events it ignored.
type WebhookResponse struct {
	Jobs    []string `json:"jobs"`
	Ignored int      `json:"ignored"`
}

func (s *Server) handleDistribution(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case EventsV1MediaType, EventsV2MediaType, "application/json":
	default:
		s.webhookMalformed(w, sourceDistribution, fmt.Errorf("%w: content type %q: want %s or %s", tracker.ErrInvalid, truncateMsg(mt), EventsV1MediaType, EventsV2MediaType))
		return
	}
	s.handleWebhook(w, r, sourceDistribution, ParseDistribution)
}

func (s *Server) handleHarbor(w http.ResponseWriter, r *http.Request) {
	s.handleWebhook(w, r, sourceHarbor, ParseHarbor)
}

func (s *Server) handleWebhook(w http.ResponseWriter, r *http.Request, source string, parse func([]byte) ([]PushedImage, int, error)) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, tracker.MaxRequestBody))
	if err != nil {
		s.webhookMalformed(w, source, requestError(err))
		return
	}
	pushed, ignored, err := parse(body)
	if err != nil {
		s.webhookMalformed(w, source, err)
		return
	}
	shard, err := s.webhookShard(r.Context(), r, body)
	if errors.Is(err, tracker.ErrInvalid) {
		s.webhookMalformed(w, source, err)
		return
	}
	if err != nil {
		s.log.Warn("webhook not passed on to every tracker replica", "source", source, "error", err)
		s.writeError(w, err)
		return
	}
	resp := WebhookResponse{Jobs: []string{}, Ignored: ignored}
	s.seedJobs.metrics.webhooks.WithLabelValues(source, "ignored").Add(float64(ignored))
	for _, p := range pushed {
		id, result, err := s.seedPushed(p, shard)
		if err != nil {
			// The registry retries a failed delivery: 503 and 429 are
			// worth it, the rest of the envelope waits for it.
			s.writeError(w, err)
			return
		}
		s.seedJobs.metrics.webhooks.WithLabelValues(source, result).Inc()
		if id != "" {
			resp.Jobs = append(resp.Jobs, id)
		} else {
			resp.Ignored++
		}
	}
	s.writeJSON(w, http.StatusAccepted, resp)
}

func (s *Server) webhookMalformed(w http.ResponseWriter, source string, err error) {
	s.seedJobs.metrics.webhooks.WithLabelValues(source, "malformed").Inc()
	s.log.Warn("malformed webhook", "source", source, "error", err)
	s.writeError(w, err)
}

// seedPushed starts (or finds) the seed job of a pushed manifest, unless
// the tracker's patterns or registries leave it out. result is the metric
// label: seeded, duplicate or ignored.
// With shard, the job takes only the blobs it owns (replica_webhook.go).
func (s *Server) seedPushed(p PushedImage, shard *tracker.SeedShard) (id, result string, err error) {
	j := s.seedJobs
	j.mu.Lock()
	res := j.res
	j.mu.Unlock()
	if res == nil {
		return "", "", fmt.Errorf("%w: this tracker runs no seed jobs", tracker.ErrUnavailable)
	}
	if !res.Knows(p.Registry) {
		s.log.Info("webhook event for a registry the tracker does not fetch from: ignored", "registry", p.Registry, "repo", p.Repo, "digest", p.Digest)
		return "", "ignored", nil
	}
	if !matchAny(s.cfg.WebhookRepos, p.Repo) || (len(s.cfg.WebhookTags) > 0 && !matchAny(s.cfg.WebhookTags, p.Tag)) {
		s.log.Debug("webhook event filtered out", "repo", p.Repo, "tag", p.Tag, "digest", p.Digest)
		return "", "ignored", nil
	}
	ref := tracker.ImageRef{Registry: p.Registry, Repo: p.Repo, Digest: p.Digest}
	nj := &job{
		req:     tracker.SeedRequest{Images: []string{ref.String()}, Replicas: s.cfg.WebhookReplicas, Shard: shard},
		refs:    []tracker.ImageRef{ref},
		patient: true,
	}
	for i, b := range p.Blobs {
		nj.given = append(nj.given, blobSpec{src: b, size: p.Sizes[i]})
	}
	got, dup, err := j.create(nj)
	switch {
	case errors.Is(err, tracker.ErrInvalid):
		return "", "ignored", nil
	case err != nil:
		return "", "", err
	case dup:
		return got.id, "duplicate", nil
	}
	s.log.Info("webhook: seeding", "registry", p.Registry, "repo", p.Repo, "tag", p.Tag, "digest", p.Digest, "job", got.id)
	return got.id, "seeded", nil
}

// matchAny reports whether name matches one of patterns (path.Match
// globs); no patterns match everything.
func matchAny(patterns []string, name string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
