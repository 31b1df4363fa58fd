package registryshim_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/registryshim"
	"github.com/shoal-dev/shoal/registryshim/shimtest"
)

// ranged is a Memory backend that can open part of a blob, and records
// which parts were asked for.
type ranged struct {
	*shimtest.Memory
	mu    sync.Mutex
	asked []string
}

func (b *ranged) BlobRange(ctx context.Context, repo registryshim.Repo, d digest.Digest, off, n int64) (registryshim.Blob, error) {
	b.mu.Lock()
	b.asked = append(b.asked, fmt.Sprintf("%d+%d", off, n))
	b.mu.Unlock()
	return b.Blob(ctx, repo, d)
}

// A Range request goes to BlobRange with the range resolved against the
// blob's size; a whole-blob or ignored range, and no Range, to Blob.
func TestRangeBackend(t *testing.T) {
	t.Parallel()
	b := &ranged{Memory: shimtest.NewMemory()}
	repo := registryshim.Repo{Name: "app"}
	data := bytes.Repeat([]byte("0123456789"), 100)
	d := b.PutBlob(repo, data)
	srv := httptest.NewServer(registryshim.New(b))
	defer srv.Close()
	for _, tc := range []struct {
		rng    string
		status int
		body   []byte
		asked  string
	}{
		{"bytes=-51", http.StatusPartialContent, data[949:], "949+51"},
		{"bytes=100-199", http.StatusPartialContent, data[100:200], "100+100"},
		{"bytes=990-", http.StatusPartialContent, data[990:], "990+10"},
		{"", http.StatusOK, data, ""},
		{"bytes=5000-", http.StatusRequestedRangeNotSatisfiable, nil, ""},
	} {
		b.mu.Lock()
		b.asked = nil
		b.mu.Unlock()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/app/blobs/"+d.String(), nil)
		if tc.rng != "" {
			req.Header.Set("Range", tc.rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || tc.body != nil && !bytes.Equal(body, tc.body) {
			t.Errorf("Range %q: %d with %d bytes, want %d with %d", tc.rng, resp.StatusCode, len(body), tc.status, len(tc.body))
		}
		b.mu.Lock()
		got := ""
		if len(b.asked) > 0 {
			got = b.asked[0]
		}
		b.mu.Unlock()
		if got != tc.asked {
			t.Errorf("Range %q: BlobRange asked for %q, want %q", tc.rng, got, tc.asked)
		}
	}
}
