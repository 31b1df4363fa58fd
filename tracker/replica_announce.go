package tracker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// share is what one announce tells one replica.
type share struct {
	rep   *replica
	blobs []BlobState
}

// Announce tells each live replica the blobs of a it owns, and the owner
// of a's peer ID and every replica told of blobs last time (so it
// withdraws them) at least who a is. A replica that gives no answer is
// passed over and its blobs are announced to their next owners in the same
// call. It returns the shortest interval the replicas asked for; it fails
// only when no replica took the announce.
func (r *Replicas) Announce(ctx context.Context, a Announce) (time.Duration, error) {
	if err := a.Validate(); err != nil {
		return 0, err
	}
	r.maybeRefresh(ctx)
	done := make(map[*replica]int) // replica → blobs it answered for in this call
	var interval time.Duration
	var errs []error
	for range len(r.Names()) + 1 {
		var work []share
		for _, sh := range r.shares(a) {
			if n, ok := done[sh.rep]; !ok || n != len(sh.blobs) {
				work = append(work, sh)
			}
		}
		if len(work) == 0 {
			break
		}
		results := make([]error, len(work))
		intervals := make([]time.Duration, len(work))
		var wg sync.WaitGroup
		for i, sh := range work {
			wg.Go(func() {
				intervals[i], results[i] = call(ctx, r.cfg.RequestTimeout, sh.rep.Member, func(ctx context.Context, m Member) (time.Duration, error) {
					return m.Announce(ctx, Announce{Peer: a.Peer, Blobs: sh.blobs})
				})
			})
		}
		wg.Wait()
		moved := false
		for i, sh := range work {
			err := results[i]
			switch {
			case err == nil:
				done[sh.rep] = len(sh.blobs)
				r.answered(sh.rep)
				if interval == 0 || intervals[i] < interval {
					interval = intervals[i]
				}
				r.told(sh.rep, len(sh.blobs) > 0)
			case Unreachable(err) && ctx.Err() == nil:
				if r.down(sh.rep, err) {
					moved = true
				}
				errs = append(errs, fmt.Errorf("%s: %w", sh.rep.Name, err))
			default:
				done[sh.rep] = len(sh.blobs) // an answer: asking again would not help
				errs = append(errs, fmt.Errorf("%s: %w", sh.rep.Name, err))
			}
		}
		if !moved {
			break
		}
	}
	if interval == 0 {
		if len(errs) == 0 {
			return 0, errNoReplica
		}
		return 0, errors.Join(errs...)
	}
	if len(errs) > 0 {
		r.log.Warn("announce refused by a tracker replica", "err", errors.Join(errs...))
	}
	return interval, nil
}

// shares splits a over the live replicas by the owner of each blob; the
// owner of the peer ID and replicas told of blobs last time get a share,
// empty if they own none.
func (r *Replicas) shares(a Announce) []share {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reps) == 0 {
		return nil
	}
	now := r.now()
	idx := make(map[*replica]int)
	var out []share
	add := func(rep *replica) int {
		i, ok := idx[rep]
		if !ok {
			i = len(out)
			idx[rep] = i
			out = append(out, share{rep: rep})
		}
		return i
	}
	add(r.orderLocked(a.Peer.ID, now)[0])
	for _, rep := range r.reps {
		if r.sent[rep.Name] && !now.Before(rep.downUntil) {
			add(rep)
		}
	}
	for _, b := range a.Blobs {
		i := add(r.orderLocked(b.Digest.String(), now)[0])
		out[i].blobs = append(out[i].blobs, b)
	}
	return out
}

// told records whether rep's last announce listed blobs.
func (r *Replicas) told(rep *replica, blobs bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if blobs {
		r.sent[rep.Name] = true
	} else {
		delete(r.sent, rep.Name)
	}
}

// maybeRefresh asks WithRefresh's function for the endpoints when due; a
// failure keeps the ones known. While none is known it is due every
// emptyRefresh, and a failure is logged at debug level only: whoever made
// the set has said once that the trackers are not there yet.
func (r *Replicas) maybeRefresh(ctx context.Context) {
	if r.refresh == nil {
		return
	}
	r.mu.Lock()
	empty := len(r.reps) == 0
	due := !r.now().Before(r.nextRefresh)
	r.mu.Unlock()
	if !due {
		return
	}
	err := r.Refresh(ctx)
	switch {
	case err != nil && empty:
		r.log.Debug("tracker replicas: none found yet", "err", err)
	case err != nil:
		r.log.Warn("tracker replicas: refreshing the list failed; keeping the one known", "err", err)
	case empty:
		r.log.Info("tracker replicas found", "tracker", strings.Join(r.Names(), ","))
	}
}

// Refresh asks WithRefresh's function for the endpoints now and takes
// them; on failure the ones known stay (none, at first: then Ping tells
// why). The next refresh is due an interval later (5 s while none is
// known). Without WithRefresh it does nothing.
func (r *Replicas) Refresh(ctx context.Context) error {
	if r.refresh == nil {
		return nil
	}
	eps, err := r.refresh(ctx)
	if err == nil {
		err = r.set(eps)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	empty := len(r.reps) == 0
	r.nextRefresh = r.now().Add(r.refreshEvery(empty))
	r.refreshErr = nil
	if empty {
		r.refreshErr = err
	}
	return err
}
