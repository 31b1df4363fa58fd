package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{
		"bytes 0-99/100", "bytes 10-19/*", "bytes */100", "bytes 5-4/10", "bytes 0-100/100",
		"bytes -1-5/10", "bytes +1-5/10", "bytes 1-/10", "bytes */*", "bits 0-1/2", "", "bytes 0-9223372036854775807/9223372036854775807",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, last, size, err := parseContentRange(s)
		if err != nil {
			return
		}
		if first == -1 {
			if last != -1 || size < 0 {
				t.Fatalf("%q: unsatisfied range with first=%d last=%d size=%d", s, first, last, size)
			}
			return
		}
		if first < 0 || last < first || (size >= 0 && last >= size) || size < -1 {
			t.Fatalf("%q: accepted inconsistent range %d-%d/%d", s, first, last, size)
		}
	})
}

func FuzzManifestMediaType(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"application/vnd.oci.image.manifest.v1+json", "{}"},
		{"application/json; charset=utf-8", `{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}`},
		{"", `{"schemaVersion":2,"manifests":[]}`},
		{"text/plain", `{"schemaVersion":2,"config":{},"layers":[]}`},
		{"", `not json`},
		{";;", `{"mediaType":7}`},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		mt, err := manifestMediaType(ct, body)
		if err == nil && mt == "" {
			t.Fatalf("empty media type without error for %q %q", ct, body)
		}
	})
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"latest", "v1.2.3", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "-x", "../x", "a/b", "md5:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		d, tag, err := parseRef(ref)
		if err != nil {
			return
		}
		if strings.ContainsAny(ref, "/?#% ") {
			t.Fatalf("%q: would change the request path", ref)
		}
		if (d == "") == (tag == "") {
			t.Fatalf("%q: want exactly one of digest %q and tag %q", ref, d, tag)
		}
		if tag != "" && (len(tag) > 128 || tag != ref) {
			t.Fatalf("%q: bad tag %q accepted", ref, tag)
		}
		if d != "" && d.Validate() != nil {
			t.Fatalf("%q: invalid digest accepted", ref)
		}
	})
}

// FuzzCheckRepo guards the request path: an accepted repository name can
// not climb out of /v2/ or smuggle a query.
func FuzzCheckRepo(f *testing.F) {
	for _, s := range []string{"app", "team/app", "a/b/c", "../x", "a//b", "a/", "A", "a..b", "a__b", "a--b", "a?b", "a%2fb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, repo string) {
		if checkRepo(repo) != nil {
			return
		}
		if strings.Contains(repo, "..") || strings.Contains(repo, "//") || strings.HasPrefix(repo, "/") ||
			strings.HasSuffix(repo, "/") || strings.ContainsAny(repo, "?#% ") {
			t.Fatalf("%q accepted", repo)
		}
	})
}

// tagsOrigin is a RoundTripper playing a registry: /v2/ answers 200 and a
// tag list answers body, whatever it is. It records the last tag list
// request's query.
type tagsOrigin struct {
	mu    sync.Mutex
	body  []byte
	query string
}

func (o *tagsOrigin) RoundTrip(req *http.Request) (*http.Response, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	body := []byte("{}")
	if strings.HasSuffix(req.URL.Path, "/tags/list") {
		body, o.query = o.body, req.URL.RawQuery
	}
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(bytes.NewReader(body)),
		Request:    req,
	}, nil
}

func (o *tagsOrigin) answer(body []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.body, o.query = body, ""
}

// FuzzTags feeds the tag-list decoding hostile bodies. The client returns a
// non-nil list of at most n tags, which re-encodes to JSON that decodes to
// the same list (the agent passes it on), or an error that is UNAVAILABLE
// (the runtime falls back to the upstream), never a panic or an internal
// error; a negative n is refused before anything is sent; n and last reach
// the upstream as given.
func FuzzTags(f *testing.F) {
	for _, s := range []struct {
		body string
		n    int
		last string
	}{
		{`{"name":"app","tags":["v1","v2","latest"]}`, 0, ""},
		{`{"name":"app","tags":["v1","v2","latest"]}`, 2, "v1"},
		{`{"tags":null}`, 0, ""},
		{`{}`, 5, ""},
		{`{"tags":[1,2]}`, 0, ""},
		{`{"tags":"v1"}`, 0, ""},
		{`{"tags":["\u0000","\ud800","../../x","a\nb"]}`, 0, "&n=1"},
		{`{"tags":["v1"]}{"tags":["v2"]}`, 0, ""},
		{`[]`, 0, ""},
		{`null`, 0, ""},
		{"{\"tags\":[\"\xff\xfe\"]}", 1, ""},
		{`{"tags":["v1"],"tags":["v2","v3"]}`, 1, ""},
		{``, 0, ""},
		{`{"tags":["v1"]`, -1, ""},
	} {
		f.Add([]byte(s.body), s.n, s.last)
	}
	dir := f.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, []byte("{}"), 0o600); err != nil {
		f.Fatal(err)
	}
	cfg := testConfig("http://origin.test")
	cfg.DockerConfig = cfgPath // no credentials from the machine running the fuzzer
	origin := &tagsOrigin{}
	c := newClient(f, cfg, WithTransport(origin))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, body []byte, n int, last string) {
		origin.answer(body)
		tags, err := c.Tags(ctx, "", "app", n, last)
		origin.mu.Lock()
		query := origin.query
		origin.mu.Unlock()
		if n < 0 {
			if !errors.Is(err, ErrInvalidPagination) || query != "" {
				t.Fatalf("n=%d: err %v, query %q sent; want ErrInvalidPagination and nothing sent", n, err, query)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInternal) {
				t.Fatalf("body %q: %v, want an UNAVAILABLE error", body, err)
			}
		} else {
			if tags == nil || (n > 0 && len(tags) > n) {
				t.Fatalf("body %q, n=%d: tags %q", body, n, tags)
			}
			if !json.Valid(body) {
				t.Fatalf("body %q is not JSON but gave tags %q", body, tags)
			}
			out, err := json.Marshal(struct {
				Tags []string `json:"tags"`
			}{tags})
			if err != nil {
				t.Fatalf("tags %q do not re-encode: %v", tags, err)
			}
			var back struct{ Tags []string }
			if err := json.Unmarshal(out, &back); err != nil || !slices.Equal(back.Tags, tags) {
				t.Fatalf("tags %q re-encode as %s, which decodes to %q (%v)", tags, out, back.Tags, err)
			}
		}
		q, qerr := url.ParseQuery(query)
		wantN := ""
		if n > 0 {
			wantN = strconv.Itoa(n)
		}
		if qerr != nil || q.Get("n") != wantN || q.Get("last") != last || len(q) > 2 {
			t.Fatalf("n=%d last=%q sent as query %q", n, last, query)
		}
	})
}
