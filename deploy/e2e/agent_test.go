package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// startAgent runs `shoal agent` with origin as its default upstream and,
// for an origin with auth, the origin's credentials in a docker
// config.json: clients of the agent then need none.
func startAgent(t testing.TB, origin *agenttest.Origin, extra ...string) *agenttest.Shoal {
	t.Helper()
	args := []string{"agent", "--upstream", origin.URL}
	if origin.Creds != nil {
		dir := agenttest.DockerConfig(t, origin.Addr, origin.Creds)
		args = append(args, "--docker-config", filepath.Join(dir, "config.json"))
	}
	return agenttest.StartShoal(t, shoalBin, append(args, extra...)...)
}

// via rewrites a reference to the origin (host:port/repo:tag) into the same
// repository and tag on the agent.
func via(agent *agenttest.Shoal, ref string) string {
	_, rest, _ := strings.Cut(ref, "/")
	return agent.Addr + "/" + rest
}

// TestAgentClients pulls OCI and Docker images and indexes through one
// agent per kind of origin (anonymous, basic auth, token auth) with crane,
// skopeo (dir: and oci:, by the agent's address and as a mirror) and
// containerd as a mirror, every blob checked
// against its digest. The clients hold no credentials: the agent has them.
// All the pulls through the agent fetch each blob from the origin once.
func TestAgentClients(t *testing.T) {
	t.Parallel()
	for _, kind := range originKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			origin := kind.start(t)
			objs := pushAll(t, origin)
			origin.ResetCounters()
			agent := startAgent(t, origin)

			// Subtests run in order: later clients find the blobs in the
			// agent's store, which is what the final origin count checks.
			t.Run("crane", func(t *testing.T) {
				for _, o := range objs {
					for range 2 { // the second pull is served from the agent's store
						got := agenttest.VerifyOCILayout(t, agenttest.CranePull(t, via(agent, o.ref), nil))
						agenttest.RequireContent(t, got, o.obj)
					}
				}
			})
			t.Run("skopeo-dir", func(t *testing.T) {
				for _, o := range objs {
					dir := agenttest.SkopeoCopy(t, via(agent, o.ref), agenttest.SkopeoOptions{All: true})
					agenttest.RequireContent(t, agenttest.VerifyDir(t, dir), o.obj)
					if _, isIndex := o.obj.(v1.ImageIndex); isIndex {
						dir = agenttest.SkopeoCopy(t, via(agent, o.ref), agenttest.SkopeoOptions{})
						agenttest.RequireContent(t, agenttest.VerifyDir(t, dir), o.amd64)
					}
				}
			})
			t.Run("skopeo-oci", func(t *testing.T) {
				for _, o := range objs {
					got := agenttest.VerifyOCILayout(t, agenttest.SkopeoCopy(t, via(agent, o.ref),
						agenttest.SkopeoOptions{All: true, Layout: agenttest.OCILayout}))
					if o.converted {
						agenttest.RequireLayers(t, got, o.obj)
					} else {
						agenttest.RequireContent(t, got, o.obj)
					}
				}
			})
			t.Run("skopeo-mirror", func(t *testing.T) {
				// skopeo asks the agent as the origin's mirror, without
				// ?ns=: the agent's default upstream answers.
				conf := agenttest.WriteRegistriesConf(t, origin.Addr, agent.Addr)
				for _, o := range objs {
					dir := agenttest.SkopeoCopy(t, o.ref, agenttest.SkopeoOptions{All: true, RegistriesConf: conf})
					agenttest.RequireContent(t, agenttest.VerifyDir(t, dir), o.obj)
				}
			})
			t.Run("ctr", func(t *testing.T) {
				// The agent is the origin's mirror: ctr asks it with
				// ?ns=<origin>, which the agent routes to its default
				// upstream. ctr has no credentials, so against an origin
				// with auth only the agent can have served the pull.
				ctrd := agenttest.StartContainerd(t)
				hosts := agenttest.WriteHostsToml(t, t.TempDir(), origin.Addr, agent.URL)
				for _, o := range objs {
					ctrd.Pull(t, o.ref, agenttest.PullOptions{HostsDir: hosts})
					got := ctrd.Content(t)
					agenttest.RequireContent(t, got, o.amd64)
					top, err := o.obj.Digest()
					if err != nil {
						t.Fatal(err)
					}
					if !got.Has(top) {
						t.Fatalf("%s: containerd did not store %s", o.name, top)
					}
				}
			})

			requireBlobsOnce(t, origin)
			if lookups := agent.Metric(t, "shoal_agent_blob_lookups_total", "result=hit"); lookups == 0 {
				t.Error("no blob lookup hit the agent's store")
			}
		})
	}
}

// requireBlobsOnce fails the test if the origin served any blob more than
// once (with a GET, whole or in part).
func requireBlobsOnce(t *testing.T, origin *agenttest.Origin) {
	t.Helper()
	gets := map[string]int{}
	for _, r := range origin.Requests() {
		if r.IsBlobGet() {
			gets[r.Path[strings.LastIndex(r.Path, "/")+1:]]++
		}
	}
	if len(gets) == 0 {
		t.Fatal("the origin served no blob")
	}
	for d, n := range gets {
		if n != 1 {
			t.Errorf("the origin served %s %d times, want once", d, n)
		}
	}
}
