package tracker

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// DNSScheme prefixes a tracker URL whose host name stands for every
// address it resolves to, each a replica: dns+https://trackers.shoal:7070
// (a Kubernetes headless Service, round-robin A records). Each address is
// asked over TLS with the name as SNI and as the name its certificate
// must carry, so the replicas share one certificate for the name.
const DNSScheme = "dns+"

// Lookup resolves a host name to its addresses (net.Resolver.LookupHost).
type Lookup func(ctx context.Context, host string) ([]string, error)

// SplitURLs splits repeated and comma-separated tracker URLs into a list,
// dropping empty items.
func SplitURLs(values []string) []string {
	var out []string
	for _, v := range values {
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimSpace(u); u != "" {
				out = append(out, u)
			}
		}
	}
	return out
}

// Endpoints makes a client of each tracker URL, with token and opts; a
// DNSScheme URL becomes one client per address lookup finds for its host
// (named address:port), the rest are named by their URL.
func Endpoints(ctx context.Context, urls []string, token string, lookup Lookup, opts ...Option) ([]Endpoint, error) {
	var eps []Endpoint
	for _, raw := range urls {
		rest, ok := strings.CutPrefix(raw, DNSScheme)
		if !ok {
			c, err := NewClient(raw, token, opts...)
			if err != nil {
				return nil, err
			}
			eps = append(eps, Endpoint{Name: raw, Member: c})
			continue
		}
		more, err := resolveEndpoints(ctx, rest, token, lookup, opts)
		if err != nil {
			return nil, err
		}
		eps = append(eps, more...)
	}
	return eps, nil
}

func resolveEndpoints(ctx context.Context, raw, token string, lookup Lookup, opts []Option) ([]Endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return nil, fmt.Errorf("tracker: %s%s: want dns+http(s)://name[:port]", DNSScheme, raw)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	addrs, err := lookup(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("%w: resolving the tracker replicas of %s: %w", ErrUnavailable, host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: %s resolves to no address", ErrUnavailable, host)
	}
	var eps []Endpoint
	for _, a := range addrs {
		each := *u
		each.Host = net.JoinHostPort(a, port)
		c, err := NewClient(each.String(), token, opts...)
		if err != nil {
			return nil, err
		}
		c.http = withServerName(c.http, host)
		eps = append(eps, Endpoint{Name: each.Host, Member: c})
	}
	return eps, nil
}

// withServerName returns a client like h whose TLS sends and checks the
// name host, whatever address it dials.
func withServerName(h *http.Client, host string) *http.Client {
	base, ok := h.Transport.(*http.Transport)
	if h.Transport == nil {
		base, ok = http.DefaultTransport.(*http.Transport)
	}
	if !ok {
		return h // a transport of the caller's own: it knows its TLS
	}
	tp := base.Clone()
	if tp.TLSClientConfig == nil {
		tp.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tp.TLSClientConfig.ServerName = host
	hc := *h
	hc.Transport = tp
	return &hc
}
