package picker

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// newKnown returns a Picker for n pieces, all known.
func newKnown(n int, opts Options) *Picker {
	if opts.Rand == nil {
		opts.Rand = seeded(1)
	}
	p := New(n, opts)
	p.SetKnown(n)
	return p
}

// pickAll picks for peer until Pick reports false.
func pickAll(t *testing.T, p *Picker, peer string) []int {
	t.Helper()
	var got []int
	for range p.Pieces() * 4 {
		i, ok := p.Pick(peer)
		if !ok {
			return got
		}
		got = append(got, i)
	}
	t.Fatalf("Pick(%q) never stopped: %v", peer, got)
	return nil
}

func sorted(s []int) []int { return slices.Sorted(slices.Values(s)) }

func span(lo, hi int) []int {
	var s []int
	for i := lo; i < hi; i++ {
		s = append(s, i)
	}
	return s
}

func TestWindowPreferred(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		window int
		held   []int
		common []int // pieces a second peer also has, making them less rare
		want   []int // the set the first len(want) picks must cover
	}{
		{"window first even when commoner", 4, nil, span(0, 4), span(0, 4)},
		{"default window", 0, nil, span(0, 8), span(0, 8)},
		{"window follows the first missing piece", 4, []int{0, 1, 2}, span(3, 7), span(3, 7)},
		{"held pieces inside the window leave it smaller", 4, []int{0, 2}, nil, []int{1, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newKnown(64, Options{Window: tt.window})
			p.PeerHasAll("a")
			for _, i := range tt.common {
				p.PeerHas("b", i)
			}
			for _, i := range tt.held {
				p.Have(i)
			}
			var got []int
			for range tt.want {
				i, ok := p.Pick("a")
				if !ok {
					t.Fatal("Pick failed")
				}
				got = append(got, i)
			}
			if !slices.Equal(sorted(got), tt.want) {
				t.Fatalf("first picks %v, want the window %v", got, tt.want)
			}
			next, _ := p.Pick("a")
			if slices.Contains(tt.want, next) || slices.Contains(tt.held, next) {
				t.Fatalf("pick after the window = %d, picked or held already", next)
			}
		})
	}
}

func TestRarestBeyondWindow(t *testing.T) {
	t.Parallel()
	// Peer a lacks the window [0, 4) and has [4, 20). Availability there:
	// 13 is on a only, 17 on a and b, the rest on a, b and c.
	p := newKnown(20, Options{Window: 4})
	p.PeerHasAll("seed")
	for i := 4; i < 20; i++ {
		p.PeerHas("a", i)
		if i != 13 {
			p.PeerHas("b", i)
		}
		if i != 13 && i != 17 {
			p.PeerHas("c", i)
		}
	}
	tests := []struct {
		piece, avail int
	}{{0, 1}, {13, 2}, {17, 3}, {4, 4}, {19, 4}}
	for _, tt := range tests {
		if got := p.Availability(tt.piece); got != tt.avail {
			t.Errorf("Availability(%d) = %d, want %d", tt.piece, got, tt.avail)
		}
	}
	got := pickAll(t, p, "a")
	if len(got) != 16 || got[0] != 13 || got[1] != 17 {
		t.Fatalf("picks %v, want 13, 17, then the other 14 pieces of [4, 20)", got)
	}
	if !slices.Equal(sorted(got), span(4, 20)) {
		t.Fatalf("picks %v, want each of [4, 20) once", got)
	}
	if slices.Equal(got[2:], span(4, 20)[:14]) {
		t.Fatalf("equally rare pieces picked in index order %v, want a random order", got)
	}
}

func TestUnknownNeverPicked(t *testing.T) {
	t.Parallel()
	p := New(10, Options{Rand: seeded(3)})
	p.PeerHasAll("a")
	steps := []struct {
		known     int
		wantKnown int
		want      []int
	}{
		{0, 0, nil},
		{3, 3, span(0, 3)},
		{2, 3, nil}, // k only grows
		{6, 6, span(3, 6)},
		{100, 10, span(6, 10)},
	}
	for _, s := range steps {
		p.SetKnown(s.known)
		if p.Known() != s.wantKnown {
			t.Fatalf("SetKnown(%d): Known() = %d, want %d", s.known, p.Known(), s.wantKnown)
		}
		got := pickAll(t, p, "a")
		if !slices.Equal(sorted(got), s.want) {
			t.Fatalf("after SetKnown(%d) picked %v, want %v", s.known, got, s.want)
		}
	}
}

func TestTieBreakSpreads(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		agents  int
		window  int
		prepick bool // fill the one-piece window first, so the pick is beyond it
		minDiff int
	}{
		// 20 agents start at once against one seeder.
		{"20 agents in the window", 20, 8, false, 5},
		{"20 agents beyond the window", 20, 1, true, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			firsts := map[int]int{}
			for a := range tt.agents {
				p := newKnown(100, Options{Window: tt.window, Rand: seeded(uint64(a))})
				p.PeerHasAll("seeder")
				p.Have(0)
				if tt.prepick {
					p.Pick("seeder")
				}
				i, ok := p.Pick("seeder")
				if !ok {
					t.Fatal("Pick failed")
				}
				firsts[i]++
			}
			if len(firsts) < tt.minDiff {
				t.Fatalf("%d agents chose only %d distinct pieces (%v), want at least %d", tt.agents, len(firsts), firsts, tt.minDiff)
			}
		})
	}
}

func TestNoDoubleRequestToSamePeer(t *testing.T) {
	t.Parallel()
	for _, maxDup := range []int{1, 2, 5} {
		p := newKnown(5, Options{MaxDup: maxDup})
		p.PeerHasAll("a")
		got := pickAll(t, p, "a")
		if !slices.Equal(sorted(got), span(0, 5)) {
			t.Fatalf("MaxDup %d: picks %v, want each piece once", maxDup, got)
		}
		if p.Requests("a") != 5 {
			t.Fatalf("Requests(a) = %d, want 5", p.Requests("a"))
		}
	}
}

func TestCancelReturnsPiece(t *testing.T) {
	t.Parallel()
	p := newKnown(3, Options{})
	p.PeerHasAll("a")
	p.PeerHasAll("b")
	i, _ := p.Pick("a")
	p.Cancel(i, "a")
	p.Cancel(i, "a") // a second cancel must not free someone else's request
	if got := p.InFlight(i); got != nil {
		t.Fatalf("InFlight(%d) = %v after Cancel, want none", i, got)
	}
	got := pickAll(t, p, "b")
	if !slices.Equal(sorted(got), span(0, 3)) {
		t.Fatalf("b picked %v, want all 3 pieces without duplicates", got)
	}
}

func TestPeerGone(t *testing.T) {
	t.Parallel()
	p := newKnown(4, Options{})
	p.PeerHasAll("a")
	p.PeerHas("b", 1)
	p.PeerHas("b", 2)
	a := pickAll(t, p, "a")
	if len(a) != 4 {
		t.Fatalf("a picked %v, want 4 pieces", a)
	}
	p.PeerGone("a")
	p.PeerGone("a")       // twice is harmless
	p.PeerGone("unknown") // so is a stranger
	for i := range 4 {
		if got := p.InFlight(i); got != nil {
			t.Fatalf("InFlight(%d) = %v after PeerGone, want none", i, got)
		}
	}
	if got, want := []int{p.Availability(0), p.Availability(1)}, []int{0, 1}; !slices.Equal(got, want) {
		t.Fatalf("availability of 0 and 1 = %v, want %v", got, want)
	}
	if got := pickAll(t, p, "b"); !slices.Equal(sorted(got), []int{1, 2}) {
		t.Fatalf("b picked %v, want 1 and 2 again in normal mode", got)
	}
	if _, ok := p.Pick("a"); ok {
		t.Fatal("a gone peer got a pick")
	}
	// A peer that comes back starts afresh.
	p.PeerHas("a", 3)
	if i, ok := p.Pick("a"); !ok || i != 3 {
		t.Fatalf("returning peer picked %d, %v, want 3", i, ok)
	}
}

func TestPeerHasAllReplacesPartial(t *testing.T) {
	t.Parallel()
	p := newKnown(3, Options{})
	p.PeerHas("a", 0)
	p.PeerHas("a", 0)
	p.PeerHasAll("a")
	p.PeerHasAll("a")
	p.PeerHas("a", 1)
	for i := range 3 {
		if got := p.Availability(i); got != 1 {
			t.Fatalf("Availability(%d) = %d, want 1", i, got)
		}
	}
	p.PeerGone("a")
	for i := range 3 {
		if got := p.Availability(i); got != 0 {
			t.Fatalf("Availability(%d) = %d after PeerGone, want 0", i, got)
		}
	}
}

func TestEndgame(t *testing.T) {
	t.Parallel()
	t.Run("duplicates limited by MaxDup", func(t *testing.T) {
		t.Parallel()
		for _, maxDup := range []int{1, 2, 3} {
			p := newKnown(3, Options{MaxDup: maxDup})
			peers := []string{"a", "b", "c", "d", "e"}
			for _, id := range peers {
				p.PeerHasAll(id)
			}
			total := 0
			for _, id := range peers {
				total += len(pickAll(t, p, id))
			}
			if total != 3*maxDup {
				t.Fatalf("MaxDup %d: %d requests, want %d", maxDup, total, 3*maxDup)
			}
			for i := range 3 {
				if got := p.InFlight(i); len(got) != maxDup {
					t.Fatalf("MaxDup %d: InFlight(%d) = %v", maxDup, i, got)
				}
			}
		}
	})
	t.Run("fewest copies then oldest request", func(t *testing.T) {
		t.Parallel()
		p := newKnown(3, Options{MaxDup: 3})
		for _, id := range []string{"a", "b", "c"} {
			p.PeerHasAll(id)
		}
		var order []int
		for range 3 {
			i, _ := p.Pick("a")
			order = append(order, i)
		}
		b1, _ := p.Pick("b")
		b2, _ := p.Pick("b")
		c1, _ := p.Pick("c")
		if b1 != order[0] || b2 != order[1] || c1 != order[2] {
			t.Fatalf("a picked %v, then b %d %d and c %d: want the oldest single copies first", order, b1, b2, c1)
		}
		if got := p.InFlight(order[0]); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("InFlight = %v, want a then b", got)
		}
	})
	t.Run("not while another piece is idle", func(t *testing.T) {
		t.Parallel()
		p := newKnown(3, Options{})
		p.PeerHas("a", 0)
		p.PeerHas("a", 1)
		p.PeerHas("b", 0)
		p.PeerHas("b", 1)
		p.PeerHas("z", 2) // idle: z has not picked yet
		pickAll(t, p, "a")
		if i, ok := p.Pick("b"); ok {
			t.Fatalf("b got duplicate %d while piece 2 is still idle", i)
		}
		pickAll(t, p, "z")
		if _, ok := p.Pick("b"); !ok {
			t.Fatal("b got no duplicate once every piece is in flight")
		}
	})
	t.Run("not while the metainfo grows", func(t *testing.T) {
		t.Parallel()
		p := New(4, Options{Rand: seeded(1)})
		p.SetKnown(2)
		p.PeerHasAll("a")
		p.PeerHasAll("b")
		pickAll(t, p, "a")
		if i, ok := p.Pick("b"); ok {
			t.Fatalf("b got duplicate %d with metainfo incomplete", i)
		}
		p.SetKnown(4)
		pickAll(t, p, "a")
		if _, ok := p.Pick("b"); !ok {
			t.Fatal("b got no duplicate once the metainfo is complete")
		}
	})
	t.Run("only pieces the peer has", func(t *testing.T) {
		t.Parallel()
		p := newKnown(2, Options{})
		p.PeerHasAll("a")
		p.PeerHas("b", 1)
		pickAll(t, p, "a")
		if i, ok := p.Pick("b"); !ok || i != 1 {
			t.Fatalf("b picked %d, %v, want its only piece 1", i, ok)
		}
	})
}

func TestHaveClearsInFlight(t *testing.T) {
	t.Parallel()
	p := newKnown(1, Options{})
	p.PeerHasAll("a")
	p.PeerHasAll("b")
	p.Pick("a")
	p.Pick("b")
	if got := p.InFlight(0); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("InFlight(0) = %v, want [a b]", got)
	}
	p.Have(0)
	if got := p.InFlight(0); got != nil {
		t.Fatalf("InFlight(0) = %v after Have, want none", got)
	}
	if p.Requests("a") != 0 || p.Requests("b") != 0 {
		t.Fatalf("requests left: a %d, b %d", p.Requests("a"), p.Requests("b"))
	}
	p.Cancel(0, "b") // the loser's cancellation arrives late
	p.Have(0)
	if !p.Done() || p.Missing() != 0 {
		t.Fatalf("Done %v, Missing %d after Have", p.Done(), p.Missing())
	}
}

func TestDone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pieces int
		have   []int
		done   bool
		miss   int
		first  int
	}{
		{0, nil, true, 0, 0},
		{-5, nil, true, 0, 0},
		{3, nil, false, 3, 0},
		{3, []int{1, 2}, false, 1, 0},
		{3, []int{0, 2}, false, 1, 1},
		{3, []int{2, 0, 1, 1}, true, 0, 3},
	}
	for _, tt := range tests {
		p := newKnown(tt.pieces, Options{})
		p.PeerHasAll("a")
		for _, i := range tt.have {
			p.Have(i)
		}
		if p.Done() != tt.done || p.Missing() != tt.miss || p.FirstMissing() != tt.first {
			t.Errorf("New(%d) + Have %v: Done %v Missing %d FirstMissing %d, want %v %d %d",
				tt.pieces, tt.have, p.Done(), p.Missing(), p.FirstMissing(), tt.done, tt.miss, tt.first)
		}
		if i, ok := p.Pick("a"); ok == tt.done {
			t.Errorf("New(%d) + Have %v: Pick = %d, %v", tt.pieces, tt.have, i, ok)
		}
	}
}

func TestBadInputIgnored(t *testing.T) {
	t.Parallel()
	p := New(4, Options{Window: -1, MaxDup: -1, Rand: seeded(1)})
	p.SetKnown(-3)
	for _, i := range []int{-1, 4, 1 << 40} {
		p.PeerHas("a", i)
		p.Have(i)
		p.Cancel(i, "a")
		if p.Availability(i) != 0 || p.InFlight(i) != nil || p.Has(i) {
			t.Fatalf("piece %d out of range has state", i)
		}
	}
	if _, ok := p.Pick("a"); ok {
		t.Fatal("a peer that announced nothing got a pick")
	}
	p.SetKnown(4)
	p.PeerHasAll("a")
	if got := pickAll(t, p, "a"); len(got) != 4 {
		t.Fatalf("picked %v, want 4 pieces", got)
	}
	p.Cancel(0, "stranger")
	if p.Missing() != 4 {
		t.Fatalf("Missing() = %d, want 4", p.Missing())
	}

	huge := newKnown(10, Options{Window: int(^uint(0) >> 1)})
	huge.PeerHasAll("a")
	huge.Have(3)
	if got := pickAll(t, huge, "a"); len(got) != 9 {
		t.Fatalf("huge window picked %v, want 9 pieces", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opts Options
		ok   bool
	}{
		{DefaultOptions(), true},
		{Options{}, true},
		{Options{Window: -1}, false},
		{Options{MaxDup: -2}, false},
	}
	for _, tt := range tests {
		err := tt.opts.Validate()
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidOptions)) {
			t.Errorf("%+v.Validate() = %v, want ok %v", tt.opts, err, tt.ok)
		}
	}
}

// Not parallel: AllocsPerRun counts every goroutine's allocations.
func TestPickDoesNotAllocate(t *testing.T) {
	p := newKnown(1000, Options{})
	for k := range 50 {
		id := string(rune('A' + k))
		for i := k % 3; i < 1000; i += 1 + k%3 {
			p.PeerHas(id, i)
		}
	}
	p.PeerHasAll("seed")
	p.Pick("seed") // warm the scratch buffer
	allocs := testing.AllocsPerRun(100, func() {
		i, _ := p.Pick("seed")
		p.Cancel(i, "seed")
	})
	if allocs != 0 {
		t.Fatalf("Pick allocates %.1f times in the steady state, want 0", allocs)
	}
}

func BenchmarkPick(b *testing.B) {
	for _, bc := range []struct {
		name    string
		pieces  int
		held    float64
		pastWin bool // the window is all in flight: every Pick scans for the rarest
		onlyAll bool // one complete seeder, as when a swarm starts together
	}{
		{"1000pieces/window", 1000, 0, false, false},
		{"1000pieces/rarest", 1000, 0, true, false},
		{"1000pieces/halfheld/rarest", 1000, 0.5, true, false},
		{"1000pieces/seeder/rarest", 1000, 0, true, true},
		{"1Mpieces/rarest", 1 << 20, 0, true, false},
		{"1Mpieces/seeder/rarest", 1 << 20, 0, true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := seeded(7)
			p := newKnown(bc.pieces, Options{})
			peers := make([]string, 50)
			for k := range peers {
				peers[k] = "peer" + string(rune('A'+k))
				for i := range bc.pieces {
					if !bc.onlyAll && r.IntN(2) == 0 {
						p.PeerHas(peers[k], i)
					}
				}
			}
			p.PeerHasAll(peers[0])
			for i := range bc.pieces {
				if r.Float64() < bc.held {
					p.Have(i)
				}
			}
			if bc.pastWin {
				p.PeerHasAll("window")
				for range DefaultWindow {
					p.Pick("window")
				}
			}
			b.ReportAllocs()
			for k := 0; b.Loop(); k++ {
				id := peers[0]
				if !bc.onlyAll {
					id = peers[k%len(peers)]
				}
				if i, ok := p.Pick(id); ok {
					p.Cancel(i, id)
				}
			}
		})
	}
}

func TestSkip(t *testing.T) {
	t.Parallel()
	p := newKnown(4, Options{MaxDup: 1})
	for i := range 4 {
		p.PeerHas("seeder", i)
		p.PeerHas("agent", i)
	}
	p.Skip(1, "seeder")
	p.Skip(3, "seeder")
	p.Skip(9, "seeder") // out of range: ignored
	p.Skip(0, "nobody") // unknown peer: ignored
	if got := sorted(pickAll(t, p, "seeder")); !slices.Equal(got, []int{0, 2}) {
		t.Fatalf("seeder picks %v, want [0 2]: skipped pieces are not offered", got)
	}
	if got := sorted(pickAll(t, p, "agent")); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("agent picks %v, want [1 3]: skips are per peer", got)
	}
	for _, i := range []int{1, 3} {
		p.Cancel(i, "agent")
	}
	p.ClearSkips("seeder")
	p.ClearSkips("nobody")
	if got := sorted(pickAll(t, p, "seeder")); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("seeder picks %v after ClearSkips, want [1 3]", got)
	}
}

func TestSkipInEndgame(t *testing.T) {
	t.Parallel()
	p := newKnown(1, Options{})
	p.PeerHas("a", 0)
	p.PeerHas("b", 0)
	if i, ok := p.Pick("a"); !ok || i != 0 {
		t.Fatalf("Pick(a) = %d, %v", i, ok)
	}
	p.Skip(0, "b")
	if i, ok := p.Pick("b"); ok {
		t.Fatalf("Pick(b) = %d in endgame, want nothing: b refused piece 0", i)
	}
}

func TestPickOnlyThere(t *testing.T) {
	t.Parallel()
	p := newKnown(6, Options{})
	for i := range 6 {
		p.PeerHas("seeder", i)
	}
	for _, i := range []int{0, 1, 2} {
		p.PeerHas("agent", i)
	}
	p.Have(3)
	if got := sorted(pickOnlyAll(p, "seeder")); !slices.Equal(got, []int{4, 5}) {
		t.Fatalf("PickOnlyThere(seeder) = %v, want [4 5]: the pieces nobody else has and we lack", got)
	}
	if i, ok := p.PickOnlyThere("agent"); ok {
		t.Fatalf("PickOnlyThere(agent) = %d, want nothing: the seeder has all its pieces", i)
	}
	// The picks count as requests: they are not offered again.
	if i, ok := p.Pick("seeder"); !ok || i > 2 {
		t.Fatalf("Pick(seeder) = %d, %v, want one of 0..2", i, ok)
	}
	// A complete peer has every piece: nothing is only at the seeder.
	q := newKnown(2, Options{})
	q.PeerHas("seeder", 0)
	q.PeerHasAll("full")
	if i, ok := q.PickOnlyThere("seeder"); ok {
		t.Fatalf("PickOnlyThere with a complete peer = %d", i)
	}
	if i, ok := q.PickOnlyThere("nobody"); ok {
		t.Fatalf("PickOnlyThere(unknown peer) = %d", i)
	}
}

func pickOnlyAll(p *Picker, peer string) []int {
	var got []int
	for range p.Pieces() + 1 {
		i, ok := p.PickOnlyThere(peer)
		if !ok {
			break
		}
		got = append(got, i)
	}
	return got
}
