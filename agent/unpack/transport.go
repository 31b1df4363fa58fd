package unpack

import (
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
)

// AgentTransport sends requests meant for registry to a Shoal agent instead,
// the way containerd talks to a mirror: same path, plain HTTP to agent
// (host:port), and the upstream registry in the ns query parameter. Requests
// to other hosts (token services, redirects) pass through to base unchanged.
func AgentTransport(base http.RoundTripper, agent string, registry name.Registry) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	ns := registry.RegistryStr()
	if ns == name.DefaultRegistry {
		// ggcr talks to index.docker.io; containerd and the agent call it
		// docker.io.
		ns = "docker.io"
	}
	return &agentTransport{base: base, agent: agent, host: registry.RegistryStr(), ns: ns}
}

type agentTransport struct {
	base  http.RoundTripper
	agent string
	host  string
	ns    string
}

var _ http.RoundTripper = (*agentTransport)(nil)

func (t *agentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != t.host {
		return t.base.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	u := *req.URL
	u.Scheme, u.Host = "http", t.agent
	q := u.Query()
	q.Set("ns", t.ns)
	u.RawQuery = q.Encode()
	r.URL, r.Host = &u, t.agent
	return t.base.RoundTrip(r)
}
