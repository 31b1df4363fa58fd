package unpack

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// benchLayerMiB is the uncompressed size of each of the 5 layers;
// SHOAL_BENCH_LAYER_MIB=40 gives the 200 MiB image of our field notes.
func benchLayerMiB(b *testing.B) int {
	if s := os.Getenv("SHOAL_BENCH_LAYER_MIB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("SHOAL_BENCH_LAYER_MIB=%q", s)
		}
		return n
	}
	return 8
}

// semiCompressible returns n bytes of words drawn from a small vocabulary
// mixed with random bytes: gzip gets it to roughly half.
func semiCompressible(rng *rand.Rand, n int) []byte {
	words := strings.Fields("layer piece peer tracker agent registry digest manifest blob config shoal rootfs")
	var buf bytes.Buffer
	for buf.Len() < n {
		if rng.IntN(4) == 0 {
			for range 16 {
				buf.WriteByte(byte(rng.Uint32()))
			}
			continue
		}
		buf.WriteString(words[rng.IntN(len(words))])
		buf.WriteByte(' ')
	}
	return buf.Bytes()[:n]
}

func BenchmarkPull(b *testing.B) {
	mib := benchLayerMiB(b)
	rng := rand.New(rand.NewPCG(1, 2))
	var layers []v1.Layer
	var compressed, unpacked int64
	for i := range 5 {
		var ents []ent
		for j := range mib * 4 { // 256 KiB files
			ents = append(ents, ent{name: fmt.Sprintf("l%d/d%d/f%d", i, j%16, j), mode: 0o644, body: string(semiCompressible(rng, 256<<10))})
		}
		raw := mkTar(b, ents...)
		l := newLayer(b, gz, raw)
		size, _ := l.Size()
		compressed += size
		unpacked += int64(len(raw))
		layers = append(layers, l)
	}
	reg := newRegistry(b, nil)
	ref := push(b, reg, "bench:v1", mkImage(b, "linux/amd64", layers...))

	for _, bc := range []struct {
		name    string
		jobs    int
		stdGzip bool
	}{
		{"parallel-pgzip", runtime.NumCPU(), false},
		{"sequential-stdgzip", 1, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			base := b.TempDir()
			b.SetBytes(compressed)
			n := 0
			for b.Loop() {
				dir := filepath.Join(base, strconv.Itoa(n))
				n++
				if _, err := Pull(b.Context(), Options{Ref: ref, Dir: dir, Platform: "linux/amd64", Jobs: bc.jobs, StdGzip: bc.stdGzip}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(unpacked)*float64(b.N)/1e6/b.Elapsed().Seconds(), "unpacked-MB/s")
			if hwm := vmHWM(); hwm > 0 {
				b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
			}
		})
	}
}

// vmHWM returns the process's peak resident set in bytes, or 0 where
// /proc is not available. It never goes down, so the number printed for a
// later sub-benchmark is an upper bound.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
