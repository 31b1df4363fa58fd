package shimtest_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/shoal-dev/shoal/registryshim"
	"github.com/shoal-dev/shoal/registryshim/shimtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var repo = registryshim.Repo{Registry: "example.test", Name: "team/app"}

func TestMemoryLookups(t *testing.T) {
	t.Parallel()
	m := shimtest.NewMemory()
	body := []byte(`{"schemaVersion":2}`)
	md := m.PutManifest(repo, "v1", "application/vnd.oci.image.manifest.v1+json", body)
	m.PutManifest(repo, "v2", "application/vnd.oci.image.manifest.v1+json", body)
	bd := m.PutBlob(repo, []byte("layer"))
	ctx := t.Context()

	got, err := m.Manifest(ctx, repo, "v1", false)
	if err != nil || got.Digest != md || string(got.Body) != string(body) || got.Size != int64(len(body)) || got.Stale {
		t.Fatalf("Manifest(v1) = %+v, %v", got, err)
	}
	if got, err := m.Manifest(ctx, repo, md.String(), true); err != nil || got.Body != nil || got.Size != int64(len(body)) {
		t.Errorf("Manifest(digest, head) = %+v, %v", got, err)
	}
	m.SetStale(true)
	if got, _ := m.Manifest(ctx, repo, "v1", true); !got.Stale {
		t.Error("SetStale(true) not reflected")
	}
	if size, err := m.StatBlob(ctx, repo, bd); err != nil || size != 5 {
		t.Errorf("StatBlob = %d, %v", size, err)
	}
	if tags, err := m.Tags(ctx, repo, -1, ""); err != nil || !slices.Equal(tags, []string{"v1", "v2"}) {
		t.Errorf("Tags = %v, %v", tags, err)
	}
	if tags, _ := m.Tags(ctx, repo, 1, "v1"); !slices.Equal(tags, []string{"v2"}) {
		t.Errorf("Tags(1, v1) = %v", tags)
	}

	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"unknown tag", second(m.Manifest(ctx, repo, "v3", false)), registryshim.ErrManifestUnknown},
		{"unknown digest", second(m.Manifest(ctx, repo, bd.String(), false)), registryshim.ErrManifestUnknown},
		{"unknown blob", second(m.Blob(ctx, repo, md)), registryshim.ErrBlobUnknown},
		{"unknown stat", second(m.StatBlob(ctx, repo, md)), registryshim.ErrBlobUnknown},
		{"other registry", second(m.Tags(ctx, registryshim.Repo{Name: repo.Name}, -1, "")), registryshim.ErrNameUnknown},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: error = %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	if n := len(m.Calls()); n != 11 {
		t.Errorf("%d calls recorded, want 11", n)
	}
}

func second[T any](_ T, err error) error { return err }

func TestMemoryHook(t *testing.T) {
	t.Parallel()
	m := shimtest.NewMemory()
	d := m.PutBlob(repo, []byte("x"))
	m.SetHook(func(_ context.Context, c shimtest.Call) error {
		if c.Op == shimtest.OpStatBlob {
			return registryshim.ErrUnavailable
		}
		return nil
	})
	if _, err := m.StatBlob(t.Context(), repo, d); !errors.Is(err, registryshim.ErrUnavailable) {
		t.Errorf("StatBlob error = %v", err)
	}
	if _, err := m.Blob(t.Context(), repo, d); err != nil {
		t.Errorf("Blob error = %v", err)
	}
	m.SetHook(nil)
	if _, err := m.StatBlob(t.Context(), repo, d); err != nil {
		t.Errorf("StatBlob after hook removed: %v", err)
	}
}

func TestBlobReadAt(t *testing.T) {
	t.Parallel()
	m := shimtest.NewMemory()
	d := m.PutBlob(repo, []byte("0123456789"))
	b, err := m.Blob(t.Context(), repo, d)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4)
	if n, err := b.ReadAt(p, 2); n != 4 || err != nil || string(p) != "2345" {
		t.Errorf("ReadAt(2) = %d, %v, %q", n, err, p)
	}
	if n, err := b.ReadAt(p, 8); n != 2 || err != io.EOF {
		t.Errorf("ReadAt(8) = %d, %v", n, err)
	}
	if _, err := b.ReadAt(p, -1); err == nil {
		t.Error("negative offset accepted")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadAt(p, 0); err == nil {
		t.Error("read after Close succeeded")
	}
}

func TestGate(t *testing.T) {
	t.Parallel()
	m := shimtest.NewMemory()
	d := m.PutBlob(repo, []byte("0123456789"))
	gate := m.Gate(d)
	if m.Gate(d) != gate {
		t.Fatal("Gate returned a second gate for the same digest")
	}
	b, err := m.Blob(t.Context(), repo, d)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	gate.Release(4)
	p := make([]byte, 4)
	if n, err := b.ReadAt(p, 0); n != 4 || err != nil {
		t.Fatalf("released bytes: %d, %v", n, err)
	}

	// A read past the released bytes waits for the next release.
	done := make(chan error)
	go func() {
		_, err := b.ReadAt(p, 4)
		done <- err
	}()
	gate.Release(8)
	if err := <-done; err != nil || string(p) != "4567" {
		t.Fatalf("after release: %v, %q", err, p)
	}

	// ...or fails with the gate.
	boom := errors.New("download failed")
	go func() {
		_, err := b.ReadAt(p, 6)
		done <- err
	}()
	gate.Fail(boom)
	if err := <-done; !errors.Is(err, boom) {
		t.Fatalf("after Fail: %v", err)
	}
	// Released bytes stay readable.
	if _, err := b.ReadAt(p[:2], 6); err != nil {
		t.Errorf("released bytes after Fail: %v", err)
	}
}

func TestGateHonoursContext(t *testing.T) {
	t.Parallel()
	m := shimtest.NewMemory()
	d := m.PutBlob(repo, []byte("0123456789"))
	m.Gate(d)
	ctx, cancel := context.WithCancel(t.Context())
	b, err := m.Blob(ctx, repo, d)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done := make(chan error)
	go func() {
		_, err := b.ReadAt(make([]byte, 1), 0)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("ReadAt after cancel: %v", err)
	}
}
