package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/shoal-dev/shoal/tracker"
)

// Replicas is the set of tracker replicas this tracker is one of, as a
// registry webhook needs it: the registry notifies one replica (the
// cluster's Service), which passes the event on to every other live one,
// each taking the blobs it owns (tracker.SeedShard), so that each blob is
// fetched by its owner's seeder only, as agents ask for it.
type Replicas interface {
	// Live is the shard of this tracker among the replicas answering now.
	Live(ctx context.Context) (tracker.SeedShard, error)
	// Forward passes a webhook on to the replica named, for shard.
	Forward(ctx context.Context, name, route, contentType string, body []byte, shard tracker.SeedShard) error
}

// WithReplicas makes webhooks shard over rs (default: this tracker seeds
// every blob a webhook names).
func WithReplicas(rs Replicas) Option {
	return func(s *Server) { s.replicas = rs }
}

// webhookShard is the shard this tracker takes of a webhook: the one a
// replica that passed it on named (ShardHeader), or, with replicas, its
// own among the live ones after passing the webhook on to the others;
// nil (every blob) when it runs alone.
func (s *Server) webhookShard(ctx context.Context, r *http.Request, body []byte) (*tracker.SeedShard, error) {
	if v := r.Header.Get(tracker.ShardHeader); v != "" {
		return tracker.ParseShard(v)
	}
	if s.replicas == nil {
		return nil, nil
	}
	self, err := s.replicas.Live(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: tracker replicas: %w", tracker.ErrUnavailable, err)
	}
	if len(self.Of) < 2 {
		return nil, nil
	}
	errs := make([]error, len(self.Of))
	var wg sync.WaitGroup
	for i, name := range self.Of {
		if name == self.Self {
			continue
		}
		wg.Go(func() {
			shard := tracker.SeedShard{Of: self.Of, Self: name}
			if err := s.replicas.Forward(ctx, name, r.URL.Path, r.Header.Get("Content-Type"), body, shard); err != nil {
				errs[i] = fmt.Errorf("replica %s: %w", name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		// The registry delivers the event again; the replicas that took it
		// find their job then (seed jobs are idempotent).
		return nil, fmt.Errorf("%w: passing the webhook on: %w", tracker.ErrUnavailable, err)
	}
	return &self, nil
}
