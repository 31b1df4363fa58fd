package p2p_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/p2p"
)

// listing is an in-memory p2p.Roster: the IDs the tracker lists.
type listing struct {
	mu     sync.Mutex
	listed map[string]bool
}

func (l *listing) Listed(_ context.Context, id string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.listed[id], nil
}

func (l *listing) set(id string, listed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listed[id] = listed
}

// TestAdmissionGatesRequests: a host gated by an Admission serves a listed
// peer, refuses a peer never listed (connection and pieces, both ways), and
// once the tracker stops listing a peer it had admitted, refuses that
// peer's requests on the connection it already has.
func TestAdmissionGatesRequests(t *testing.T) {
	t.Parallel()
	roster := &listing{listed: map[string]bool{}}
	clk := clock.NewMock()
	reg := prometheus.NewRegistry()
	adm, err := p2p.NewAdmission(p2p.DefaultAdmissionConfig(), roster, p2p.WithClock(clk), p2p.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(adm.Close)
	gated := newNode(t, func(c *p2p.Config) { c.Admit = adm.Admit })
	friend, stranger := newNode(t, nil), newNode(t, nil)
	roster.set(friend.ID().String(), true)
	info := gated.src.AddBlob(randomBytes(t, 4096), 1024)
	ctx := testContext(t)

	connect(t, friend, gated)
	if _, err := friend.Fetch(ctx, gated.ID(), info.Digest, 0, info.Pieces[0], nil); err != nil {
		t.Fatalf("listed peer cannot fetch: %v", err)
	}
	stranger.Connect(ctx, gated.AddrInfo())
	if _, err := stranger.Fetch(ctx, gated.ID(), info.Digest, 0, info.Pieces[0], nil); err == nil {
		t.Error("a peer never listed fetched a piece")
	}
	if err := gated.Connect(ctx, stranger.AddrInfo()); err == nil {
		t.Error("dialed a peer never listed")
	}

	// The tracker drops the friend. Its answer expires; the next request
	// is still served while the background check runs, then refused.
	roster.set(friend.ID().String(), false)
	clk.Add(p2p.DefaultAdmissionConfig().ListedTTL)
	refused := false
	for n := 0; !refused && ctx.Err() == nil; n = (n + 1) % len(info.Pieces) {
		_, err := friend.Fetch(ctx, gated.ID(), info.Digest, n, info.Pieces[n], nil)
		refused = err != nil
		if !refused {
			time.Sleep(10 * time.Millisecond) // let the background check land
		}
	}
	if !refused {
		t.Fatal("a peer the tracker dropped is still served")
	}
	if got := counterValueWith(t, reg, "shoal_p2p_peers_refused_total", "reason", "unlisted"); got < 2 {
		t.Errorf("refused{unlisted} = %v, want the stranger's and the dropped friend's", got)
	}
}

// counterValueWith sums the samples of a counter family whose label is value.
func counterValueWith(t *testing.T, reg *prometheus.Registry, metric, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
