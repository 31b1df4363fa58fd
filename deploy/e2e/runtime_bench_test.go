package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// BenchmarkCRIStreamProcessor times containerd's CRI PullImage (fetch and
// unpack, as kubelet asks) of a 200 MiB gzip image through a warm agent:
// with containerd's own gzip (Go's compress/gzip, CONTAINERD_DISABLE_PIGZ=1),
// with `shoal decompress` (pgzip) as its stream processor, and, where pigz
// is installed, with the unpigz that containerd runs by itself when it finds
// one. The order of the variants turns in each iteration. Each pull gets a
// fresh daemon configured by `shoal configure containerd`. Reported, not
// asserted; not part of make test:
//
//	go test -run '^$' -bench CRIStreamProcessor -benchtime 4x ./deploy/e2e
//
// SHOAL_BENCH_IMAGE_MB sets the unpacked size (default 200 here).
func BenchmarkCRIStreamProcessor(b *testing.B) {
	size := int64(200) << 20
	if os.Getenv("SHOAL_BENCH_IMAGE_MB") != "" {
		size = benchImageBytes(b)
	}
	origin := agenttest.StartDistribution(b, agenttest.DistributionOptions{})
	img, raw := textImage(b, benchLayers, size)
	ref := origin.Push(b, img, "bench/cri:v1")
	compressed, _ := blobBytes(b, img)
	agent := agenttest.StartShoal(b, shoalBin, "agent",
		"--registry", origin.Addr+"="+origin.URL, "--insecure-registry", origin.Addr)
	variants := []criVariant{{name: "containerd-gzip"}, {name: "shoal-decompress", processor: true}}
	if _, err := exec.LookPath("unpigz"); err == nil {
		variants = append(variants, criVariant{name: "containerd-unpigz", pigz: true})
	}
	criPull(b, agent, origin, ref, variants[0]) // warm the agent's store and the page cache

	took := make([][]time.Duration, len(variants))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range variants {
			v := (i + k) % len(variants)
			took[v] = append(took[v], criPull(b, agent, origin, ref, variants[v]))
		}
	}
	b.StopTimer()
	base := median(took[0])
	for v, runs := range took {
		m := median(runs)
		b.ReportMetric(float64(m.Milliseconds()), variants[v].name+"-ms")
		if v > 0 {
			b.ReportMetric(base.Seconds()/m.Seconds(), variants[v].name+"-speedup")
		}
		b.Logf("%s: runs %v, median %v", variants[v].name, runs, m)
	}
	b.Logf("image: %d layers, %.1f MB compressed, %.1f MB of tar; %d CPUs", benchLayers,
		float64(compressed)/1e6, float64(raw)/1e6, runtime.NumCPU())
}

type criVariant struct {
	name      string
	processor bool // shoal decompress as the stream processor
	pigz      bool // let containerd run unpigz
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// criPull configures a fresh containerd host for the agent as v says,
// starts the daemon and times one CRI pull.
func criPull(b *testing.B, agent *agenttest.Shoal, origin *agenttest.Origin, ref string, v criVariant) time.Duration {
	b.Helper()
	hostRoot := b.TempDir()
	ctrd := agenttest.PrepareCRI(b, hostRoot)
	if !v.pigz {
		ctrd.Env = []string{"CONTAINERD_DISABLE_PIGZ=1"}
	}
	args := []string{"containerd", "--root", hostRoot, "--agent", agent.URL, "--registry", origin.Addr + "=" + origin.URL, "--edit-config"}
	if v.processor {
		args = append(args, "--stream-processor", "--shoal-path", shoalBin)
	}
	configure(b, args...)
	ctrd.Start(b)
	_, took := ctrd.PullImage(b, ref)
	load, _ := os.ReadFile("/proc/loadavg") // the machine may be shared: say how busy it was
	b.Logf("%s: %v (load %s)", v.name, took.Round(time.Millisecond), strings.Join(strings.Fields(string(load))[:1], ""))
	if err := ctrd.Stop(); err != nil {
		b.Logf("containerd stop: %v", err)
	}
	_ = os.RemoveAll(ctrd.Root) // 200 MiB unpacked per run
	return took
}

// textImage builds an image of n gzip layers (default level, as docker and
// podman push) with size bytes of files in all: 32 files a directory, 4 KiB
// to 1 MiB, of words with a sprinkling of random bytes, which gzip roughly
// halves, as it does a distribution image. It returns the tar bytes too.
func textImage(b *testing.B, n int, size int64) (v1.Image, int64) {
	b.Helper()
	layers := make([]v1.Layer, n)
	raws := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(i), 15))
			var raw bytes.Buffer
			tw := tar.NewWriter(&raw)
			mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			per := size / int64(n)
			for written, f := int64(0), 0; written < per; f++ {
				if f%32 == 0 {
					_ = tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("l%d/d%03d/", i, f/32), Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime})
				}
				sz := min(int64(4<<10)<<rng.IntN(9), per-written)
				h := &tar.Header{Name: fmt.Sprintf("l%d/d%03d/f%02d", i, f/32, f%32), Typeflag: tar.TypeReg, Mode: 0o644, Size: sz, ModTime: mtime}
				if errs[i] = tw.WriteHeader(h); errs[i] != nil {
					return
				}
				if _, errs[i] = tw.Write(words(rng, int(sz))); errs[i] != nil {
					return
				}
				written += sz
			}
			if errs[i] = tw.Close(); errs[i] != nil {
				return
			}
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			if _, errs[i] = zw.Write(raw.Bytes()); errs[i] != nil {
				return
			}
			if errs[i] = zw.Close(); errs[i] != nil {
				return
			}
			raws[i] = int64(raw.Len())
			blob := gz.Bytes()
			layers[i], errs[i] = tarball.LayerFromOpener(func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(blob)), nil
			})
		})
	}
	wg.Wait()
	var total int64
	for i := range n {
		if errs[i] != nil {
			b.Fatal(errs[i])
		}
		total += raws[i]
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		b.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		b.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		b.Fatal(err)
	}
	return img, total
}

var benchWords = strings.Fields(`the of and to in is for on that with as by this be are from at or it an
	layer piece peer tracker agent registry digest manifest blob config rootfs usr lib bin share
	include function return struct const static void int char unsigned long error warning debug info`)

func words(rng *mrand.Rand, n int) []byte {
	out := make([]byte, 0, n+32)
	var rnd [12]byte
	for len(out) < n {
		if rng.IntN(10) == 0 {
			for j := range rnd {
				rnd[j] = byte(rng.Uint32())
			}
			out = append(out, rnd[:]...)
			continue
		}
		out = append(out, benchWords[rng.IntN(len(benchWords))]...)
		out = append(out, ' ')
	}
	return out[:n]
}
