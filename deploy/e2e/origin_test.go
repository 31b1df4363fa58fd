package e2e

import (
	"net/url"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// pushed is one object on an origin and how to check a client's copy.
type pushed struct {
	name string
	ref  string
	obj  agenttest.Digester
	// amd64 is what a single-platform client (ctr) ends up with.
	amd64 v1.Image
	// converted is true when skopeo's OCI layout rewrites the manifests.
	converted bool
}

// pushAll pushes an OCI image, a Docker image, an OCI index and a Docker
// manifest list, each with its own content.
func pushAll(t *testing.T, origin *agenttest.Origin) []pushed {
	t.Helper()
	small := agenttest.ImageOptions{Layers: 2, LayerSize: 128 << 10}

	oci := small
	oci.Seed = 1
	docker := small
	docker.Seed, docker.MediaType = 2, agenttest.Docker
	ociIdx := small
	ociIdx.Seed = 3
	dockerIdx := small
	dockerIdx.Seed, dockerIdx.MediaType = 4, agenttest.Docker

	ociImg, dockerImg := agenttest.Image(t, oci), agenttest.Image(t, docker)
	ociIndex, dockerList := agenttest.Index(t, ociIdx), agenttest.Index(t, dockerIdx)
	return []pushed{
		{name: "oci-image", ref: origin.Push(t, ociImg, "images/oci:v1"), obj: ociImg, amd64: ociImg},
		{name: "docker-image", ref: origin.Push(t, dockerImg, "images/docker:v1"), obj: dockerImg, amd64: dockerImg, converted: true},
		{name: "oci-index", ref: origin.Push(t, ociIndex, "multi/oci:v1"), obj: ociIndex, amd64: agenttest.PlatformImage(t, ociIndex, "linux/amd64")},
		{name: "docker-list", ref: origin.Push(t, dockerList, "multi/docker:v1"), obj: dockerList, amd64: agenttest.PlatformImage(t, dockerList, "linux/amd64"), converted: true},
	}
}

type originKind struct {
	name  string
	start func(t *testing.T) *agenttest.Origin
}

var originKinds = []originKind{
	{"plain", func(t *testing.T) *agenttest.Origin {
		return agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	}},
	{"basic-auth", func(t *testing.T) *agenttest.Origin {
		return agenttest.StartDistribution(t, agenttest.DistributionOptions{
			BasicAuth: &agenttest.BasicAuth{User: "shoal", Password: "basic-secret"},
		})
	}},
	{"token-auth", func(t *testing.T) *agenttest.Origin {
		return agenttest.StartDistribution(t, agenttest.DistributionOptions{
			Token: agenttest.NewTokenService(t, "shoal", "token-secret"),
		})
	}},
}

// TestClientsPullFromOrigin pushes images and indexes of both flavours to
// each kind of origin and pulls every one with every client, checking
// every blob the client stored against its digest and against what was
// pushed.
func TestClientsPullFromOrigin(t *testing.T) {
	t.Parallel()
	for _, kind := range originKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			origin := kind.start(t)
			objs := pushAll(t, origin)

			t.Run("crane", func(t *testing.T) {
				for _, o := range objs {
					got := agenttest.VerifyOCILayout(t, agenttest.CranePull(t, o.ref, origin.Creds))
					agenttest.RequireContent(t, got, o.obj)
				}
			})
			t.Run("skopeo-dir", func(t *testing.T) {
				for _, o := range objs {
					dir := agenttest.SkopeoCopy(t, o.ref, agenttest.SkopeoOptions{Creds: origin.Creds, All: true})
					agenttest.RequireContent(t, agenttest.VerifyDir(t, dir), o.obj)
					if _, isIndex := o.obj.(v1.ImageIndex); isIndex {
						// Without --all skopeo takes the host's platform only.
						dir = agenttest.SkopeoCopy(t, o.ref, agenttest.SkopeoOptions{Creds: origin.Creds})
						agenttest.RequireContent(t, agenttest.VerifyDir(t, dir), o.amd64)
					}
				}
			})
			t.Run("skopeo-oci", func(t *testing.T) {
				for _, o := range objs {
					dir := agenttest.SkopeoCopy(t, o.ref, agenttest.SkopeoOptions{
						Creds: origin.Creds, All: true, Layout: agenttest.OCILayout,
					})
					got := agenttest.VerifyOCILayout(t, dir)
					if o.converted {
						agenttest.RequireLayers(t, got, o.obj)
					} else {
						agenttest.RequireContent(t, got, o.obj)
					}
				}
			})
			t.Run("ctr", func(t *testing.T) {
				ctrd := agenttest.StartContainerd(t)
				for _, o := range objs {
					ctrd.Pull(t, o.ref, agenttest.PullOptions{Creds: origin.Creds})
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
			if origin.Token != nil && origin.Token.Requests() == 0 {
				t.Fatal("token origin served pulls without asking the token service")
			}
		})
	}
}

// TestOriginRefusesAnonymous checks that the auth origins really enforce
// auth, so that a passing authenticated pull means credentials worked.
func TestOriginRefusesAnonymous(t *testing.T) {
	t.Parallel()
	for _, kind := range originKinds[1:] {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			origin := kind.start(t)
			ref := origin.Push(t, agenttest.Image(t, agenttest.ImageOptions{Layers: 1, LayerSize: 1024}), "private:v1")
			wrong := &agenttest.BasicAuth{User: origin.Creds.User, Password: "wrong"}
			for _, creds := range []*agenttest.BasicAuth{nil, wrong} {
				out, err := agenttest.RunTool(t.Context(), []string{"DOCKER_CONFIG=" + agenttest.DockerConfig(t, origin.Addr, creds)},
					agenttest.ToolPath(t, "crane"), "manifest", ref)
				if err == nil {
					t.Fatalf("crane with creds %v read a manifest from a %s origin:\n%s", creds, kind.name, out)
				}
			}
		})
	}
}

// TestOriginCounters checks what the counting proxy reports for one pull.
func TestOriginCounters(t *testing.T) {
	t.Parallel()
	origin := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 3, LayerSize: 1 << 20, Seed: 42})
	ref := origin.Push(t, img, "count:v1")
	if origin.BytesReceived() < 3<<20 {
		t.Fatalf("push of 3 MiB counted %d bytes received", origin.BytesReceived())
	}
	origin.ResetCounters()

	agenttest.RequireContent(t, agenttest.VerifyOCILayout(t, agenttest.CranePull(t, ref, nil)), img)

	size, err := imageBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	// Everything once, plus headers: a client that fetched a blob twice
	// would show here.
	if sent := origin.BytesSent(); sent < size || sent > size+64<<10 {
		t.Fatalf("origin sent %d bytes for an image of %d", sent, size)
	}
	if got := origin.BlobGets(); got != 4 {
		t.Fatalf("%d blob GETs, want 4 (3 layers and the config): %+v", got, origin.Requests())
	}
}

// TestContainerdMirror checks the hosts.toml that agent tests rely on:
// containerd must ask the mirror first, over plain HTTP, naming the
// upstream in ?ns=. The upstream here refuses connections, so only the
// mirror can have served the pull.
func TestContainerdMirror(t *testing.T) {
	t.Parallel()
	mirror := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	idx := agenttest.Index(t, agenttest.ImageOptions{Layers: 2, LayerSize: 64 << 10, Seed: 5})
	mirror.Push(t, idx, "app:v1")
	mirror.ResetCounters()

	upstream := "127.0.0.1:1" // nothing listens on port 1
	hosts := agenttest.WriteHostsToml(t, t.TempDir(), upstream, mirror.URL)
	ctrd := agenttest.StartContainerd(t)
	ctrd.Pull(t, upstream+"/app:v1", agenttest.PullOptions{HostsDir: hosts})
	agenttest.RequireContent(t, ctrd.Content(t), agenttest.PlatformImage(t, idx, "linux/amd64"))

	reqs := mirror.Requests()
	if len(reqs) == 0 {
		t.Fatal("the mirror saw no request")
	}
	for _, r := range reqs {
		q, err := url.ParseQuery(r.Query)
		if err != nil {
			t.Fatal(err)
		}
		if r.Path != "/v2/" && q.Get("ns") != upstream {
			t.Fatalf("request %+v lacks ns=%s", r, upstream)
		}
	}
}

// TestSkopeoMirror checks the registries.conf that agent tests rely on:
// skopeo must pull from the mirror when the upstream is unreachable.
func TestSkopeoMirror(t *testing.T) {
	t.Parallel()
	mirror := agenttest.StartDistribution(t, agenttest.DistributionOptions{})
	img := agenttest.Image(t, agenttest.ImageOptions{Layers: 2, LayerSize: 64 << 10, Seed: 6})
	mirror.Push(t, img, "app:v1")
	mirror.ResetCounters()

	upstream := "127.0.0.1:1" // nothing listens on port 1
	conf := agenttest.WriteRegistriesConf(t, upstream, mirror.Addr)
	dir := agenttest.SkopeoCopy(t, upstream+"/app:v1", agenttest.SkopeoOptions{RegistriesConf: conf})
	agenttest.RequireContent(t, agenttest.VerifyDir(t, dir), img)
	if mirror.BlobGets() == 0 {
		t.Fatal("the mirror served no blob")
	}
}

func imageBytes(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, err
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}
