package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "image:", err)
		}
		os.Exit(2)
	}
}

const usage = `usage:
  image build [-out DIR] [-src DIR] [-platforms linux/amd64,linux/arm64] [-created UNIX-SECONDS] [-revision COMMIT] [-ca-certs FILE]
  image push [-layout DIR] [-insecure] REF`

// run is the command line: build or push.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "build":
		return runBuild(ctx, args[1:], stdout, stderr)
	case "push":
		return runPush(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintln(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

func runBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := buildConfig{Log: stdout}
	fs.StringVar(&c.Out, "out", "bin/image", "OCI layout directory to write (an existing layout is replaced)")
	fs.StringVar(&c.Src, "src", "", "directory of the shoal module to build (default: the current directory)")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated linux/ARCH list")
	created := fs.String("created", os.Getenv("SOURCE_DATE_EPOCH"), "the image's timestamp in Unix seconds (default $SOURCE_DATE_EPOCH, else 0)")
	fs.StringVar(&c.Revision, "revision", "", "commit recorded in the label "+revisionLabel)
	fs.StringVar(&c.CACerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "PEM bundle to install as "+caPath)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("build: unexpected arguments %q", fs.Args())
	}
	var err error
	if c.Created, err = parseCreated(*created); err != nil {
		return err
	}
	if c.Platforms, err = parsePlatforms(*platforms); err != nil {
		return err
	}
	_, err = build(ctx, c)
	return err
}

// parseCreated reads Unix seconds; empty is the epoch.
func parseCreated(s string) (time.Time, error) {
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("-created %q: want Unix seconds", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

func parsePlatforms(s string) ([]v1.Platform, error) {
	var ps []v1.Platform
	for _, f := range strings.Split(s, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("-platforms: %w", err)
		}
		ps = append(ps, *p)
	}
	return ps, nil
}

func runPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("layout", "bin/image", "OCI layout written by image build")
	insecure := fs.Bool("insecure", false, "allow plain HTTP (and unverified TLS) to the registry")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("push: want one image reference")
	}
	ref, err := push(ctx, *dir, fs.Arg(0), *insecure)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, ref)
	return nil
}

// push uploads the one index of the layout at dir to ref and returns
// the pushed reference by digest.
func push(ctx context.Context, dir, ref string, insecure bool) (string, error) {
	idx, err := layoutIndex(dir)
	if err != nil {
		return "", err
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return "", err
	}
	// A transport of its own, closed after the push: no connection
	// outlives the call.
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	if insecure {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{}
		}
		tr.TLSClientConfig.InsecureSkipVerify = true
	}
	if err := remote.WriteIndex(r, idx, remote.WithContext(ctx), remote.WithTransport(tr),
		remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return "", fmt.Errorf("push %s: %w", r, err)
	}
	d, err := idx.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().Digest(d.String()).String(), nil
}

// layoutIndex returns the image index that the layout's index.json
// points to; image build writes exactly one.
func layoutIndex(dir string) (v1.ImageIndex, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		return nil, fmt.Errorf("OCI layout %s: index.json must point to one image index", dir)
	}
	return top.ImageIndex(m.Manifests[0].Digest)
}
