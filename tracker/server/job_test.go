package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
	"github.com/shoal-dev/shoal/tracker/server"
	"github.com/shoal-dev/shoal/tracker/trackertest"
)

const seedToken = "seed-token-for-tests"

// blobSeeder is a server.Seeder that serves blobs from memory at once,
// reporting their complete metainfo, unless a blob is gated (it waits for
// the gate) or corrupt (it fails as a digest mismatch does).
type blobSeeder struct {
	mu      sync.Mutex
	blobs   map[digest.Digest][]byte
	corrupt map[digest.Digest]bool
	gate    chan struct{} // nil: no wait
	calls   map[digest.Digest]int
}

func newBlobSeeder() *blobSeeder {
	return &blobSeeder{blobs: map[digest.Digest][]byte{}, corrupt: map[digest.Digest]bool{}, calls: map[digest.Digest]int{}}
}

func (b *blobSeeder) add(data []byte) digest.Digest {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := digest.FromBytes(data)
	b.blobs[d] = data
	return d
}

func (b *blobSeeder) Seed(ctx context.Context, src tracker.Source, progress func(*piece.Info)) error {
	b.mu.Lock()
	b.calls[src.Digest]++
	data, ok := b.blobs[src.Digest]
	corrupt, gate := b.corrupt[src.Digest], b.gate
	b.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !ok {
		return fmt.Errorf("%w: no blob %s", tracker.ErrNotFound, src.Digest)
	}
	progress(trackertest.InfoFor(data, 1<<20))
	if corrupt {
		return fmt.Errorf("%w: content does not match its digest", tracker.ErrUnavailable)
	}
	return nil
}

func (b *blobSeeder) callsOf(d digest.Digest) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[d]
}

// memResolver is a server.Resolver over manifests in memory, keyed by
// "registry/repo@ref".
type memResolver struct {
	mu        sync.Mutex
	manifests map[string]memManifest
	known     map[string]bool
}

type memManifest struct {
	mt   string
	body []byte
}

func newResolver() *memResolver {
	return &memResolver{manifests: map[string]memManifest{}, known: map[string]bool{"": true, "registry.test": true}}
}

func (m *memResolver) put(registry, repo, tag, mt string, body []byte) digest.Digest {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := digest.FromBytes(body)
	m.manifests[registry+"/"+repo+"@"+d.String()] = memManifest{mt, body}
	if tag != "" {
		m.manifests[registry+"/"+repo+"@"+tag] = memManifest{mt, body}
	}
	return d
}

func (m *memResolver) Manifest(_ context.Context, registry, repo, ref string) (string, digest.Digest, []byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	man, ok := m.manifests[registry+"/"+repo+"@"+ref]
	if !ok {
		return "", "", nil, fmt.Errorf("%w: manifest %s:%s", tracker.ErrNotFound, repo, ref)
	}
	return man.mt, digest.FromBytes(man.body), man.body, nil
}

func (m *memResolver) Knows(registry string) bool { return m.known[registry] }

type memPinner struct {
	mu   sync.Mutex
	pins map[digest.Digest]time.Time
}

func (p *memPinner) Pin(d digest.Digest, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pins == nil {
		p.pins = map[digest.Digest]time.Time{}
	}
	p.pins[d] = until
}

func (p *memPinner) until(d digest.Digest) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pins[d]
}

// seedFixture is a tracker with seed jobs over in-memory parts.
type seedFixture struct {
	tr     *trackertest.Tracker
	seeder *blobSeeder
	res    *memResolver
	pins   *memPinner
	clock  *trackertest.Clock
	reg    *prometheus.Registry
	seed   *tracker.Client // with the seed token
}

func newSeedFixture(t *testing.T, edit func(*server.Config)) *seedFixture {
	t.Helper()
	return newSeedFixtureWith(t, edit)
}

// newSeedFixtureWith is newSeedFixture with more options for the server.
func newSeedFixtureWith(t *testing.T, edit func(*server.Config), opts ...server.Option) *seedFixture {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.SeedTokens = []string{seedToken}
	if edit != nil {
		edit(&cfg)
	}
	f := &seedFixture{seeder: newBlobSeeder(), res: newResolver(), pins: &memPinner{},
		clock: trackertest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), reg: prometheus.NewRegistry()}
	f.tr = trackertest.Start(t, cfg, f.seeder, append([]server.Option{server.WithClock(f.clock), server.WithRegisterer(f.reg)}, opts...)...)
	if err := f.tr.EnableSeedJobs(f.res, f.pins); err != nil {
		t.Fatal(err)
	}
	c, err := tracker.NewClient(f.tr.URL, seedToken)
	if err != nil {
		t.Fatal(err)
	}
	f.seed = c
	return f
}

// image puts an image of n layers into the seeder and the resolver and
// returns the manifest's digest and its blobs (config first).
func (f *seedFixture) image(t *testing.T, repo, tag string, n int) (digest.Digest, []digest.Digest) {
	t.Helper()
	cfgBlob := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"},"n":%q}`, repo+tag))
	blobs := []digest.Digest{f.seeder.add(cfgBlob)}
	man := map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blobs[0], "size": len(cfgBlob)}}
	var layers []map[string]any
	for i := range n {
		data := randomBlob(t, 1000+i)
		d := f.seeder.add(data)
		blobs = append(blobs, d)
		layers = append(layers, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(data)})
	}
	man["layers"] = layers
	body, _ := json.Marshal(man)
	return f.res.put("", repo, tag, "application/vnd.oci.image.manifest.v1+json", body), blobs
}

// wait polls the job until it settles or is complete.
func (f *seedFixture) wait(t *testing.T, id string) *tracker.SeedJob {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		job, err := f.seed.SeedJob(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if job.Settled() {
			return job
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job %s did not settle: %+v", id, job)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestSeedJobSeedsEveryBlobAndPins(t *testing.T) {
	t.Parallel()
	f := newSeedFixture(t, nil)
	man, blobs := f.image(t, "team/app", "v1", 3)
	job, err := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"team/app:v1"}})
	if err != nil {
		t.Fatal(err)
	}
	done := f.wait(t, job.ID)
	if done.State != tracker.JobDone || !done.Complete() {
		t.Fatalf("job = %+v, want done", done)
	}
	if len(done.Images) != 1 || done.Images[0].Digest != man {
		t.Errorf("images = %+v, want the manifest %s", done.Images, man)
	}
	if len(done.Blobs) != len(blobs) {
		t.Fatalf("%d blobs in the job, want %d (config and layers)", len(done.Blobs), len(blobs))
	}
	want := f.clock.Now().Add(server.DefaultConfig().SeedPinTTL)
	for i, b := range done.Blobs {
		if b.Digest != blobs[i] || b.State != tracker.BlobDone || b.Bytes != b.Size || b.Size == 0 {
			t.Errorf("blob %d = %+v, want %s done with all its bytes", i, b, blobs[i])
		}
		if got := f.pins.until(b.Digest); !got.Equal(want) {
			t.Errorf("blob %d pinned until %v, want %v", i, got, want)
		}
		if n := f.seeder.callsOf(b.Digest); n != 1 {
			t.Errorf("blob %d seeded %d times", i, n)
		}
	}
	if !done.PinnedUntil.Equal(want) {
		t.Errorf("job pinned until %v, want %v", done.PinnedUntil, want)
	}
	if st := f.tr.Status(); len(st.SeedJobs) != 1 || st.SeedJobs[0].BlobsDone != len(blobs) {
		t.Errorf("status seed jobs = %+v", st.SeedJobs)
	}
}

func TestSeedJobIndexPlatforms(t *testing.T) {
	t.Parallel()
	f := newSeedFixture(t, nil)
	amd, amdBlobs := f.image(t, "multi", "", 1)
	arm, armBlobs := f.image(t, "multi", "arm", 1)
	att, _ := f.image(t, "multi", "att", 1)
	idx := map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []map[string]any{
		{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd, "size": 1, "platform": map[string]string{"os": "linux", "architecture": "amd64"}},
		{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm, "size": 1, "platform": map[string]string{"os": "linux", "architecture": "arm64", "variant": "v8"}},
		{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": att, "size": 1, "platform": map[string]string{"os": "unknown", "architecture": "unknown"}},
	}}
	body, _ := json.Marshal(idx)
	f.res.put("", "multi", "v1", "application/vnd.oci.image.index.v1+json", body)
	for _, tc := range []struct {
		platforms []string
		want      []digest.Digest
	}{
		{nil, append(append([]digest.Digest{}, amdBlobs...), armBlobs...)},
		{[]string{"all"}, append(append([]digest.Digest{}, amdBlobs...), armBlobs...)},
		{[]string{"linux/arm64"}, armBlobs},
		{[]string{"linux/arm64/v8", "linux/amd64"}, append(append([]digest.Digest{}, amdBlobs...), armBlobs...)},
	} {
		job, err := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"multi:v1"}, Platforms: tc.platforms})
		if err != nil {
			t.Fatal(err)
		}
		done := f.wait(t, job.ID)
		var got []digest.Digest
		for _, b := range done.Blobs {
			got = append(got, b.Digest)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || done.State != tracker.JobDone {
			t.Errorf("platforms %v: %s with blobs %v, want done with %v", tc.platforms, done.State, got, tc.want)
		}
	}
	job, _ := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"multi:v1"}, Platforms: []string{"linux/s390x"}})
	if done := f.wait(t, job.ID); done.State != tracker.JobFailed || !strings.Contains(done.Error, "no manifest for platforms") {
		t.Errorf("unknown platform: %+v", done)
	}
}

func TestSeedJobsShareFetchesAndDeduplicate(t *testing.T) {
	t.Parallel()
	f := newSeedFixture(t, nil)
	gate := make(chan struct{})
	f.seeder.gate = gate
	_, a := f.image(t, "a", "v1", 2)
	// b shares a's blobs: the same manifest under another name.
	_, _, raw, _ := f.res.Manifest(t.Context(), "", "a", "v1")
	f.res.put("", "b", "v1", "application/vnd.oci.image.manifest.v1+json", raw)
	ja, err := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"a:v1"}})
	if err != nil {
		t.Fatal(err)
	}
	jb, err := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"b:v1"}})
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"a:v1"}})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != ja.ID || jb.ID == ja.ID {
		t.Fatalf("job ids a=%s b=%s a again=%s: want the same request to be one job", ja.ID, jb.ID, again.ID)
	}
	close(gate)
	for _, id := range []string{ja.ID, jb.ID} {
		if done := f.wait(t, id); done.State != tracker.JobDone {
			t.Fatalf("job %s: %+v", id, done)
		}
	}
	for _, d := range a {
		if n := f.seeder.callsOf(d); n != 1 {
			t.Errorf("blob %s fetched %d times by two jobs, want once", d, n)
		}
	}
}

func TestSeedJobFailures(t *testing.T) {
	t.Parallel()
	f := newSeedFixture(t, nil)
	_, blobs := f.image(t, "corrupt", "v1", 1)
	f.seeder.corrupt[blobs[1]] = true
	for _, tc := range []struct{ image, want string }{
		{"missing/image:v1", "not found"},
		{"corrupt:v1", "does not match its digest"},
		{"elsewhere.test/app:v1", "not configured on the tracker"},
	} {
		job, err := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{tc.image}})
		if err != nil {
			t.Fatal(err)
		}
		done := f.wait(t, job.ID)
		if done.State != tracker.JobFailed || !strings.Contains(done.Error, tc.want) {
			t.Errorf("%s: %s %q, want failed with %q", tc.image, done.State, done.Error, tc.want)
		}
	}
	// A failed job is not deduplicated: asking again retries.
	j1, _ := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"missing/image:v1"}})
	f.wait(t, j1.ID)
	j2, _ := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"missing/image:v1"}})
	if j1.ID == j2.ID {
		t.Error("a failed job was handed out again instead of a retry")
	}
	if _, err := f.seed.SeedJob(t.Context(), "no-such-job"); !errors.Is(err, tracker.ErrNotFound) {
		t.Errorf("unknown job: %v, want ErrNotFound", err)
	}
}

func TestSeedJobQueueFull(t *testing.T) {
	t.Parallel()
	f := newSeedFixture(t, func(c *server.Config) { c.MaxSeedJobs = 1 })
	gate := make(chan struct{})
	f.seeder.gate = gate
	defer close(gate)
	f.image(t, "one", "v1", 1)
	f.image(t, "two", "v1", 1)
	if _, err := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"one:v1"}}); err != nil {
		t.Fatal(err)
	}
	_, err := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"two:v1"}})
	if !errors.Is(err, tracker.ErrBusy) || !strings.Contains(err.Error(), "429") {
		t.Fatalf("second job with a full queue: %v, want ErrBusy (429)", err)
	}
}

// TestSeedTokenRoles: a seed token creates and reads jobs and does nothing
// else; a cluster token reads jobs but creates none; each refusal says why.
func TestSeedTokenRoles(t *testing.T) {
	t.Parallel()
	f := newSeedFixture(t, nil)
	f.image(t, "app", "v1", 1)
	cluster := f.tr.Client(t)
	_, err := cluster.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"app:v1"}})
	if !errors.Is(err, tracker.ErrForbidden) || !strings.Contains(err.Error(), "cluster token") {
		t.Errorf("cluster token creating a job: %v", err)
	}
	job, err := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"app:v1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.SeedJob(t.Context(), job.ID); err != nil {
		t.Errorf("cluster token reading a job: %v", err)
	}
	_, err = f.seed.Peers(t.Context(), digest.FromString("x"), "")
	if !errors.Is(err, tracker.ErrForbidden) || !strings.Contains(err.Error(), "seed token may only") {
		t.Errorf("seed token asking for peers: %v", err)
	}
	_, err = f.seed.Announce(t.Context(), tracker.Announce{Peer: tracker.Peer{ID: "agent1", Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}})
	if !errors.Is(err, tracker.ErrForbidden) {
		t.Errorf("seed token announcing: %v", err)
	}
	wrong, _ := tracker.NewClient(f.tr.URL, "wrong-token")
	if _, err := wrong.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"app:v1"}}); !errors.Is(err, tracker.ErrUnauthorized) {
		t.Errorf("wrong token: %v", err)
	}
}

// TestPreheatPlacesReplicas: with replicas 2 the tracker hands each blob
// to the two agents ranking highest for it, not to those that hold it,
// and the job is done once two agents hold every blob; an agent that stops
// announcing is replaced by the next in the hash order.
func TestPreheatPlacesReplicas(t *testing.T) {
	t.Parallel()
	f := newSeedFixture(t, func(c *server.Config) { c.AnnounceInterval, c.PeerTTL = time.Second, 3*time.Second })
	_, blobs := f.image(t, "app", "v1", 3)
	job, err := f.seed.CreateSeedJob(t.Context(), tracker.SeedRequest{Images: []string{"app:v1"}, Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	agents := []string{"agentA", "agentB", "agentC"}
	holds := map[string][]tracker.BlobState{}
	announce := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			if _, err := f.tr.Announce(t.Context(), tracker.Announce{Peer: tracker.Peer{ID: id, Addrs: []string{"/ip4/127.0.0.1/tcp/1"}}, Blobs: holds[id]}); err != nil {
				t.Fatal(err)
			}
		}
		f.clock.Advance(time.Second) // a new plan
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := f.seed.SeedJob(t.Context(), job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == tracker.JobPreheat {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job never reached preheating: %+v", j)
		}
		time.Sleep(5 * time.Millisecond)
	}
	announce(agents...)
	for _, d := range blobs {
		want := server.Rendezvous(d, agents, 2)
		for _, id := range agents {
			got := false
			for _, it := range f.tr.Preheat(id) {
				got = got || it.Digest == d
			}
			if placed := id == want[0] || id == want[1]; got != placed {
				t.Errorf("blob %s to %s: %v, want %v", d.Encoded()[:8], id, got, placed)
			}
		}
	}
	// The agents fetch their share and announce it.
	for _, id := range agents {
		for _, it := range f.tr.Preheat(id) {
			holds[id] = append(holds[id], tracker.BlobState{Digest: it.Digest, Have: 1, Complete: true})
		}
	}
	announce(agents...)
	for _, id := range agents {
		if w := f.tr.Preheat(id); len(w) != 0 {
			t.Errorf("%s still has work after holding its share: %v", id, w)
		}
	}
	j, _ := f.seed.SeedJob(t.Context(), job.ID)
	if j.State != tracker.JobDone || !j.Complete() {
		t.Fatalf("job with every blob on 2 agents: %+v", j)
	}
	// agentA dies: its blobs go to the next agent in the order.
	var lost []digest.Digest
	for _, d := range blobs {
		if r := server.Rendezvous(d, agents, 2); r[0] == "agentA" || r[1] == "agentA" {
			lost = append(lost, d)
		}
	}
	f.clock.Advance(3 * time.Second)
	announce("agentB", "agentC")
	for _, d := range lost {
		next := server.Rendezvous(d, []string{"agentB", "agentC"}, 2)
		for _, id := range next {
			has := false
			for _, h := range holds[id] {
				has = has || h.Digest == d
			}
			got := false
			for _, it := range f.tr.Preheat(id) {
				got = got || it.Digest == d
			}
			if !has && !got {
				t.Errorf("blob %s of the dead agent not handed to %s", d.Encoded()[:8], id)
			}
		}
	}
}

func TestRendezvousMovesOnlyTheLeaversShare(t *testing.T) {
	t.Parallel()
	agents := []string{"a", "b", "c", "d", "e"}
	for i := range 50 {
		d := digest.FromString(fmt.Sprint(i))
		all := server.Rendezvous(d, agents, 2)
		if again := server.Rendezvous(d, []string{"e", "d", "c", "b", "a"}, 2); fmt.Sprint(again) != fmt.Sprint(all) {
			t.Fatalf("order of the agents changed the placement: %v vs %v", all, again)
		}
		without := server.Rendezvous(d, []string{"a", "b", "c", "d"}, 2)
		if all[0] != "e" && all[1] != "e" && fmt.Sprint(without) != fmt.Sprint(all) {
			t.Fatalf("removing e moved %s from %v to %v", d, all, without)
		}
	}
}
