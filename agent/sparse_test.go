package agent_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/shoal-dev/shoal/p2p/piece"
)

// A lazy-pulling snapshotter (stargz, SOCI) reads a layer's footer, then its
// table of contents, then a few files. Through a swarm agent that gets the
// pieces covering those reads, not the layer; the whole layer read later
// fetches only the rest, and is checked against its digest.
func TestSparseRangeReads(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	img, _ := random.Image(12<<20, 1)
	push(t, o, "app/lazy", "v1", img)
	tn, _ := startTracker(t, o.URL)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	layer, _ := io.ReadAll(rc)
	rc.Close()
	size := int64(len(layer))
	psize := piece.SizeFor(size)

	// A peer already holds the layer.
	peer := startAgent(t, t.TempDir(), swarmConfig(tn, o.URL))
	pull(t, peer, "app/lazy", ":v1")
	lazy := startAgent(t, t.TempDir(), swarmConfig(tn, o.URL))

	reads := []struct{ off, n int64 }{
		{size - 51, 51},                  // the stargz footer
		{size - 300<<10 - 51, 300 << 10}, // the table of contents before it
		{1 << 20, 10 << 10},              // three files
		{5<<20 + 100, 20 << 10},
		{7 << 20, 4 << 10},
	}
	touched := map[int64]bool{}
	for _, rd := range reads {
		for p := rd.off / psize; p <= (rd.off+rd.n-1)/psize; p++ {
			touched[p] = true
		}
		got := rangeGet(t, lazy, "app/lazy", ld.String(), rd.off, rd.n)
		if !bytes.Equal(got, layer[rd.off:rd.off+rd.n]) {
			t.Fatalf("range %d+%d: wrong bytes", rd.off, rd.n)
		}
	}
	st := lazy.Stats()
	got := st.Peer + st.Seeder + st.Origin
	t.Logf("%d ranged reads, covering %d pieces of a %d-byte layer: %d from peers, %d from the seeder, %d from the origin",
		len(reads), len(touched), size, st.Peer, st.Seeder, st.Origin)
	if limit := int64(len(touched)) * psize; got > limit {
		t.Errorf("the ranged reads fetched %d bytes, more than the %d of the %d pieces they cover", got, limit, len(touched))
	}
	if st.Origin != 0 {
		t.Errorf("%d bytes came from the origin", st.Origin)
	}

	// The whole layer, later, fetches the rest only.
	whole := rangeGet(t, lazy, "app/lazy", ld.String(), 0, size)
	if !bytes.Equal(whole, layer) {
		t.Fatal("the whole layer read after the ranged ones is wrong")
	}
	st = lazy.Stats()
	if got := st.Peer + st.Seeder + st.Origin; got > size {
		t.Errorf("fetched %d bytes in all for a %d-byte layer", got, size)
	}
}

// rangeGet reads n bytes at off of a blob through the node's registry API,
// with a Range request unless it is the whole blob.
func rangeGet(t *testing.T, n *node, repo, dgst string, off, length int64) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, n.srv.URL+"/v2/"+repo+"/blobs/"+dgst, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := http.StatusOK
	if off != 0 || length != -1 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+length-1))
		want = http.StatusPartialContent
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != want && resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s range %d+%d: %d, %v", dgst, off, length, resp.StatusCode, err)
	}
	return body
}
