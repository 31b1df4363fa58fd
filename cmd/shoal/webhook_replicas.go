package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"

	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
)

// webhookReplicas is a tracker's replica set as its webhooks see it
// (server.Replicas): looked up and probed at each webhook, as `shoal seed`
// does, so a registry that notifies one replica reaches every live one.
type webhookReplicas struct {
	urls   []string
	self   string // this tracker's name among them
	token  string // a seed token: webhooks take no other
	opts   []tracker.Option
	lookup seedLookup

	mu      sync.Mutex
	clients map[string]*tracker.Client // of the last Live
}

func newWebhookReplicas(urls []string, self, token string, opts ...tracker.Option) (*webhookReplicas, error) {
	if self == "" {
		return nil, errors.New("--replicas needs --replica-self: this tracker's name among them (its URL; for a dns+ name ADDRESS:PORT or its IP address)")
	}
	if token == "" {
		return nil, errors.New("--replicas passes webhooks on with a seed token: it needs --seed-token-file")
	}
	l := defaultSeedLookup()
	l.For = 0 // a webhook does not wait: the registry delivers it again
	return &webhookReplicas{urls: urls, self: self, token: token, opts: opts, lookup: l}, nil
}

func (w *webhookReplicas) Live(ctx context.Context) (tracker.SeedShard, error) {
	all, err := tracker.Endpoints(ctx, w.urls, w.token, w.lookup.Lookup, w.opts...)
	if err != nil {
		return tracker.SeedShard{}, err
	}
	self := selfIn(all, w.self)
	if self == "" {
		return tracker.SeedShard{}, fmt.Errorf("--replica-self %s is not one of the replicas of --replicas", w.self)
	}
	set, err := newSeedSetWith(ctx, w.lookup, w.urls, w.token, w.opts...)
	if err != nil {
		return tracker.SeedShard{}, err
	}
	clients := make(map[string]*tracker.Client, len(set.names))
	for i, n := range set.names {
		clients[n] = set.clients[i]
	}
	names := set.names
	if !slices.Contains(names, self) {
		// Its own probe failed (it is serving this webhook): it still
		// seeds its part, as agents will ask it once it answers them.
		names = append(slices.Clone(names), self)
	}
	w.mu.Lock()
	w.clients = clients
	w.mu.Unlock()
	return tracker.SeedShard{Of: names, Self: self}, nil
}

// selfIn is the name of the replica self stands for among eps: the same
// name, or, for a bare IP address (a pod's, as Kubernetes gives it), the
// one replica of a dns+ name at that address; "" if none is.
func selfIn(eps []tracker.Endpoint, self string) string {
	ip := net.ParseIP(self)
	found := ""
	for _, e := range eps {
		if e.Name == self {
			return self
		}
		if host, _, err := net.SplitHostPort(e.Name); err == nil && ip != nil && ip.Equal(net.ParseIP(host)) {
			if found != "" {
				return "" // two replicas at one address: name it with its port
			}
			found = e.Name
		}
	}
	return found
}

func (w *webhookReplicas) Forward(ctx context.Context, name, route, contentType string, body []byte, shard tracker.SeedShard) error {
	w.mu.Lock()
	c := w.clients[name]
	w.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%w: no client of replica %s", tracker.ErrUnavailable, name)
	}
	return c.ForwardWebhook(ctx, route, contentType, body, shard)
}

var _ server.Replicas = (*webhookReplicas)(nil)
