package main

import (
	"math/rand/v2"
	"os"
	"testing"
)

func TestGenerate(t *testing.T) {
	t.Parallel()
	img, rep, err := generate(3, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 3 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		d, err := l.DiffID()
		if err != nil || d != cf.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: diff_id %s, %v; config says %s", i, d, err, cf.RootFS.DiffIDs[i])
		}
	}
	if rep.UnpackedBytes < 1<<20 || rep.CompressedBytes >= rep.UnpackedBytes || rep.Files == 0 {
		t.Errorf("report %+v", rep)
	}
	if ratio := float64(rep.CompressedBytes) / float64(rep.UnpackedBytes); ratio < 0.2 || ratio > 0.6 {
		t.Errorf("gzip ratio %.2f, want roughly what real images get", ratio)
	}
}

func TestFileSizeBounds(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		if n := fileSize(rng); n < 256 || n > 4<<20 {
			t.Fatalf("fileSize = %d", n)
		}
	}
	if b := textLike(rng, 1000); len(b) != 1000 {
		t.Fatalf("textLike length %d", len(b))
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestProcReaders(t *testing.T) {
	t.Parallel()
	if vmHWM(os.Getpid()) <= 0 || cpuSeconds(os.Getpid()) < 0 {
		t.Errorf("own VmHWM %v, CPU %v", vmHWM(os.Getpid()), cpuSeconds(os.Getpid()))
	}
	if vmHWM(-1) != 0 || cpuSeconds(-1) != 0 {
		t.Error("a missing process has figures")
	}
}
