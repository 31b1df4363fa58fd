package unpack

import (
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultMaxSize bounds what a pull may unpack when Options.MaxSize is 0.
const DefaultMaxSize int64 = 64 << 30

// Options configure Pull. Zero values mean the documented defaults.
type Options struct {
	Ref      string // image reference by tag or digest, e.g. "127.0.0.1:15000/app:v1"
	Dir      string // target: Dir/rootfs, Dir/config.json, Dir/manifest.json
	Agent    string // host:port of a local Shoal agent; "" fetches straight from the registry
	Platform string // "os/arch[/variant]"; default runtime.GOOS/runtime.GOARCH
	Jobs     int    // layers fetched and unpacked at once; default runtime.NumCPU()
	Insecure bool   // plain HTTP to the registry (always allowed for loopback registries)
	MaxSize  int64  // max unpacked bytes, total and per entry; default DefaultMaxSize
	Force    bool   // replace an existing Dir/rootfs instead of failing
	Keychain authn.Keychain
	Progress Progress // nil: no progress events
	Logger   *slog.Logger

	// StdGzip decodes gzip with the standard library's compress/gzip
	// instead of pgzip: the baseline of benchmarks, never faster.
	StdGzip bool
}

// Validate reports the first invalid field.
func (o Options) Validate() error {
	switch {
	case o.Ref == "":
		return fmt.Errorf("%w: empty image reference", ErrInvalidOptions)
	case o.Dir == "":
		return fmt.Errorf("%w: empty target directory", ErrInvalidOptions)
	case o.Jobs < 0:
		return fmt.Errorf("%w: jobs %d < 0", ErrInvalidOptions, o.Jobs)
	case o.MaxSize < 0:
		return fmt.Errorf("%w: max size %d < 0", ErrInvalidOptions, o.MaxSize)
	}
	if o.Platform != "" {
		if _, err := v1.ParsePlatform(o.Platform); err != nil {
			return fmt.Errorf("%w: platform %q: %v", ErrInvalidOptions, o.Platform, err)
		}
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Platform == "" {
		o.Platform = runtime.GOOS + "/" + runtime.GOARCH
	}
	if o.Jobs == 0 {
		o.Jobs = runtime.NumCPU()
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.Progress == nil {
		o.Progress = nopProgress{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Result describes a completed pull.
type Result struct {
	Ref             string
	Digest          v1.Hash // manifest digest
	Platform        string  // os/arch[/variant] of the image config
	Rootfs          string
	Layers          []LayerStats
	CompressedBytes int64
	UnpackedBytes   int64 // decompressed tar bytes
	Duration        time.Duration
}

// LayerStats describes one layer of a pull.
type LayerStats struct {
	Digest          v1.Hash
	DiffID          v1.Hash
	MediaType       types.MediaType
	Compression     string // "gzip", "zstd" or "none", from the content's magic bytes
	CompressedBytes int64
	UnpackedBytes   int64         // decompressed tar bytes
	Files           int64         // entries created
	Stage           time.Duration // fetch, verify and extract into staging
	Apply           time.Duration // move into the rootfs
}
