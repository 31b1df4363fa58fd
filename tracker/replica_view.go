package tracker

import (
	"context"
	"slices"
	"sync"
	"time"
)

// ReplicaView is one replica as an operator sees it (`shoal status`).
type ReplicaView struct {
	Name string
	// Err is its health probe's failure now; nil: it answers.
	Err error
	// PassedOver: requests skip it now, after one got no answer; its
	// digests are the next replica's until RetryAfter has passed.
	PassedOver bool
	// DownSince is when the request that began its current silence got no
	// answer; zero when it answered the last request it was sent.
	DownSince time.Time
	// Owned counts the keys given whose requests go to it now.
	Owned int
}

// View probes every replica's health (at most RequestTimeout each, all at
// once) and counts, of keys (the digests a node holds), those each one owns
// now, in the order of Names. It changes no failover state: a status
// report only reads. Empty while no replica is known.
func (r *Replicas) View(ctx context.Context, keys []string) []ReplicaView {
	r.mu.Lock()
	reps := slices.Clone(r.reps)
	now := r.now()
	out := make([]ReplicaView, len(reps))
	at := make(map[*replica]int, len(reps))
	for i, rep := range reps {
		at[rep] = i
		out[i] = ReplicaView{Name: rep.Name, PassedOver: now.Before(rep.downUntil), DownSince: rep.downSince}
	}
	for _, k := range keys {
		if o := r.orderLocked(k, now); len(o) > 0 {
			out[at[o[0]]].Owned++
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for i, rep := range reps {
		wg.Go(func() {
			_, out[i].Err = call(ctx, r.cfg.RequestTimeout, rep.Member, func(ctx context.Context, m Member) (struct{}, error) {
				return struct{}{}, m.Ping(ctx)
			})
		})
	}
	wg.Wait()
	return out
}
