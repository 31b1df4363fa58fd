package upstream

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"testing"
)

func TestRouting(t *testing.T) {
	t.Parallel()
	a, b, def := newOrigin(), newOrigin(), newOrigin()
	imgA, imgB, imgDef := pushImage(t, a, "app", 10), pushImage(t, b, "app", 11), pushImage(t, def, "app", 12)
	srvA, srvB, srvDef := serve(t, a), serve(t, b), serve(t, def)
	hub := newOrigin()
	imgHub := pushImage(t, hub, "library/alpine", 13)
	srvHub := serve(t, hub)

	cfg := testConfig(srvDef.URL)
	cfg.AllowUnknown = false
	cfg.Registries = []Registry{
		{Host: "a.example:5000", Endpoint: srvA.URL, Insecure: true},
		{Host: "b.example:5000", Endpoint: srvB.URL, Insecure: true},
		{Host: "docker.io", Endpoint: srvHub.URL, Insecure: true},
	}
	c := newClient(t, cfg)
	for _, tc := range []struct {
		registry, repo string
		want           image
	}{
		{"a.example:5000", "app", imgA},
		{"A.Example:5000", "app", imgA},
		{"b.example:5000", "app", imgB},
		{"", "app", imgDef},
		{hostOf(srvDef), "app", imgDef},
		{"docker.io", "alpine", imgHub},
		{"index.docker.io", "library/alpine", imgHub},
	} {
		_, body, err := c.Manifest(t.Context(), tc.registry, tc.repo, "oci")
		if err != nil {
			t.Fatalf("Manifest(%q, %q): %v", tc.registry, tc.repo, err)
		}
		if !bytes.Equal(body, tc.want.manifests["oci"]) {
			t.Errorf("Manifest(%q, %q) came from the wrong registry", tc.registry, tc.repo)
		}
	}

	for _, tc := range []struct {
		name     string
		c        *Client
		registry string
		want     error
	}{
		{"unknown registry, not allowed", c, "c.example", ErrDenied},
		{"invalid registry", c, "a.example/evil", ErrInvalidName},
		{"no default", newClient(t, testConfig("")), "", ErrRepositoryNotFound},
		// Allowed unknown registries are HTTPS only: a loopback one that
		// answers plain HTTP must not be downgraded to silently.
		{"unknown registry over plain HTTP", newClient(t, testConfig("")), hostOf(srvA), ErrDenied},
	} {
		if _, _, err := tc.c.Manifest(t.Context(), tc.registry, "app", "oci"); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestTLSEndpoint(t *testing.T) {
	t.Parallel()
	origin := newOrigin()
	img := pushImage(t, origin, "app", 14)
	srv := httptest.NewTLSServer(origin)
	t.Cleanup(srv.Close)
	cfg := testConfig("")
	cfg.Registries = []Registry{{Host: "secure.example", Endpoint: "https://" + hostOf(srv)}}
	c := newClient(t, cfg, WithTransport(srv.Client().Transport))
	_, body, err := c.Manifest(t.Context(), "secure.example", "app", "list")
	if err != nil || !bytes.Equal(body, img.manifests["list"]) {
		t.Fatalf("Manifest over HTTPS: %v", err)
	}
}
