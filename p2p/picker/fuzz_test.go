package picker

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// model is a brute-force reference for the Picker's state and policy.
type model struct {
	n, known, window, maxDup int
	held                     []bool
	peers                    map[string]*modelPeer
	inflight                 []map[string]bool
}

type modelPeer struct {
	all bool
	has []bool
}

func newModel(n, window, maxDup int) *model {
	m := &model{n: n, window: window, maxDup: maxDup, held: make([]bool, n), peers: map[string]*modelPeer{}}
	for range n {
		m.inflight = append(m.inflight, map[string]bool{})
	}
	return m
}

func (m *model) peer(id string) *modelPeer {
	if m.peers[id] == nil {
		m.peers[id] = &modelPeer{has: make([]bool, m.n)}
	}
	return m.peers[id]
}

func (m *model) hasPiece(id string, i int) bool {
	q := m.peers[id]
	return q != nil && (q.all || q.has[i])
}

func (m *model) avail(i int) int {
	c := 0
	for id := range m.peers {
		if m.hasPiece(id, i) {
			c++
		}
	}
	return c
}

func (m *model) first() int {
	for i, h := range m.held {
		if !h {
			return i
		}
	}
	return m.n
}

// idle reports whether piece i is known, missing and requested from nobody.
func (m *model) idle(i int) bool { return i < m.known && !m.held[i] && len(m.inflight[i]) == 0 }

// check compares p's observable state with m.
func (m *model) check(t *testing.T, p *Picker) {
	t.Helper()
	missing := 0
	for i := range m.n {
		if !m.held[i] {
			missing++
		}
		if got, want := p.Availability(i), m.avail(i); got != want {
			t.Fatalf("Availability(%d) = %d, want %d", i, got, want)
		}
		got := slices.Sorted(slices.Values(p.InFlight(i)))
		if want := slices.Sorted(maps.Keys(m.inflight[i])); !slices.Equal(got, want) {
			t.Fatalf("InFlight(%d) = %v, want %v", i, got, want)
		}
		if p.Has(i) != m.held[i] {
			t.Fatalf("Has(%d) = %v, want %v", i, p.Has(i), m.held[i])
		}
	}
	if p.Missing() != missing || p.Done() != (missing == 0) || p.FirstMissing() != m.first() || p.Known() != m.known {
		t.Fatalf("Missing %d Done %v FirstMissing %d Known %d, want %d %v %d %d",
			p.Missing(), p.Done(), p.FirstMissing(), p.Known(), missing, missing == 0, m.first(), m.known)
	}
}

// checkPick verifies that Pick(id) = (i, ok) follows the policy, then
// records the request in m.
func (m *model) checkPick(t *testing.T, id string, i int, ok bool) {
	t.Helper()
	var cands, window []int
	anyIdle := false
	first := m.first()
	for j := range m.n {
		if !m.idle(j) {
			continue
		}
		anyIdle = true
		if m.hasPiece(id, j) {
			cands = append(cands, j)
			if j < first+m.window {
				window = append(window, j)
			}
		}
	}
	var dups []int // endgame candidates
	if !anyIdle && m.known == m.n {
		for j := range m.n {
			if n := len(m.inflight[j]); n > 0 && n < m.maxDup && m.hasPiece(id, j) && !m.inflight[j][id] {
				dups = append(dups, j)
			}
		}
	}
	rarest := func(set []int) int {
		best := -1
		for _, j := range set {
			if best < 0 || m.avail(j) < best {
				best = m.avail(j)
			}
		}
		return best
	}
	switch {
	case len(window) > 0:
		if !ok || !slices.Contains(window, i) || m.avail(i) != rarest(window) {
			t.Fatalf("Pick(%s) = %d, %v, want the rarest of window %v", id, i, ok, window)
		}
	case len(cands) > 0:
		if !ok || !slices.Contains(cands, i) || m.avail(i) != rarest(cands) {
			t.Fatalf("Pick(%s) = %d, %v, want the rarest of %v", id, i, ok, cands)
		}
	case len(dups) > 0:
		fewest := m.maxDup
		for _, j := range dups {
			fewest = min(fewest, len(m.inflight[j]))
		}
		if !ok || !slices.Contains(dups, i) || len(m.inflight[i]) != fewest {
			t.Fatalf("Pick(%s) = %d, %v, want an endgame duplicate with fewest copies among %v", id, i, ok, dups)
		}
	default:
		if ok {
			t.Fatalf("Pick(%s) = %d, want nothing", id, i)
		}
	}
	if ok {
		m.inflight[i][id] = true
	}
}

// FuzzPicker runs random operations against a Picker and the reference
// model: a pick is never held, unknown, unavailable, already requested
// from the peer or over MaxDup, and follows the window, rarest-first and
// endgame rules; then it simulates a swarm that must complete.
func FuzzPicker(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{10, 2, 2, 1, 0, 10, 3, 0, 5, 0, 5, 0, 5, 1, 1, 5, 1})
	f.Add([]byte{40, 8, 3, 9, 0, 20, 2, 7, 2, 9, 5, 9, 5, 7, 4, 7, 5, 9, 6, 1, 5, 9, 0, 40, 5, 7, 5, 7, 1, 3, 1, 1, 5, 9})
	f.Add([]byte("a short blob with few peers and many announcements of pieces"))
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b)
		}
		n, window, maxDup, seed := next()%48, 1+next()%10, 1+next()%3, next()
		p := New(n, Options{Window: window, MaxDup: maxDup, Rand: seeded(uint64(seed))})
		m := newModel(n, window, maxDup)
		peers := []string{"p0", "p1", "p2", "p3"}
		piece := func() int { return next()%(n+2) - 1 } // sometimes out of range
		for len(data) > 0 {
			op, id := next(), peers[next()%len(peers)]
			switch op % 7 {
			case 0:
				k := piece()
				p.SetKnown(k)
				m.known = max(m.known, min(k, n))
			case 1:
				if i := piece(); i >= 0 && i < n {
					p.Have(i)
					m.held[i] = true
					clear(m.inflight[i])
				}
			case 2:
				if i := piece(); i >= 0 && i < n {
					p.PeerHas(id, i)
					m.peer(id).has[i] = true
				}
			case 3:
				p.PeerHasAll(id)
				m.peer(id).all = true
			case 4:
				p.PeerGone(id)
				delete(m.peers, id)
				for _, s := range m.inflight {
					delete(s, id)
				}
			case 5:
				i, ok := p.Pick(id)
				m.checkPick(t, id, i, ok)
			case 6:
				if i := piece(); i >= 0 && i < n {
					p.Cancel(i, id)
					delete(m.inflight[i], id)
				}
			}
			m.check(t, p)
		}
		if n > 0 {
			simulateSwarm(t, swarm{pieces: n, peers: 1 + window%6, maxDup: maxDup, seed: uint64(seed)})
		}
	})
}

type swarm struct {
	pieces, peers, maxDup int
	seed                  uint64
}

// simulateSwarm runs one download against a seeder that publishes the
// metainfo progressively and peers that hold random pieces, come and go,
// and fail some requests. Every pick eventually succeeds, so the download
// must complete.
func simulateSwarm(t *testing.T, s swarm) {
	t.Helper()
	r := seeded(s.seed)
	p := New(s.pieces, Options{MaxDup: s.maxDup, Rand: seeded(s.seed + 1)})
	p.PeerHasAll("seeder")
	ids := []string{"seeder"}
	has := map[string][]bool{}
	for k := range s.peers {
		id := fmt.Sprintf("peer%d", k)
		ids = append(ids, id)
		has[id] = make([]bool, s.pieces)
		for i := range s.pieces {
			if r.IntN(3) == 0 {
				has[id][i] = true
				p.PeerHas(id, i)
			}
		}
	}
	type req struct {
		piece int
		peer  string
	}
	var pending []req
	failures := 4 * s.pieces
	const slots = 3
	for step := 0; !p.Done(); step++ {
		if step > 50*s.pieces+100 {
			t.Fatalf("%+v: stuck after %d steps with %d missing, %d pending", s, step, p.Missing(), len(pending))
		}
		p.SetKnown(p.Known() + r.IntN(3))
		if k := r.IntN(8); k > 0 && k <= s.peers && r.IntN(10) == 0 {
			// A peer leaves and comes back with what it had.
			id := ids[k]
			p.PeerGone(id)
			pending = slices.DeleteFunc(pending, func(q req) bool { return q.peer == id })
			for i, h := range has[id] {
				if h {
					p.PeerHas(id, i)
				}
			}
		}
		for _, id := range ids {
			for p.Requests(id) < slots {
				i, ok := p.Pick(id)
				if !ok {
					break
				}
				if p.Has(i) || i >= p.Known() || (id != "seeder" && !has[id][i]) {
					t.Fatalf("%+v: Pick(%s) = %d: held, unknown or unavailable", s, id, i)
				}
				pending = append(pending, req{i, id})
			}
		}
		if len(pending) == 0 {
			continue
		}
		k := r.IntN(len(pending))
		q := pending[k]
		if failures > 0 && r.IntN(4) == 0 {
			failures--
			p.Cancel(q.piece, q.peer)
			pending = slices.Delete(pending, k, k+1)
			continue
		}
		losers := p.InFlight(q.piece)
		if !slices.Contains(losers, q.peer) {
			t.Fatalf("%+v: InFlight(%d) = %v lacks %s", s, q.piece, losers, q.peer)
		}
		p.Have(q.piece)
		for _, id := range losers {
			p.Cancel(q.piece, id) // late cancellations are harmless
		}
		pending = slices.DeleteFunc(pending, func(x req) bool { return x.piece == q.piece })
	}
	if len(pending) != 0 {
		t.Fatalf("%+v: done with %d requests pending", s, len(pending))
	}
}

func TestSwarmCompletes(t *testing.T) {
	t.Parallel()
	for seed := range uint64(30) {
		r := rand.New(rand.NewPCG(seed, 0))
		s := swarm{pieces: 1 + r.IntN(300), peers: r.IntN(8), maxDup: 1 + r.IntN(3), seed: seed}
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			simulateSwarm(t, s)
		})
	}
}
