package registryshim_test

import (
	"net/http"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal-dev/shoal/registryshim"
)

// TestRegistryInPath serves /v2/<registry>/<repo>/... from the registry
// named in the path when that registry is configured, as containers/image
// mirrors ask (no ?ns=), and leaves every other path as it was.
func TestRegistryInPath(t *testing.T) {
	t.Parallel()
	known := func(host string) bool { return host == "ghcr.io" || host == "docker.io" }
	f := newFixture(t, 1000, registryshim.WithPathRegistries(known))
	dockerLib := registryshim.Repo{Registry: "docker.io", Name: "library/alpine"}
	f.mem.PutBlob(dockerLib, f.blob)
	f.mem.PutManifest(dockerLib, "latest", ocispec.MediaTypeImageManifest, f.manifest)
	// A default-upstream repository whose first component is not a
	// configured registry keeps its whole name.
	other := registryshim.Repo{Name: "quay.io/org/app"}
	f.mem.PutBlob(other, f.blob)

	tests := []struct {
		name, target string
		status       int
		want         registryshim.Repo
	}{
		{"manifest", "/v2/ghcr.io/org/app/manifests/v1", 200, ghcr},
		{"blob", "/v2/ghcr.io/org/app/blobs/" + f.bdgst.String(), 200, ghcr},
		{"upper-case host is no valid name", "/v2/GHCR.io/org/app/manifests/v1", 400, registryshim.Repo{}},
		{"docker hub", "/v2/docker.io/library/alpine/manifests/latest", 200, dockerLib},
		{"unconfigured host stays in the name", "/v2/quay.io/org/app/blobs/" + f.bdgst.String(), 200, other},
		{"no ns, plain name", "/v2/library/alpine/manifests/v1", 200, alpine},
		{"ns wins over the path", "/v2/org/app/manifests/v1?ns=ghcr.io", 200, ghcr},
		{"registry alone is no repository", "/v2/ghcr.io/manifests/v1", 404, registryshim.Repo{Name: "ghcr.io"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(f.mem.Calls())
			w := f.do(http.MethodGet, tt.target)
			if w.Code != tt.status {
				t.Fatalf("GET %s: status %d, want %d: %s", tt.target, w.Code, tt.status, w.Body)
			}
			calls := f.mem.Calls()[before:]
			if tt.want == (registryshim.Repo{}) {
				if len(calls) != 0 {
					t.Fatalf("GET %s reached the backend: %+v", tt.target, calls)
				}
				return
			}
			if len(calls) == 0 || calls[0].Repo != tt.want {
				t.Fatalf("GET %s: backend calls %+v, want repo %+v", tt.target, calls, tt.want)
			}
		})
	}
}

// TestRegistryInPathTagsLink keeps the path form in the next-page link of a
// tag list instead of adding ?ns=, which would name the registry twice.
func TestRegistryInPathTagsLink(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 10, registryshim.WithPathRegistries(func(h string) bool { return h == "ghcr.io" }))
	w := f.do(http.MethodGet, "/v2/ghcr.io/org/app/tags/list?n=1")
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	link := w.Header().Get("Link")
	if !strings.HasPrefix(link, "</v2/ghcr.io/org/app/tags/list?") || strings.Contains(link, "ns=") {
		t.Fatalf("Link %q", link)
	}
}
