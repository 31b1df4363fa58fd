package registryshim

import (
	"strings"

	"github.com/shoal-dev/shoal/registryshim/grammar"
)

// The registry-in-path form: /v2/<registry-host>/<repository>/... names the
// registry in the path's first component. containers/image (CRI-O, podman,
// skopeo) sends no ?ns= to a mirror, so one mirror serves several registries
// only when its location carries the registry, as in
//
//	[[registry]]
//	prefix = "docker.io"
//	location = "docker.io"
//	[[registry.mirror]]
//	location = "127.0.0.1:5050/docker.io"
//
// The first component is taken as a registry only when ?ns= is absent and
// the Handler was told that host is a configured registry
// (WithPathRegistries), so a repository of the default upstream whose first
// component merely looks like a host name is served as before.

// WithPathRegistries serves the registry-in-path form for every host that
// known reports true for. known gets the first path component, lower-cased;
// it must be safe for concurrent use.
func WithPathRegistries(known func(host string) bool) Option {
	return func(o *options) { o.pathRegistry = known }
}

// splitPathRegistry returns the registry named by the first component of a
// repository name and the rest of the name, or ok false when the name does
// not start with a configured registry.
func (h *Handler) splitPathRegistry(name string) (registry, rest string, ok bool) {
	if h.pathRegistry == nil {
		return "", "", false
	}
	host, rest, found := strings.Cut(name, "/")
	if !found || rest == "" || !grammar.Registry(host) {
		return "", "", false
	}
	host = strings.ToLower(host)
	if !h.pathRegistry(host) {
		return "", "", false
	}
	return host, rest, true
}
