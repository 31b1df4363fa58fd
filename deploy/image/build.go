package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user: 65532 is the non-root ID distroless images use, so
// that a PodSecurity runAsUser can be the same for both.
const (
	uid      = 65532
	user     = "shoal"
	dataDir  = "/var/lib/shoal"
	binPath  = "/usr/local/bin/shoal"
	caPath   = "/etc/ssl/certs/ca-certificates.crt"
	shoalPkg = "github.com/shoal-dev/shoal/cmd/shoal"
)

// revisionLabel names the commit an image was built from.
const revisionLabel = "org.opencontainers.image.revision"

// defaultPlatforms are the platforms `make image` builds.
var defaultPlatforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64"},
}

// buildConfig says what build makes.
type buildConfig struct {
	// Src is the directory of the shoal module to build; empty is the
	// current directory.
	Src string
	// Out is the OCI layout directory to write. An existing layout there
	// is replaced; any other non-empty directory is refused.
	Out string
	// Platforms to build, linux only (Go builds shoal for linux only).
	Platforms []v1.Platform
	// Created is the one timestamp of the image: config, history and
	// every file of the layer.
	Created time.Time
	// CACerts is the PEM bundle copied to /etc/ssl/certs.
	CACerts string
	// Revision, if set, is recorded in the config's labels.
	Revision string
	// Log receives a line per step.
	Log io.Writer
}

func (c *buildConfig) validate() error {
	var errs []error
	if c.Out == "" {
		errs = append(errs, errors.New("no output directory"))
	}
	if len(c.Platforms) == 0 {
		errs = append(errs, errors.New("no platform"))
	}
	for _, p := range c.Platforms {
		if p.OS != "linux" || p.Architecture == "" || p.Variant != "" {
			errs = append(errs, fmt.Errorf("platform %s: want linux/ARCH", p.String()))
		}
	}
	if c.CACerts == "" {
		errs = append(errs, errors.New("no CA bundle"))
	}
	return errors.Join(errs...)
}

// build compiles shoal for every platform, assembles an image for each
// and an index of them, and writes the index to an OCI layout at c.Out.
func build(ctx context.Context, c buildConfig) (v1.ImageIndex, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	ca, err := os.ReadFile(c.CACerts)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", c.CACerts)
	}
	tmp, err := os.MkdirTemp("", "shoal-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range c.Platforms {
		bin := filepath.Join(tmp, "shoal-"+p.Architecture)
		start := time.Now()
		if err := compile(ctx, c.Src, p, bin); err != nil {
			return nil, err
		}
		exe, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c.Log, "image: built %s for %s in %s (%d bytes)\n", shoalPkg, p.String(), time.Since(start).Round(time.Millisecond), len(exe))
		img, err := platformImage(rootFS(exe, ca), p, c.Created, c.Revision)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", p.String(), err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Architecture}},
		})
	}
	if err := writeLayout(c.Out, idx); err != nil {
		return nil, err
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c.Log, "image: wrote %s (index %s)\n", c.Out, d)
	return idx, nil
}

// compile cross-compiles cmd/shoal for p into out, reproducibly: no cgo, no
// build paths (-trimpath), no build ID, no symbol tables, the architecture
// baselines pinned, and no VCS stamp (-buildvcs=false), so the binary
// depends on the source alone and not on .git or on whether the tree has
// untracked files; the image's label records the commit instead. GOFLAGS
// is set, not only cleared, because an empty variable does not override
// the go env file, where GOFLAGS may add flags of its own.
func compile(ctx context.Context, src string, p v1.Platform, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, shoalPkg)
	cmd.Dir = src
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture,
		"GOAMD64=v1", "GOARM64=v8.0", "GOFLAGS=-buildvcs=false", "GOEXPERIMENT=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", shoalPkg, p.String(), err, b)
	}
	return nil
}

// file is one entry of the layer.
type file struct {
	name string // without a leading slash
	mode int64  // permission bits, and tar's type via dir
	dir  bool
	uid  int
	body []byte
}

// rootFS returns the layer's files: the binary, the CA bundle, the user
// and group databases, the data directory owned by the user, and /tmp.
// Parent directories are added by layerTar.
func rootFS(exe, ca []byte) []file {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:%s:/sbin/nologin\n", user, uid, uid, user, dataDir)
	group := fmt.Sprintf("root:x:0:\n%s:x:%d:\n", user, uid)
	return []file{
		{name: strings.TrimPrefix(binPath, "/"), mode: 0o755, body: exe},
		{name: strings.TrimPrefix(caPath, "/"), mode: 0o644, body: ca},
		{name: "etc/passwd", mode: 0o644, body: []byte(passwd)},
		{name: "etc/group", mode: 0o644, body: []byte(group)},
		{name: strings.TrimPrefix(dataDir, "/"), mode: 0o700, dir: true, uid: uid},
		{name: "tmp", mode: 0o1777, dir: true},
	}
}

// layerTar writes files as a tar stream: parent directories first (root,
// 0755), entries sorted by name, every time set to created, owners by
// number and name, so that the same files give the same bytes.
func layerTar(files []file, created time.Time) ([]byte, error) {
	all := map[string]file{}
	for _, f := range files {
		all[f.name] = f
		for dir := path.Dir(f.name); dir != "."; dir = path.Dir(dir) {
			if _, ok := all[dir]; !ok {
				all[dir] = file{name: dir, mode: 0o755, dir: true}
			}
		}
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	slices.Sort(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		f := all[n]
		hdr := &tar.Header{
			Name:    f.name,
			Mode:    f.mode,
			Uid:     f.uid,
			Gid:     f.uid,
			Uname:   ownerName(f.uid),
			Gname:   ownerName(f.uid),
			ModTime: created,
		}
		if f.dir {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func ownerName(id int) string {
	if id == uid {
		return user
	}
	return "root"
}

// platformImage is the image of one platform: the layer of files, and a
// config that runs the binary as the non-root user.
func platformImage(files []file, p v1.Platform, created time.Time, revision string) (v1.Image, error) {
	tarBytes, err := layerTar(files, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.DefaultCompression), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "deploy/image: " + binPath + ", CA certificates, user " + user,
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = p.OS, p.Architecture
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint: []string{binPath},
		Cmd:        []string{"agent"},
		Env:        []string{"PATH=/usr/local/bin"},
	}
	if revision != "" {
		cf.Config.Labels = map[string]string{revisionLabel: revision}
	}
	return mutate.ConfigFile(img, cf)
}

// writeLayout writes idx to a new OCI layout and puts it at dir, replacing
// a layout already there.
func writeLayout(dir string, idx v1.ImageIndex) error {
	if err := replaceable(dir); err != nil {
		return err
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendIndex(idx); err != nil {
		return fmt.Errorf("write OCI layout: %w", err)
	}
	// MkdirTemp made it 0700.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// replaceable refuses a dir that is neither absent, empty nor an OCI
// layout: `make image IMAGE_OUT=.` must not delete the checkout.
func replaceable(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("%s exists and is not an OCI layout: not replacing it", dir)
	}
	return nil
}
