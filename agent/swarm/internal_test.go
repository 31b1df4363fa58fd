package swarm

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		seeder bool
		busy   int
		want   time.Duration
	}{
		{false, 1, 100 * time.Millisecond},
		{false, 2, 200 * time.Millisecond},
		{false, 4, 800 * time.Millisecond},
		{false, 5, time.Second},
		{false, 50, time.Second},
		{true, 1, 250 * time.Millisecond},
		{true, 3, time.Second},
		{true, 9, time.Second},
	}
	for _, tt := range tests {
		r := &remote{seeder: tt.seeder, busy: tt.busy}
		if got := r.backoff(); got != tt.want {
			t.Errorf("backoff(seeder=%v, busy=%d) = %s, want %s", tt.seeder, tt.busy, got, tt.want)
		}
	}
}

func TestBuffersReuse(t *testing.T) {
	t.Parallel()
	var p buffers
	a := p.get(1 << 20)
	if len(a) != 1<<20 {
		t.Fatalf("get(1 MiB) has %d bytes", len(a))
	}
	p.put(a[:10])
	b := p.get(512 << 10)
	if len(b) != 512<<10 || &b[0] != &a[0] {
		t.Fatalf("get after put did not reuse the free buffer")
	}
	if c := p.get(2 << 20); len(c) != 2<<20 {
		t.Fatalf("get(2 MiB) has %d bytes", len(c))
	}
	// The free list keeps at most maxFreeBuffers bytes.
	for range 2 * maxFreeBuffers / (4 << 20) {
		p.put(make([]byte, 4<<20))
	}
	if p.bytes > maxFreeBuffers {
		t.Fatalf("free list holds %d bytes, more than %d", p.bytes, maxFreeBuffers)
	}
	p.put(nil)
}
