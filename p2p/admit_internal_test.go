package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// roster is an in-memory Roster: a set of listed IDs, an outage switch and
// a count of questions per ID. gate, if set, is received from before each
// answer, so a test can hold questions open.
type roster struct {
	mu     sync.Mutex
	listed map[string]bool
	down   bool
	asked  map[string]int
	gate   chan struct{}
}

var errDown = errors.New("roster: tracker unreachable")

func newRoster() *roster { return &roster{listed: map[string]bool{}, asked: map[string]int{}} }

func (r *roster) Listed(ctx context.Context, id string) (bool, error) {
	r.mu.Lock()
	gate := r.gate
	r.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked[id]++
	if r.down {
		return false, errDown
	}
	return r.listed[id], nil
}

func (r *roster) set(id peer.ID, listed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listed[id.String()] = listed
}

func (r *roster) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

func (r *roster) questions(id peer.ID) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.asked[id.String()]
}

// logCount is a slog handler counting records whose message starts with a
// prefix.
type logCount struct {
	mu     sync.Mutex
	prefix string
	n      int
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if strings.HasPrefix(r.Message, l.prefix) {
		l.n++
	}
	return nil
}
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCount) WithGroup(string) slog.Handler      { return l }
func (l *logCount) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

type admitRig struct {
	a    *Admission
	r    *roster
	clk  *clock.Mock
	reg  *prometheus.Registry
	logs *logCount
}

func newAdmitRig(t *testing.T, edit func(*AdmissionConfig)) *admitRig {
	t.Helper()
	cfg := DefaultAdmissionConfig()
	if edit != nil {
		edit(&cfg)
	}
	rig := &admitRig{r: newRoster(), clk: clock.NewMock(), reg: prometheus.NewRegistry(), logs: &logCount{prefix: "peer refused"}}
	a, err := NewAdmission(cfg, rig.r, WithClock(rig.clk), WithRegisterer(rig.reg), WithLogger(slog.New(rig.logs)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	rig.a = a
	return rig
}

func (rig *admitRig) refused(t *testing.T, reason string) float64 {
	t.Helper()
	mfs, err := rig.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "shoal_p2p_peers_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// settled waits for the background re-checks to end.
func (rig *admitRig) settled() { rig.a.wg.Wait() }

func newPeerID(t *testing.T) peer.ID {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestAdmissionRemembers: each peer is asked about once; the answer is
// kept for its TTL; a refused peer is logged once however often it is
// refused, and every refusal is counted.
func TestAdmissionRemembers(t *testing.T) {
	t.Parallel()
	rig := newAdmitRig(t, nil) // listed 1m, unlisted 3s
	friend, stranger := newPeerID(t), newPeerID(t)
	rig.r.set(friend, true)

	for range 5 {
		if !rig.a.Admit(friend) {
			t.Fatal("listed peer refused")
		}
		if rig.a.Admit(stranger) {
			t.Fatal("unlisted peer admitted")
		}
	}
	if f, s := rig.r.questions(friend), rig.r.questions(stranger); f != 1 || s != 1 {
		t.Errorf("asked %d times about the friend, %d about the stranger; want once each", f, s)
	}
	if got := rig.refused(t, "unlisted"); got != 5 {
		t.Errorf("refused{unlisted} = %v, want 5", got)
	}
	if n := rig.logs.count(); n != 1 {
		t.Errorf("%d refusal log lines, want 1", n)
	}

	// The stranger announces: it is admitted once its refusal expires.
	rig.r.set(stranger, true)
	if rig.a.Admit(stranger) {
		t.Fatal("refusal forgotten before its TTL")
	}
	rig.clk.Add(3 * time.Second)
	if !rig.a.Admit(stranger) {
		t.Fatal("listed peer still refused after the refusal's TTL")
	}
	if s := rig.r.questions(stranger); s != 2 {
		t.Errorf("asked %d times about the stranger, want 2", s)
	}

	// A listed peer is checked again after its TTL, in the background,
	// and admitted meanwhile; once the tracker drops it, it is refused.
	rig.r.set(friend, false)
	rig.clk.Add(time.Minute)
	if !rig.a.Admit(friend) {
		t.Fatal("listed peer refused while re-checked")
	}
	rig.settled()
	if f := rig.r.questions(friend); f != 2 {
		t.Errorf("asked %d times about the friend, want 2", f)
	}
	if rig.a.Admit(friend) {
		t.Fatal("peer admitted after the tracker dropped it")
	}
}

// TestAdmissionOutage: while the tracker cannot answer, admitted peers stay
// admitted and never-seen ones are refused, asked about at most once per
// UnlistedTTL.
func TestAdmissionOutage(t *testing.T) {
	t.Parallel()
	rig := newAdmitRig(t, nil)
	friend, vouched, stranger := newPeerID(t), newPeerID(t), newPeerID(t)
	rig.r.set(friend, true)
	rig.r.set(stranger, true) // listed, but never asked about before the outage
	if !rig.a.Admit(friend) {
		t.Fatal("listed peer refused")
	}
	rig.a.Vouch(vouched) // handed out by the tracker

	rig.r.setDown(true)
	for range 3 {
		rig.clk.Add(2 * time.Minute)
		if !rig.a.Admit(friend) || !rig.a.Admit(vouched) {
			t.Fatal("an admitted peer was refused during the outage")
		}
		rig.settled()
	}
	for range 4 {
		if rig.a.Admit(stranger) {
			t.Fatal("a never-seen peer was admitted during the outage")
		}
	}
	if s := rig.r.questions(stranger); s != 1 {
		t.Errorf("asked %d times about the stranger, want once per %s", s, DefaultAdmissionConfig().UnlistedTTL)
	}
	if got := rig.refused(t, "unavailable"); got != 4 {
		t.Errorf("refused{unavailable} = %v, want 4", got)
	}
	if rig.r.questions(vouched) == 0 {
		t.Error("a vouched peer was never checked again")
	}

	// The tracker is back: the stranger is admitted once asked again.
	rig.r.setDown(false)
	rig.clk.Add(3 * time.Second)
	if !rig.a.Admit(stranger) {
		t.Fatal("listed peer refused after the outage")
	}
}

// TestAdmissionBounds: new peers beyond MaxChecks asked about at once are
// refused unasked; concurrent callers about one peer share one question;
// refusals remembered stay within MaxRemembered.
func TestAdmissionBounds(t *testing.T) {
	t.Parallel()
	rig := newAdmitRig(t, func(c *AdmissionConfig) { c.MaxChecks = 1; c.MaxRemembered = 8 })
	gate := make(chan struct{})
	rig.r.mu.Lock()
	rig.r.gate = gate
	rig.r.mu.Unlock()
	slow, other := newPeerID(t), newPeerID(t)
	rig.r.set(slow, true)

	var wg sync.WaitGroup
	results := make([]bool, 3)
	for i := range results {
		wg.Go(func() { results[i] = rig.a.Admit(slow) })
	}
	// Wait until one question is open, then refuse the other peer unasked.
	for {
		rig.a.mu.Lock()
		n := rig.a.checks
		rig.a.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if rig.a.Admit(other) {
		t.Fatal("admitted beyond MaxChecks")
	}
	close(gate)
	wg.Wait()
	for i, ok := range results {
		if !ok {
			t.Errorf("caller %d refused a listed peer", i)
		}
	}
	if q := rig.r.questions(slow); q != 1 {
		t.Errorf("%d questions for concurrent callers, want 1", q)
	}
	if got := rig.refused(t, "busy"); got != 1 {
		t.Errorf("refused{busy} = %v, want 1", got)
	}

	for range 50 {
		rig.a.Admit(newPeerID(t))
	}
	rig.a.mu.Lock()
	n, refusals := len(rig.a.peers), rig.a.refusals
	rig.a.mu.Unlock()
	if refusals > 8 || n > 9 {
		t.Errorf("%d peers remembered, %d refusals; want at most 8 refusals", n, refusals)
	}
}
