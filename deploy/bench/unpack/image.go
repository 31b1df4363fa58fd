package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// generate builds an image of n gzip layers totalling size bytes of file
// content: directories of files from 512 B to 2 MiB, most of them small, as
// in a distribution image, with text-like content gzip roughly halves.
func generate(n int, size int64) (v1.Image, report, error) {
	rep := report{Layers: n}
	layers := make([]v1.Layer, n)
	errs := make([]error, n)
	type stats struct {
		raw, gz int64
		files   int
	}
	st := make([]stats, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(i), 42))
			var raw bytes.Buffer
			tw := tar.NewWriter(&raw)
			mtime := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
			var written int64
			for d := 0; written < size/int64(n); d++ {
				dir := fmt.Sprintf("layer%d/dir%03d/", i, d)
				if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
					errs[i] = err
					return
				}
				for f := 0; f < 32 && written < size/int64(n); f++ {
					sz := fileSize(rng)
					sz = min(sz, size/int64(n)-written)
					h := &tar.Header{Name: fmt.Sprintf("%sfile%03d", dir, f), Typeflag: tar.TypeReg, Mode: 0o644, Size: sz, ModTime: mtime}
					if err := tw.WriteHeader(h); err != nil {
						errs[i] = err
						return
					}
					if _, err := tw.Write(textLike(rng, int(sz))); err != nil {
						errs[i] = err
						return
					}
					written += sz
					st[i].files++
				}
			}
			if err := tw.Close(); err != nil {
				errs[i] = err
				return
			}
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz) // what docker and podman push: default level
			if _, err := zw.Write(raw.Bytes()); err != nil {
				errs[i] = err
				return
			}
			if err := zw.Close(); err != nil {
				errs[i] = err
				return
			}
			st[i].raw, st[i].gz = int64(raw.Len()), int64(gz.Len())
			b := gz.Bytes()
			layers[i], errs[i] = tarball.LayerFromOpener(func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(b)), nil
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, rep, err
	}
	for _, s := range st {
		rep.UnpackedBytes += s.raw
		rep.CompressedBytes += s.gz
		rep.Files += s.files
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, rep, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, rep, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = runtime.GOOS, runtime.GOARCH
	img, err = mutate.ConfigFile(img, cf)
	return img, rep, err
}

// fileSize draws from a log-uniform distribution between 512 B and 2 MiB.
func fileSize(rng *mrand.Rand) int64 {
	lo, hi := 9.0, 21.0 // log2
	e := lo + rng.Float64()*(hi-lo)
	return int64(1) << int(e) * int64(100+rng.IntN(100)) / 150
}

var vocabulary = strings.Fields(`the of and to in is for on that with as by this be are from at or it an
	layer piece peer tracker agent registry digest manifest blob config shoal rootfs usr lib bin share
	include function return struct const static void int char unsigned long error warning debug info`)

// textLike returns n bytes of words with a sprinkling of random bytes, so
// that gzip does roughly as well as on binaries and text of a real image.
func textLike(rng *mrand.Rand, n int) []byte {
	b := make([]byte, 0, n+32)
	var rnd [12]byte
	for len(b) < n {
		if rng.IntN(10) == 0 {
			for j := range rnd {
				rnd[j] = byte(rng.Uint32())
			}
			b = append(b, rnd[:]...)
			continue
		}
		b = append(b, vocabulary[rng.IntN(len(vocabulary))]...)
		b = append(b, ' ')
	}
	return b[:n]
}
