package sim

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/shoal-dev/shoal/p2p"
)

// tracer records, when Config.Trace is set, where a rollout's time goes:
// the bytes each link carried in each bin of virtual time (so the
// utilisation of the seeder's upload, its origin fetch and the agents'
// links over time), the answers of every piece request (sent, Busy,
// Rationed), and when each piece reached the seeder, its first agent and
// its last. It only observes: a traced run is the same run.
type tracer struct {
	bin   time.Duration
	start time.Time
	sim   *Sim

	mu    sync.Mutex
	bytes map[int][]float64 // by resource, per bin
	// per bin: answers of the seeder and of agents
	seederSent, seederBusy, seederRationed []int
	agentSent, agentBusy                   []int
	dup                                    []float64 // seeder bytes of pieces it had uploaded before, per bin
	seederCopies                           map[[2]int]int
	atSeeder, first, last                  map[[2]int]time.Duration   // (layer, piece)
	got                                    map[[2]int]int             // agents that received it
	gotAt                                  map[[2]int][]time.Duration // when each copy reached an agent, in order
	fromSeeder                             map[int]int                // pieces each agent got from the seeder
	// from request to answer at the client, seconds: the seeder's
	// Rationed answers, pieces fetched from the seeder, from agents
	rationedLat, seederLat, agentLat []float64
}

func newTracer(s *Sim, bin time.Duration) *tracer {
	return &tracer{
		bin: bin, start: s.start, sim: s, bytes: make(map[int][]float64),
		seederCopies: make(map[[2]int]int),
		atSeeder:     make(map[[2]int]time.Duration), first: make(map[[2]int]time.Duration),
		last: make(map[[2]int]time.Duration), got: make(map[[2]int]int), fromSeeder: make(map[int]int),
		gotAt: make(map[[2]int][]time.Duration),
	}
}

func grow[T int | float64](s []T, i int) []T {
	for len(s) <= i {
		s = append(s, 0)
	}
	return s
}

// advance spreads the bytes each flow moved in [from, to) over the bins.
// Called by the network with its lock held, before the flows move on.
func (t *tracer) advance(flows []*flow, from, to time.Time) {
	if t == nil || !to.After(from) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	a, b := from.Sub(t.start), to.Sub(t.start)
	for i := int(a / t.bin); time.Duration(i)*t.bin < b; i++ {
		lo, hi := max(a, time.Duration(i)*t.bin), min(b, time.Duration(i+1)*t.bin)
		dt := (hi - lo).Seconds()
		for _, f := range flows {
			for _, r := range f.res {
				t.bytes[r] = grow(t.bytes[r], i)
				t.bytes[r][i] += f.rate * dt
			}
		}
	}
}

// origin records that the seeder holds piece p of layer now.
func (t *tracer) origin(layer, p int) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.atSeeder[[2]int{layer, p}] = time.Since(t.start)
}

// served records the answer of node from to a request of node to.
func (t *tracer) served(from, to *node, layer, p int, sent int64, err error) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Since(t.start)
	i := int(now / t.bin)
	k := [2]int{layer, p}
	seeder := from.id == 0
	switch {
	case err == nil:
		if seeder {
			t.seederSent = grow(t.seederSent, i)
			t.seederSent[i]++
			if t.seederCopies[k] > 0 {
				t.dup = grow(t.dup, i)
				t.dup[i] += float64(sent)
			}
			t.seederCopies[k]++
			t.fromSeeder[to.id]++
		} else {
			t.agentSent = grow(t.agentSent, i)
			t.agentSent[i]++
		}
		if _, ok := t.first[k]; !ok {
			t.first[k] = now
		}
		t.got[k]++
		t.gotAt[k] = append(t.gotAt[k], now)
		t.last[k] = now
	case errors.Is(err, p2p.ErrBusy) && seeder:
		t.seederBusy = grow(t.seederBusy, i)
		t.seederBusy[i]++
	case errors.Is(err, p2p.ErrBusy):
		t.agentBusy = grow(t.agentBusy, i)
		t.agentBusy[i]++
	case errors.Is(err, p2p.ErrRationed):
		t.seederRationed = grow(t.seederRationed, i)
		t.seederRationed[i]++
	}
}

// fetched records how long a request of from took, from its sending to
// its answer at the client.
func (t *tracer) fetched(from *node, d time.Duration, err error) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err == nil && from.id == 0:
		t.seederLat = append(t.seederLat, d.Seconds())
	case err == nil:
		t.agentLat = append(t.agentLat, d.Seconds())
	case from.id == 0 && errors.Is(err, p2p.ErrRationed):
		t.rationedLat = append(t.rationedLat, d.Seconds())
	}
}

func at[T int | float64](s []T, i int) T {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// write prints the trace: a row per bin, then the spread of the pieces.
func (t *tracer) write(w io.Writer, r *Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.sim
	seeder := s.nodes[0]
	bins := int(r.Virtual/t.bin) + 1
	util := func(res, i int) float64 {
		return at(t.bytes[res], i) / (s.net.caps[res] * t.bin.Seconds()) * 100
	}
	fmt.Fprintf(w, "trace, bins of %s: utilisation %% of the seeder's upload (dup: of it, pieces sent before), its download (origin), agents' upload and download (mean over agents still pulling or done); answers per bin\n", t.bin)
	fmt.Fprintln(w, "| t (s) | seeder up | dup | seeder down | agents up | agents down | done | seeder sent | seeder busy | rationed | agents sent | agents busy |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for i := range bins {
		var up, down float64
		for _, n := range s.nodes[1:] {
			up += util(n.up, i)
			down += util(n.down, i)
		}
		done := 0
		for _, d := range r.Done {
			if d <= time.Duration(i+1)*t.bin {
				done++
			}
		}
		agents := float64(len(s.nodes) - 1)
		fmt.Fprintf(w, "| %.2f | %.0f | %.0f | %.0f | %.0f | %.0f | %d | %d | %d | %d | %d | %d |\n",
			(time.Duration(i) * t.bin).Seconds(), util(seeder.up, i), at(t.dup, i)/(s.net.caps[seeder.up]*t.bin.Seconds())*100,
			util(seeder.down, i), up/agents, down/agents, done,
			at(t.seederSent, i), at(t.seederBusy, i), at(t.seederRationed, i), at(t.agentSent, i), at(t.agentBusy, i))
	}
	// Spread: from the seeder's hold to the first agent, from the first
	// agent to the last.
	var toFirst, spread []float64
	lastAll := make([]time.Duration, len(s.layers))
	lastOrigin := make([]time.Duration, len(s.layers))
	agents := len(s.nodes) - 1 - r.Left
	for k, a := range t.atSeeder {
		lastOrigin[k[0]] = max(lastOrigin[k[0]], a)
		if f, ok := t.first[k]; ok {
			toFirst = append(toFirst, (f - a).Seconds())
		}
		if t.got[k] >= agents {
			spread = append(spread, (t.last[k] - t.first[k]).Seconds())
			lastAll[k[0]] = max(lastAll[k[0]], t.last[k])
		}
	}
	q := func(v []float64, p float64) float64 {
		if len(v) == 0 {
			return math.NaN()
		}
		slices.Sort(v)
		return v[min(len(v)-1, int(p*float64(len(v))))]
	}
	fmt.Fprintf(w, "pieces: seeder hold -> first agent p50 %.2fs p90 %.2fs max %.2fs; first agent -> every agent p50 %.2fs p90 %.2fs max %.2fs\n",
		q(toFirst, 0.5), q(toFirst, 0.9), q(toFirst, 1), q(spread, 0.5), q(spread, 0.9), q(spread, 1))
	fmt.Fprint(w, "pieces from the seeder, by agent:")
	for _, n := range s.nodes[1:] {
		fmt.Fprintf(w, " %d", t.fromSeeder[n.id])
	}
	fmt.Fprintln(w)
	for _, l := range [...]struct {
		name string
		v    []float64
	}{{"seeder's Rationed answers", t.rationedLat}, {"pieces from the seeder", t.seederLat}, {"pieces from agents", t.agentLat}} {
		fmt.Fprintf(w, "request to answer at the client, %s: p10 %.2fs p50 %.2fs p90 %.2fs max %.2fs (%d)\n",
			l.name, q(l.v, 0.1), q(l.v, 0.5), q(l.v, 0.9), q(l.v, 1), len(l.v))
	}
	t.writeTail(w, agents, q)
	for l := range s.layers {
		fmt.Fprintf(w, "layer %d: last piece at the seeder %.2fs, every piece at every agent %.2fs\n", l, lastOrigin[l].Seconds(), lastAll[l].Seconds())
	}
}

// WriteTrace writes the trace of a run with Config.Trace set.
func (r *Result) WriteTrace(w io.Writer) {
	if r.tracer != nil {
		r.tracer.write(w, r)
	}
}

// tailSpan is how close to the seeder's last hold from the origin a piece
// must reach the seeder to count among the tail's (writeTail).
const tailSpan = 500 * time.Millisecond

// writeTail prints how the pieces spread: from the seeder's hold to a
// tenth, half, nine tenths and every one of the agents, for all pieces
// and for those the seeder got within tailSpan of its last (the end game,
// which no later piece overlaps).
func (t *tracer) writeTail(w io.Writer, agents int, q func([]float64, float64) float64) {
	var lastHold time.Duration
	for _, a := range t.atSeeder {
		lastHold = max(lastHold, a)
	}
	fracs := [...]float64{0.1, 0.5, 0.9, 1}
	var all, tail [len(fracs)][]float64
	for k, a := range t.atSeeder {
		got := t.gotAt[k]
		for i, f := range fracs {
			j := int(math.Ceil(f*float64(agents))) - 1
			if j < 0 || j >= len(got) {
				continue
			}
			d := (got[j] - a).Seconds()
			all[i] = append(all[i], d)
			if a >= lastHold-tailSpan {
				tail[i] = append(tail[i], d)
			}
		}
	}
	for _, row := range [...]struct {
		name string
		v    *[len(fracs)][]float64
	}{{"every piece", &all}, {fmt.Sprintf("pieces held in the seeder's last %s", tailSpan), &tail}} {
		fmt.Fprintf(w, "spread, %s (%d): seeder hold ->", row.name, len(row.v[0]))
		for i, f := range fracs {
			fmt.Fprintf(w, " %.0f%% of agents p50 %.2fs max %.2fs;", f*100, q(row.v[i], 0.5), q(row.v[i], 1))
		}
		fmt.Fprintln(w)
	}
}
