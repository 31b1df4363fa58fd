package agenttest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Skopeo runs skopeo with args and returns its output, failing the test
// with that output if skopeo fails. --insecure-policy is prepended so that
// no /etc/containers/policy.json is needed.
func Skopeo(t testing.TB, args ...string) string {
	t.Helper()
	return runTool(t, nil, "skopeo", append([]string{"--insecure-policy"}, args...)...)
}

// Crane runs crane anonymously (an empty DOCKER_CONFIG, so the host's
// credentials never leak in) and returns its output, failing the test
// with that output if crane fails.
func Crane(t testing.TB, args ...string) string {
	t.Helper()
	return runTool(t, []string{"DOCKER_CONFIG=" + t.TempDir()}, "crane", args...)
}

// Ctr runs containerd's ctr with args as given (see Containerd.Ctr for a
// daemon started by the test) and returns its output, failing the test
// with that output if ctr fails.
func Ctr(t testing.TB, args ...string) string {
	t.Helper()
	return runTool(t, nil, "ctr", args...)
}

// Layout is how skopeo stores what it pulled.
type Layout int

const (
	// DirLayout is skopeo's dir: transport: manifest.json and blobs named by
	// hex digest. Manifests are kept as pulled.
	DirLayout Layout = iota
	// OCILayout is an OCI image layout. skopeo converts Docker manifests to
	// OCI ones on the way, so their digests change; layers do not.
	OCILayout
)

// SkopeoOptions adjust SkopeoCopy.
type SkopeoOptions struct {
	// Creds authenticate to the source registry; nil is anonymous.
	Creds *BasicAuth
	// Layout is the destination format; DirLayout by default.
	Layout Layout
	// All copies every image of an index, not only the host's platform.
	All bool
	// RegistriesConf is a registries.conf for skopeo (see
	// WriteRegistriesConf), to pull through a mirror.
	RegistriesConf string
}

// SkopeoCopy copies ref (host/repo:tag, over plain HTTP) into a new
// directory with skopeo and returns the directory. Check it with VerifyDir
// or VerifyOCILayout.
func SkopeoCopy(t testing.TB, ref string, opts SkopeoOptions) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "skopeo")
	args := []string{"copy", "--quiet", "--src-tls-verify=false"}
	if opts.Creds != nil {
		args = append(args, "--src-creds", opts.Creds.User+":"+opts.Creds.Password)
	}
	if opts.All {
		args = append(args, "--all")
	}
	dst := "dir:" + dir
	if opts.Layout == OCILayout {
		dst = "oci:" + dir
	}
	if opts.RegistriesConf != "" {
		// A global flag: skopeo 1.9 ignores CONTAINERS_REGISTRIES_CONF.
		args = append([]string{"--registries-conf", opts.RegistriesConf}, args...)
	}
	Skopeo(t, append(args, "docker://"+ref, dst)...)
	return dir
}

// WriteRegistriesConf writes a registries.conf (v2) in a new directory
// that sends pulls of registryHost to mirrorHost first, both over plain
// HTTP, and returns its path for SkopeoOptions.RegistriesConf. Unlike
// containerd, skopeo adds no ?ns= parameter when it asks a mirror.
func WriteRegistriesConf(t testing.TB, registryHost, mirrorHost string) string {
	t.Helper()
	for _, h := range []string{registryHost, mirrorHost} {
		if h == "" || strings.ContainsAny(h, "\"\n") || strings.Contains(h, "://") {
			t.Fatalf("agenttest: registries.conf: bad host %q (want host:port)", h)
		}
	}
	conf := fmt.Sprintf(`unqualified-search-registries = []

[[registry]]
location = %q
insecure = true

[[registry.mirror]]
location = %q
insecure = true
`, registryHost, mirrorHost)
	path := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatalf("agenttest: registries.conf: %v", err)
	}
	return path
}

// CranePull pulls ref into a new OCI image layout with `crane pull
// --format=oci` and returns the directory. An index is pulled whole. creds
// may be nil; otherwise they are handed to crane in a private
// DOCKER_CONFIG for ref's registry.
func CranePull(t testing.TB, ref string, creds *BasicAuth) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "crane")
	env := []string{"DOCKER_CONFIG=" + DockerConfig(t, registryOf(ref), creds)}
	runTool(t, env, "crane", "pull", "--insecure", "--format=oci", ref, dir)
	return dir
}

// DockerConfig writes a docker config.json holding creds for host (none if
// creds is nil) and returns its directory, for DOCKER_CONFIG.
func DockerConfig(t testing.TB, host string, creds *BasicAuth) string {
	t.Helper()
	dir := t.TempDir()
	auths := map[string]map[string]string{}
	if creds != nil {
		auths[host] = map[string]string{
			"auth": base64.StdEncoding.EncodeToString([]byte(creds.User + ":" + creds.Password)),
		}
	}
	b, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatalf("agenttest: docker config: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatalf("agenttest: docker config: %v", err)
	}
	return dir
}

// registryOf returns the host part of a reference like host:port/repo:tag.
func registryOf(ref string) string {
	host, _, _ := strings.Cut(ref, "/")
	return host
}
