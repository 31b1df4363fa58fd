package unpack

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Pull fetches the image o.Ref for o.Platform and unpacks it into
// o.Dir/rootfs, writing its config to o.Dir/config.json and its manifest to
// o.Dir/manifest.json. On any error nothing is left in o.Dir but what was
// there before.
func Pull(ctx context.Context, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	start := time.Now()

	// One cancellation for everything, HTTP requests included, so that the
	// first failing layer stops the others at once.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ref, ropts, err := remoteOptions(ctx, o)
	if err != nil {
		return nil, err
	}
	rootfs := filepath.Join(o.Dir, "rootfs")
	if _, err := os.Lstat(rootfs); err == nil && !o.Force {
		return nil, fmt.Errorf("%w: %s", ErrExists, rootfs)
	}
	img, err := remote.Image(ref, ropts...)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", o.Ref, err)
	}
	im, err := inspect(img)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Ref, err)
	}

	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	// Staging lives in Dir so that every move into the rootfs is a rename
	// on one filesystem.
	staging, err := os.MkdirTemp(o.Dir, ".shoal-staging-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := os.RemoveAll(staging); err != nil {
			o.Logger.Warn("removing staging directory", "path", staging, "error", err)
		}
	}()

	p := &puller{o: o, budget: NewBudget(o.MaxSize), staging: staging, im: im}
	res, err := p.run(ctx, cancel)
	if err != nil {
		return nil, err
	}
	for name, raw := range map[string][]byte{"config.json": im.rawConfig, "manifest.json": im.rawManifest} {
		if err := os.WriteFile(filepath.Join(staging, name), raw, 0o644); err != nil {
			return nil, err
		}
	}
	if o.Force {
		// Out of the way first; the deferred cleanup deletes it.
		if err := os.Rename(rootfs, filepath.Join(staging, "old-rootfs")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	for _, name := range []string{"config.json", "manifest.json", "rootfs"} {
		if err := os.Rename(filepath.Join(staging, name), filepath.Join(o.Dir, name)); err != nil {
			return nil, err
		}
	}
	res.Ref, res.Rootfs, res.Duration = o.Ref, rootfs, time.Since(start)
	res.Digest, res.Platform = im.digest, im.platform
	o.Logger.Info("image unpacked", "ref", o.Ref, "digest", im.digest.String(), "bytes", res.CompressedBytes,
		"unpacked", res.UnpackedBytes, "duration", res.Duration)
	return res, nil
}

func remoteOptions(ctx context.Context, o Options) (name.Reference, []remote.Option, error) {
	plat, err := v1.ParsePlatform(o.Platform)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: platform: %v", ErrInvalidOptions, err)
	}
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(o.Ref, nopts...)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: reference %q: %v", ErrInvalidOptions, o.Ref, err)
	}
	if !o.Insecure && isLoopback(ref.Context().RegistryStr()) {
		if ref, err = name.ParseReference(o.Ref, name.Insecure); err != nil {
			return nil, nil, fmt.Errorf("%w: reference %q: %v", ErrInvalidOptions, o.Ref, err)
		}
	}
	var tr http.RoundTripper = remote.DefaultTransport
	if o.Agent != "" {
		tr = AgentTransport(tr, o.Agent, ref.Context().Registry)
	}
	return ref, []remote.Option{
		remote.WithContext(ctx),
		remote.WithPlatform(*plat),
		remote.WithAuthFromKeychain(o.Keychain),
		remote.WithTransport(tr),
	}, nil
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// image is what Pull needs from the manifest and config, checked for
// consistency.
type image struct {
	digest      v1.Hash
	platform    string
	rawManifest []byte
	rawConfig   []byte
	layers      []v1.Layer
	diffIDs     []v1.Hash
}

func inspect(img v1.Image) (*image, error) {
	var im image
	var err error
	if im.digest, err = img.Digest(); err != nil {
		return nil, err
	}
	if im.rawManifest, err = img.RawManifest(); err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if im.rawConfig, err = img.RawConfigFile(); err != nil {
		return nil, err
	}
	if h, _, _ := v1.SHA256(bytes.NewReader(im.rawConfig)); h != m.Config.Digest {
		return nil, fmt.Errorf("%w: config is %s, manifest says %s", ErrBadImage, h, m.Config.Digest)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	im.platform = cf.OS + "/" + cf.Architecture
	if cf.Variant != "" {
		im.platform += "/" + cf.Variant
	}
	if im.layers, err = img.Layers(); err != nil {
		return nil, err
	}
	im.diffIDs = cf.RootFS.DiffIDs
	if len(im.diffIDs) != len(im.layers) {
		return nil, fmt.Errorf("%w: %d layers but %d diff_ids", ErrBadImage, len(im.layers), len(im.diffIDs))
	}
	return &im, nil
}

type puller struct {
	o       Options
	budget  *Budget
	staging string
	im      *image
}

type staged struct {
	done  chan struct{} // closed when layer and err are set
	layer *Layer
	err   error
}

// run stages layers with o.Jobs workers, in manifest order, while this
// goroutine applies each one to staging/rootfs as soon as it and all those
// below it are ready. The first error cancels everything.
func (p *puller) run(ctx context.Context, cancel context.CancelCauseFunc) (*Result, error) {
	n := len(p.im.layers)
	res := &Result{Layers: make([]LayerStats, n)}
	slots := make([]staged, n)
	for i := range slots {
		slots[i].done = make(chan struct{})
	}
	work := make(chan int)
	var wg sync.WaitGroup
	defer func() {
		cancel(nil) // no-op after success; stops the workers after a failure
		wg.Wait()
	}()
	wg.Go(func() {
		defer close(work)
		for i := range n {
			select {
			case work <- i:
			case <-ctx.Done():
				return
			}
		}
	})
	for range min(p.o.Jobs, n) {
		wg.Go(func() {
			for i := range work {
				s := &slots[i]
				s.layer, s.err = p.stage(ctx, i, &res.Layers[i])
				if s.err != nil {
					cancel(s.err)
				}
				close(s.done)
			}
		})
	}

	rootfs := filepath.Join(p.staging, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, err
	}
	a := newApplier(rootfs)
	for i := range slots {
		select {
		case <-slots[i].done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		if slots[i].err != nil {
			return nil, context.Cause(ctx) // the first failure, not a consequence of it
		}
		t := time.Now()
		if err := a.apply(ctx, slots[i].layer); err != nil {
			err = p.layerErr(i, err)
			cancel(err)
			return nil, context.Cause(ctx)
		}
		res.Layers[i].Apply = time.Since(t)
		p.event(i, LayerApplied, nil, res.Layers[i].CompressedBytes, res.Layers[i].UnpackedBytes)
	}
	if err := a.finish(ctx); err != nil {
		return nil, err
	}
	for _, l := range res.Layers {
		res.CompressedBytes += l.CompressedBytes
		res.UnpackedBytes += l.UnpackedBytes
	}
	return res, nil
}

func (p *puller) layerErr(i int, err error) error {
	d, _ := p.im.layers[i].Digest()
	return fmt.Errorf("layer %d/%d %s: %w", i+1, len(p.im.layers), d, err)
}

func (p *puller) event(i int, k EventKind, err error, fetched, unpacked int64) {
	d, _ := p.im.layers[i].Digest()
	size, _ := p.im.layers[i].Size()
	p.o.Progress.Update(Event{Kind: k, Layer: i, Layers: len(p.im.layers), Digest: d.String(),
		Size: size, Fetched: fetched, Unpacked: unpacked, Err: err})
}

// stage runs layer i through its pipeline into staging/layer-i.
func (p *puller) stage(ctx context.Context, i int, st *LayerStats) (_ *Layer, err error) {
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	start := time.Now()
	l := p.im.layers[i]
	st.DiffID = p.im.diffIDs[i]
	fetched := &hashCounter{h: sha256.New()}
	unpacked := &hashCounter{h: sha256.New()}
	defer func() {
		st.CompressedBytes, st.UnpackedBytes, st.Stage = fetched.n.Load(), unpacked.n.Load(), time.Since(start)
		if err != nil {
			// A layer stopped because another one failed is not a
			// failure of its own: only the first is reported.
			if cause := context.Cause(ctx); ctx.Err() == nil || errors.Is(cause, context.Canceled) ||
				errors.Is(cause, context.DeadlineExceeded) {
				p.event(i, LayerFailed, err, st.CompressedBytes, st.UnpackedBytes)
			}
			err = p.layerErr(i, err)
			return
		}
		p.event(i, LayerStaged, nil, st.CompressedBytes, st.UnpackedBytes)
		p.o.Logger.Debug("layer staged", "digest", st.Digest.String(), "bytes", st.CompressedBytes,
			"unpacked", st.UnpackedBytes, "duration", st.Stage)
	}()
	if st.Digest, err = l.Digest(); err != nil {
		return nil, err
	}
	if st.MediaType, err = l.MediaType(); err != nil {
		return nil, err
	}
	p.event(i, LayerStarted, nil, 0, 0)

	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	fetched.r = rc
	br := bufio.NewReaderSize(fetched, 64<<10)
	comp, err := detect(st.MediaType, br)
	if err != nil {
		return nil, err
	}
	st.Compression = comp
	if want := mediaCompression(st.MediaType); want != comp {
		p.o.Logger.Warn("layer compression differs from its media type", "digest", st.Digest.String(),
			"media_type", string(st.MediaType), "content", comp)
	}
	var tarStream io.Reader = br
	closeDecoder := func() {}
	switch comp {
	case "gzip":
		if p.o.StdGzip {
			zr, err := gzip.NewReader(br)
			if err != nil {
				return nil, p.digestOr(fmt.Errorf("gzip: %w", err), l, br, fetched, st.Digest)
			}
			tarStream = zr
			break
		}
		zr, err := pgzip.NewReader(br)
		if err != nil {
			return nil, p.digestOr(fmt.Errorf("gzip: %w", err), l, br, fetched, st.Digest)
		}
		closeDecoder = sync.OnceFunc(func() { zr.Close() })
		tarStream = zr
	case "zstd":
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		closeDecoder = sync.OnceFunc(zr.Close)
		tarStream = zr
	}
	// The decoders read br in goroutines of their own: stop them before
	// this goroutine reads br.
	defer closeDecoder()
	unpacked.r = tarStream
	unpacked.report = func() { p.event(i, LayerBytes, nil, fetched.n.Load(), unpacked.n.Load()) }

	dir := filepath.Join(p.staging, fmt.Sprintf("layer-%d", i))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	layer, err := Extract(ctx, unpacked, dir, p.budget)
	closeDecoder()
	if err != nil {
		return nil, p.digestOr(err, l, br, fetched, st.Digest)
	}
	// Anything after the compressed stream's end is part of the digest too.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return nil, err
	}
	if got := fetched.sum(); got != st.Digest {
		return nil, fmt.Errorf("%w: got %s", ErrDigestMismatch, got)
	}
	if got := unpacked.sum(); got != st.DiffID {
		return nil, fmt.Errorf("%w: uncompressed content is %s, config says %s", ErrDiffIDMismatch, got, st.DiffID)
	}
	st.Files = layer.Files
	return layer, nil
}

// digestOr explains a failed decompression or extraction: bytes corrupted
// in transit make the decoder fail long before the digest can be checked, so
// read the rest of the blob, up to its size in the manifest, and report a
// digest mismatch as the cause if there is one. Otherwise err stands.
func (p *puller) digestOr(err error, l v1.Layer, br io.Reader, fetched *hashCounter, want v1.Hash) error {
	if errors.Is(err, ErrUnsafeEntry) || errors.Is(err, ErrTooLarge) || errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	size, serr := l.Size()
	if serr != nil {
		return err
	}
	if _, derr := io.Copy(io.Discard, io.LimitReader(br, size-fetched.n.Load())); derr != nil {
		return fmt.Errorf("%w (reading the rest of the layer: %v)", err, derr)
	}
	if got := fetched.sum(); fetched.n.Load() == size && got != want {
		return fmt.Errorf("%w: got %s (%v)", ErrDigestMismatch, got, err)
	}
	return err
}

// hashCounter hashes and counts what is read through it, and calls report
// every reportEvery bytes.
type hashCounter struct {
	r      io.Reader
	h      hash.Hash
	n      atomic.Int64 // read by progress events from other goroutines
	next   int64
	report func()
}

const reportEvery = 1 << 20

func (c *hashCounter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.h.Write(b[:n])
	total := c.n.Add(int64(n))
	if c.report != nil && total >= c.next {
		c.next = total + reportEvery
		c.report()
	}
	return n, err
}

func (c *hashCounter) sum() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", c.h.Sum(nil))}
}

// detect names the compression of a layer from its first bytes; the media
// type only has to say it is a tar layer, because registries and tools
// mislabel compression often enough.
func detect(mt types.MediaType, br *bufio.Reader) (string, error) {
	s := string(mt)
	if !strings.Contains(s, ".tar") && !strings.HasSuffix(s, "tar") || strings.Contains(s, "encrypted") {
		return "", fmt.Errorf("%w: media type %q is not a tar layer", ErrUnsupported, mt)
	}
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return "gzip", nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd", nil
	}
	return "none", nil
}

func mediaCompression(mt types.MediaType) string {
	s := string(mt)
	switch {
	case strings.Contains(s, "gzip"):
		return "gzip"
	case strings.Contains(s, "zstd"):
		return "zstd"
	}
	return "none"
}
