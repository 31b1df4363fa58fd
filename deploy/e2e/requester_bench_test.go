package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"time"

	"testing"

	"github.com/shoal-dev/shoal/agent/agenttest"
)

// BenchmarkPullWarmRequester: an htpasswd origin, and two agents holding
// the whole image: one in node mode (its own credentials, from a docker
// config), one in requester mode (none of its own; crane sends the
// tenant's). Each iteration pulls the image with crane through both, in
// alternating order. ratio is requester time / node time (target ≤ 1.05);
// node-heads and requester-heads (and -gets) are the upstream requests
// each pull made: with the default --tag-ttl (5 s) pulls in a row make
// none; with --tag-ttl 0 each asks the origin for the tag. Confirmations
// of the blobs are within --auth-ttl either way.
//
//	SHOAL_BENCH_IMAGE_MB=200 go test -run '^$' -bench PullWarmRequester -benchtime 6x ./deploy/e2e
func BenchmarkPullWarmRequester(b *testing.B) {
	creds := &agenttest.BasicAuth{User: "tenant-a", Password: "bench-secret"}
	origin, _, ref, size := benchOrigin(b, agenttest.DistributionOptions{BasicAuth: creds})
	crane := agenttest.ToolPath(b, "crane")
	empty := agenttest.DockerConfig(b, origin.Addr, nil)
	for _, tagTTL := range []string{"5s", "0s"} {
		b.Run("tag-ttl="+tagTTL, func(b *testing.B) {
			node := startAgent(b, origin, "--tag-ttl", tagTTL) // node mode: startAgent hands it the origin's credentials
			requester := agenttest.StartShoal(b, shoalBin, "agent", "--upstream", origin.URL, "--tag-ttl", tagTTL,
				"--docker-config", filepath.Join(empty, "config.json"), "--credentials", "requester")
			benchWarmModes(b, origin, crane, ref, size, node, requester, creds)
		})
	}
}

func benchWarmModes(b *testing.B, origin *agenttest.Origin, crane, ref string, size int64, node, requester *agenttest.Shoal, creds *agenttest.BasicAuth) {
	clientConf := agenttest.DockerConfig(b, requester.Addr, creds)
	pull := func(agent *agenttest.Shoal) (time.Duration, int, int) {
		b.Helper()
		dir := filepath.Join(b.TempDir(), "pull")
		defer os.RemoveAll(dir)
		origin.ResetCounters()
		start := time.Now()
		out, err := agenttest.RunTool(b.Context(), []string{"DOCKER_CONFIG=" + clientConf}, crane,
			"pull", "--insecure", "--format=oci", via(agent, ref), dir)
		took := time.Since(start)
		if err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
		var heads, gets int
		for _, r := range origin.Requests() {
			switch r.Method {
			case http.MethodHead:
				heads++
			case http.MethodGet:
				gets++
			}
		}
		return took, heads, gets
	}
	pull(node) // warm both
	pull(requester)
	var nodeTotal, reqTotal time.Duration
	var nodeHeads, reqHeads, nodeGets, reqGets int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		order := []*agenttest.Shoal{node, requester}
		if i%2 == 1 {
			order = []*agenttest.Shoal{requester, node}
		}
		for _, a := range order {
			took, heads, gets := pull(a)
			if a == node {
				nodeTotal, nodeHeads, nodeGets = nodeTotal+took, nodeHeads+heads, nodeGets+gets
			} else {
				reqTotal, reqHeads, reqGets = reqTotal+took, reqHeads+heads, reqGets+gets
			}
		}
	}
	n := float64(b.N)
	b.SetBytes(size)
	b.ReportMetric(float64(nodeTotal.Milliseconds())/n, "node-ms")
	b.ReportMetric(float64(reqTotal.Milliseconds())/n, "requester-ms")
	b.ReportMetric(reqTotal.Seconds()/nodeTotal.Seconds(), "ratio")
	b.ReportMetric(float64(nodeHeads)/n, "node-heads")
	b.ReportMetric(float64(reqHeads)/n, "requester-heads")
	b.ReportMetric(float64(nodeGets)/n, "node-gets")
	b.ReportMetric(float64(reqGets)/n, "requester-gets")
}
