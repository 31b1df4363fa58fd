package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// A private repository on an htpasswd origin and on a bearer-token origin,
// and an agent in requester mode with no credentials of its own (given by
// --credentials requester, and by default: auto mode finds no node
// credentials). crane, skopeo, podman and containerd (ctr --user, naming the agent
// and with the agent as the origin's mirror) pull through the agent with
// the tenant's credentials, each blob from the origin once;
// after that, with no credentials or wrong ones, the manifest and every
// blob are 401 with a Basic challenge, although the agent holds them, and
// crane and skopeo fail. The password never reaches the agent's logs (at
// debug level) or its disk.
func TestRequesterMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		start func(t *testing.T) *agenttest.Origin
		flags []string
	}{
		{"htpasswd", func(t *testing.T) *agenttest.Origin {
			return agenttest.StartDistribution(t, agenttest.DistributionOptions{
				BasicAuth: &agenttest.BasicAuth{User: "tenant-a", Password: "htpasswd-secret-a"},
			})
		}, []string{"--credentials", "requester"}},
		{"token", func(t *testing.T) *agenttest.Origin {
			return agenttest.StartDistribution(t, agenttest.DistributionOptions{
				Token: agenttest.NewTokenService(t, "tenant-a", "token-secret-a"),
			})
		}, nil}, // auto
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			origin := tc.start(t)
			img := agenttest.Image(t, agenttest.ImageOptions{Layers: 2, LayerSize: 128 << 10, Seed: 131})
			ref := origin.Push(t, img, "private/app:v1")
			origin.ResetCounters()
			dataDir := t.TempDir()
			empty := agenttest.DockerConfig(t, origin.Addr, nil) // the agent's own: nothing
			args := append([]string{"agent", "--upstream", origin.URL, "--data-dir", dataDir, "--log-level", "debug",
				"--docker-config", filepath.Join(empty, "config.json")}, tc.flags...)
			agent := agenttest.StartShoal(t, shoalBin, args...)
			good := origin.Creds
			wrong := &agenttest.BasicAuth{User: good.User, Password: good.Password + "-wrong"}
			other := &agenttest.BasicAuth{User: "tenant-b", Password: good.Password}

			t.Run("crane", func(t *testing.T) {
				for range 2 { // the second from the agent's store
					agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, via(agent, ref), good)), img)
				}
			})
			t.Run("skopeo", func(t *testing.T) {
				dir := agenttest.SkopeoCopy(t, via(agent, ref), agenttest.SkopeoOptions{Creds: good})
				agenttest.RequireContent(t, agenttest.VerifyDir(t, dir), img)
			})
			t.Run("podman", func(t *testing.T) {
				root := t.TempDir()
				if err := os.MkdirAll(filepath.Join(root, "etc", "containers", "registries.conf.d"), 0o755); err != nil {
					t.Fatal(err)
				}
				p := agenttest.NewPodman(t, root)
				p.Run(t, "pull", "--quiet", "--tls-verify=false", "--creds", good.User+":"+good.Password, via(agent, ref))
				if id := p.ImageID(t, via(agent, ref)); id == "" {
					t.Fatal("podman stored no image")
				}
			})
			t.Run("ctr", func(t *testing.T) {
				ctrd := agenttest.StartContainerd(t)
				ctrd.Pull(t, via(agent, ref), agenttest.PullOptions{Creds: good})
				agenttest.RequireContent(t, ctrd.Content(t), img)
			})
			t.Run("ctr-mirror", func(t *testing.T) {
				// As deployed: the agent is the origin's mirror in
				// hosts.toml, asked with ?ns=<origin>; ctr's --user
				// answers the agent's challenge.
				ctrd := agenttest.StartContainerd(t)
				hosts := agenttest.WriteHostsToml(t, t.TempDir(), origin.Addr, agent.URL)
				ctrd.Pull(t, ref, agenttest.PullOptions{HostsDir: hosts, Creds: good})
				agenttest.RequireContent(t, ctrd.Content(t), img)
			})
			requireBlobsOnce(t, origin)

			t.Run("refused", func(t *testing.T) {
				md, err := img.Digest()
				if err != nil {
					t.Fatal(err)
				}
				paths := []string{"/v2/private/app/manifests/v1", "/v2/private/app/manifests/" + md.String()}
				cfg, _ := img.ConfigName()
				paths = append(paths, "/v2/private/app/blobs/"+cfg.String())
				layers, _ := img.Layers()
				for _, l := range layers {
					d, _ := l.Digest()
					if _, err := os.Stat(filepath.Join(dataDir, "store", "blobs", "sha256", d.Hex)); err != nil {
						t.Fatalf("layer %s is not on the agent's disk: %v", d, err)
					}
					paths = append(paths, "/v2/private/app/blobs/"+d.String())
				}
				for _, creds := range []*agenttest.BasicAuth{nil, wrong, other} {
					for _, p := range paths {
						for _, m := range []string{http.MethodGet, http.MethodHead} {
							status, chal := requestAs(t, agent, m, p, creds)
							if status != http.StatusUnauthorized || !strings.HasPrefix(chal, "Basic ") {
								t.Errorf("%s %s as %v: %d %q, want 401 with a Basic challenge", m, p, who(creds), status, chal)
							}
						}
					}
					if status, _ := requestAs(t, agent, http.MethodGet, paths[2], good); status != http.StatusOK {
						t.Errorf("GET %s with the tenant's credentials: %d", paths[2], status)
					}
				}
				crane := agenttest.ToolPath(t, "crane")
				skopeo := agenttest.ToolPath(t, "skopeo")
				for _, creds := range []*agenttest.BasicAuth{nil, wrong} {
					env := []string{"DOCKER_CONFIG=" + agenttest.DockerConfig(t, agent.Addr, creds)}
					if out, err := agenttest.RunTool(t.Context(), env, crane, "pull", "--insecure", "--format=oci", via(agent, ref), t.TempDir()); err == nil {
						t.Errorf("crane as %s pulled through the agent:\n%s", who(creds), out)
					} else if !strings.Contains(strings.ToUpper(out), "UNAUTHORIZED") && !strings.Contains(out, "401") {
						t.Errorf("crane as %s failed, but not with 401:\n%s", who(creds), out)
					}
					sargs := []string{"--insecure-policy", "copy", "--quiet", "--src-tls-verify=false"}
					if creds != nil {
						sargs = append(sargs, "--src-creds", creds.User+":"+creds.Password)
					} else {
						sargs = append(sargs, "--src-no-creds")
					}
					sargs = append(sargs, "docker://"+via(agent, ref), "dir:"+t.TempDir())
					if out, err := agenttest.RunTool(t.Context(), []string{"REGISTRY_AUTH_FILE=" + filepath.Join(t.TempDir(), "auth.json")}, skopeo, sargs...); err == nil {
						t.Errorf("skopeo as %s pulled through the agent:\n%s", who(creds), out)
					} else if !strings.Contains(strings.ToLower(out), "unauthorized") && !strings.Contains(out, "401") {
						t.Errorf("skopeo as %s failed, but not with 401:\n%s", who(creds), out)
					}
				}
			})

			if n := agent.Metric(t, "shoal_agent_confirmations_total", "result=refused"); n == 0 {
				t.Error("no refused confirmation counted")
			}
			if strings.Contains(agent.Logs(), good.Password) {
				t.Error("the tenant's password is in the agent's logs")
			}
			requireNotOnDisk(t, dataDir, good.Password)
		})
	}
}

func who(c *agenttest.BasicAuth) string {
	if c == nil {
		return "anonymous"
	}
	return c.User
}

// requestAs sends one request to the agent, with basic credentials unless
// creds is nil, and returns the status and the challenge.
func requestAs(t *testing.T, agent *agenttest.Shoal, method, path string, creds *agenttest.BasicAuth) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, agent.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	if creds != nil {
		req.SetBasicAuth(creds.User, creds.Password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// requireNotOnDisk fails the test if any file under dir holds secret.
func requireNotOnDisk(t *testing.T, dir, secret string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), secret) {
			return fmt.Errorf("%s holds the secret", p)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
