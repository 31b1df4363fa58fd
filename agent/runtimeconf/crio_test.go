package runtimeconf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containers/image/v5/docker/reference"
	"github.com/containers/image/v5/pkg/sysregistriesv2"
	"github.com/containers/image/v5/types"
)

// TestCRIODropIn: CRI-O is not packaged for this machine, so its drop-in is
// checked with the parser CRI-O itself uses, containers/image's
// sysregistriesv2 (CRI-O and podman read the same registries.conf format;
// TestRuntimePodman in deploy/e2e pulls through it with a real podman).
// The module is heavy, so only this test file imports it; the main module
// lists it, no non-test package links it. For each registry, the first pull
// source is the agent in the registry-in-path form, the second the
// registry itself.
func TestCRIODropIn(t *testing.T) {
	t.Parallel()
	root := host(t, nil)
	o := Options{Root: root, Agent: "http://127.0.0.1:5050", Registries: []Registry{
		{Host: "docker.io"}, {Host: "ghcr.io"}, {Host: "reg-b.test", URL: "http://127.0.0.1:5001"}}}
	p, err := Registries(o, "crio")
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(o, p); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(main, []byte("unqualified-search-registries = [\"docker.io\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sys := &types.SystemContext{
		SystemRegistriesConfPath:    main,
		SystemRegistriesConfDirPath: filepath.Join(root, filepath.Dir(RegistriesDropIn)),
	}
	tests := []struct {
		image          string
		mirror, origin string
		insecure       bool
	}{
		{"docker.io/library/alpine:3.20", "127.0.0.1:5050/docker.io/library/alpine:3.20", "docker.io/library/alpine:3.20", false},
		{"ghcr.io/org/app:v1", "127.0.0.1:5050/ghcr.io/org/app:v1", "ghcr.io/org/app:v1", false},
		{"reg-b.test/team/b:v1", "127.0.0.1:5050/reg-b.test/team/b:v1", "127.0.0.1:5001/team/b:v1", true},
	}
	for _, tt := range tests {
		reg, err := sysregistriesv2.FindRegistry(sys, tt.image)
		if err != nil || reg == nil {
			t.Fatalf("%s: registry %v, %v", tt.image, reg, err)
		}
		ref, err := reference.ParseNormalizedNamed(tt.image)
		if err != nil {
			t.Fatal(err)
		}
		srcs, err := reg.PullSourcesFromReference(ref)
		if err != nil {
			t.Fatalf("%s: %v", tt.image, err)
		}
		if len(srcs) != 2 {
			t.Fatalf("%s: %d pull sources, want the agent and the registry", tt.image, len(srcs))
		}
		if got := srcs[0].Reference.String(); got != tt.mirror || !srcs[0].Endpoint.Insecure {
			t.Errorf("%s: first source %s (insecure %v), want the agent %s over plain HTTP", tt.image, got, srcs[0].Endpoint.Insecure, tt.mirror)
		}
		if got := srcs[1].Reference.String(); got != tt.origin || srcs[1].Endpoint.Insecure != tt.insecure {
			t.Errorf("%s: fallback %s (insecure %v), want %s (insecure %v)", tt.image, got, srcs[1].Endpoint.Insecure, tt.origin, tt.insecure)
		}
	}
	if _, err := Undo(o, "crio"); err != nil {
		t.Fatal(err)
	}
}
