package shimtest

import (
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/shoal-dev/shoal/registryshim"
)

// PutImage stores img's config, layers and manifest in repo, tagged with tag
// unless tag is "".
func (m *Memory) PutImage(repo registryshim.Repo, tag string, img v1.Image) error {
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("shimtest: config: %w", err)
	}
	m.PutBlob(repo, cfg)
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("shimtest: layers: %w", err)
	}
	for _, l := range layers {
		data, err := readCompressed(l)
		if err != nil {
			return err
		}
		m.PutBlob(repo, data)
	}
	return putManifest(m, repo, tag, img)
}

// PutIndex stores idx and every image and index it references in repo,
// tagged with tag unless tag is "".
func (m *Memory) PutIndex(repo registryshim.Repo, tag string, idx v1.ImageIndex) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("shimtest: index manifest: %w", err)
	}
	for _, desc := range im.Manifests {
		switch {
		case desc.MediaType.IsImage():
			img, err := idx.Image(desc.Digest)
			if err != nil {
				return fmt.Errorf("shimtest: image %s: %w", desc.Digest, err)
			}
			if err := m.PutImage(repo, "", img); err != nil {
				return err
			}
		case desc.MediaType.IsIndex():
			child, err := idx.ImageIndex(desc.Digest)
			if err != nil {
				return fmt.Errorf("shimtest: index %s: %w", desc.Digest, err)
			}
			if err := m.PutIndex(repo, "", child); err != nil {
				return err
			}
		default:
			return fmt.Errorf("shimtest: index entry %s: unsupported media type %q", desc.Digest, desc.MediaType)
		}
	}
	return putManifest(m, repo, tag, idx)
}

// manifester is what v1.Image and v1.ImageIndex share.
type manifester interface {
	RawManifest() ([]byte, error)
	MediaType() (types.MediaType, error)
}

func putManifest(m *Memory, repo registryshim.Repo, tag string, x manifester) error {
	raw, err := x.RawManifest()
	if err != nil {
		return fmt.Errorf("shimtest: manifest: %w", err)
	}
	mt, err := x.MediaType()
	if err != nil {
		return fmt.Errorf("shimtest: media type: %w", err)
	}
	m.PutManifest(repo, tag, string(mt), raw)
	return nil
}

func readCompressed(l v1.Layer) ([]byte, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, fmt.Errorf("shimtest: layer: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("shimtest: layer: %w", err)
	}
	return data, nil
}
