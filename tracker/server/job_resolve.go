package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/tracker"
)

// Manifest media types a seed job reads.
const (
	mtOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mtOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
)

// isManifestType reports whether mt is an image manifest or an index a job
// can seed.
func isManifestType(mt string) bool {
	switch mt {
	case mtOCIIndex, mtOCIManifest, mtDockerList, mtDockerManifest:
		return true
	}
	return false
}

type descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	Platform  *struct {
		OS      string `json:"os"`
		Arch    string `json:"architecture"`
		Variant string `json:"variant"`
	} `json:"platform,omitempty"`
}

type manifestBody struct {
	MediaType string       `json:"mediaType"`
	Config    *descriptor  `json:"config"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"`
}

// missingRetries is how often a patient job (from a webhook) asks again for
// a manifest the registry does not serve yet, a second apart.
const missingRetries = 10

// resolve reads every image of a job down to its blobs: an index to the
// manifests of the job's platforms (all but unknown/unknown, the
// attestations, when none are given), a manifest to its config and layers.
// Blobs repeated across images are listed once.
func (j *jobs) resolve(ctx context.Context, nj *job) ([]tracker.SeedImage, []blobSpec, error) {
	var plats []tracker.Platform
	for _, p := range nj.req.Platforms {
		pl, _ := tracker.ParsePlatform(p) // validated
		if pl == (tracker.Platform{}) {
			plats = nil // "all"
			break
		}
		plats = append(plats, pl)
	}
	seen := make(map[digest.Digest]bool)
	var specs []blobSpec
	add := func(ref tracker.ImageRef, d *descriptor) error {
		if err := tracker.ValidateDigest(d.Digest); err != nil {
			return err
		}
		if !seen[d.Digest] {
			seen[d.Digest] = true
			specs = append(specs, blobSpec{src: tracker.Source{Registry: ref.Registry, Repo: ref.Repo, Digest: d.Digest}, size: d.Size})
		}
		return nil
	}
	images := make([]tracker.SeedImage, len(nj.refs))
	for i, ref := range nj.refs {
		img := &images[i]
		img.Ref = ref.String()
		fail := func(err error) ([]tracker.SeedImage, []blobSpec, error) {
			img.Error = truncateMsg(err.Error())
			return images, nil, fmt.Errorf("image %s: %w", ref, err)
		}
		if !j.res.Knows(ref.Registry) {
			return fail(fmt.Errorf("%w: registry %q is not configured on the tracker (--upstream, --registry)", tracker.ErrForbidden, ref.Registry))
		}
		mt, dg, body, err := j.manifest(ctx, ref, ref.Ref(), nj.patient)
		if err != nil {
			return fail(err)
		}
		img.Digest = dg
		m, err := parseManifest(mt, body)
		if err != nil {
			return fail(err)
		}
		children := []*manifestBody{m}
		if m.Config == nil {
			children = children[:0]
			for _, d := range m.Manifests {
				if !wanted(d, plats) {
					continue
				}
				if err := tracker.ValidateDigest(d.Digest); err != nil {
					return fail(err)
				}
				cmt, _, cbody, err := j.manifest(ctx, ref, d.Digest.String(), nj.patient)
				if err != nil {
					return fail(fmt.Errorf("manifest %s: %w", d.Digest, err))
				}
				cm, err := parseManifest(cmt, cbody)
				if err != nil || cm.Config == nil {
					return fail(fmt.Errorf("%w: manifest %s of the index is not an image manifest", tracker.ErrInvalid, d.Digest))
				}
				img.Manifests = append(img.Manifests, d.Digest)
				children = append(children, cm)
			}
			if len(children) == 0 {
				return fail(fmt.Errorf("%w: the index has no manifest for platforms %v", tracker.ErrNotFound, nj.req.Platforms))
			}
		}
		for _, c := range children {
			for _, d := range append([]descriptor{*c.Config}, c.Layers...) {
				if err := add(ref, &d); err != nil {
					return fail(err)
				}
			}
		}
	}
	return images, specs, nil
}

// manifest asks the resolver, again for a while if patient and the
// manifest is not there yet.
func (j *jobs) manifest(ctx context.Context, ref tracker.ImageRef, r string, patient bool) (string, digest.Digest, []byte, error) {
	for try := 0; ; try++ {
		mt, dg, body, err := j.res.Manifest(ctx, ref.Registry, ref.Repo, r)
		if err == nil || !patient || try >= missingRetries || !(errors.Is(err, tracker.ErrNotFound) || errors.Is(err, tracker.ErrUnavailable)) {
			return mt, dg, body, err
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return "", "", nil, err
		}
	}
}

func parseManifest(mt string, body []byte) (*manifestBody, error) {
	var m manifestBody
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", tracker.ErrInvalid, err)
	}
	if mt == "" {
		mt = m.MediaType
	}
	switch {
	case (mt == mtOCIIndex || mt == mtDockerList) && m.Config == nil:
		return &m, nil
	case (mt == mtOCIManifest || mt == mtDockerManifest || mt == "") && m.Config != nil:
		return &m, nil
	}
	return nil, fmt.Errorf("%w: media type %q is not an image manifest or index Shoal seeds", tracker.ErrInvalid, mt)
}

// wanted reports whether an index entry is one of plats (nil: every
// platform but unknown/unknown).
func wanted(d descriptor, plats []tracker.Platform) bool {
	if d.Platform == nil {
		return plats == nil
	}
	if plats == nil {
		return d.Platform.OS != "unknown"
	}
	for _, p := range plats {
		if p.OS == d.Platform.OS && p.Arch == d.Platform.Arch && (p.Variant == "" || p.Variant == d.Platform.Variant) {
			return true
		}
	}
	return false
}
