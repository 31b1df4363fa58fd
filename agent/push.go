package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/registryshim"
)

// Push-through: with WithPush, the agent takes the Distribution API's push
// path and forwards every request of it to the origin as it arrives, while
// the bytes of each blob are teed into a spool file beside the store and
// hashed. Every client PATCH is one upstream PATCH, streamed (nothing is
// held in memory beyond a copy buffer); a PUT's final chunk is sent as one
// more PATCH, so the agent checks the digest itself before it asks the
// origin to commit. The origin's answer is the truth: only once it answered
// 201 and the digest verified is the blob committed to the store (copied
// from the spool, verified again by the store), where the swarm finds it
// (store.OnChange) and announces it. A push the origin refuses is refused
// with the origin's error, and its spool is deleted: nothing of it is
// served. The spool, not a store ingest, takes the bytes because an ingest
// needs the digest and size up front, which a session names only at its
// end; the copy on commit is local and verified again.
//
// Credentials: the client's, as credential.go parsed them into the
// request's context, when it sent some, whatever the registry's mode (a
// push is the requester's own act, and a node's credentials are often
// read-only); when it sent none, the node's, or none at all for a registry
// in requester mode (upstream.Client.pushAuth). Clients send credentials
// only to a registry that asked: with AskCredentials, /v2/ asks, and so does
// every 401. The existence checks a client makes before it uploads (HEADs
// of blobs and manifests) are pulls, made as the registry's mode says. What
// the origin accepted is recorded as confirmed (confirm.go) for the
// identity the push was made as, so the pusher's pulls of it ask the origin
// nothing; a requester's push in node mode confirms nothing for the node.

// PushConfig configures push-through.
type PushConfig struct {
	// Dir holds the spool files of uploads under way; "" is the system's
	// temporary directory. Leftovers of an earlier run are removed.
	Dir string
	// MaxUploads bounds the upload sessions open at once (default 64);
	// more are refused with TOOMANYREQUESTS.
	MaxUploads int
	// IdleTimeout drops a session no request touched for this long
	// (default 10 minutes), here and on the origin.
	IdleTimeout time.Duration
	// AskCredentials makes /v2/ ask clients that send none for
	// credentials (registryshim.WithCredentialChallenge), which is how
	// pushers are made to offer theirs. Clients holding none go on
	// anonymously, except the Docker daemon, which stops.
	AskCredentials bool
}

// WithPush accepts pushes and forwards them to the origin (see push.go).
// Without it every push request is answered 405 UNSUPPORTED.
func WithPush(cfg PushConfig) Option { return func(o *options) { o.push = &cfg } }

const spoolPrefix = "upload-"

// pushes are the open upload sessions.
type pushes struct {
	cfg PushConfig
	now func() time.Time
	log *slog.Logger

	mu   sync.Mutex
	open map[string]*upload

	bytes   prometheus.Counter
	results *prometheus.CounterVec // kind, result
}

// upload is one session: the origin's, the spool and the running hash.
type upload struct {
	id    string
	repo  registryshim.Repo
	authz string // the Authorization header it was opened with
	up    *upstream.Upload
	spool *os.File
	sha   hash.Hash
	size  int64
	busy  bool      // a request holds it; guarded by pushes.mu
	last  time.Time // guarded by pushes.mu
}

func newPushes(cfg PushConfig, now func() time.Time, log *slog.Logger, reg prometheus.Registerer) (*pushes, error) {
	if cfg.MaxUploads <= 0 {
		cfg.MaxUploads = 64
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	if cfg.Dir == "" {
		cfg.Dir = os.TempDir()
	} else {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("agent: push spool directory: %w", err)
		}
		old, _ := filepath.Glob(filepath.Join(cfg.Dir, spoolPrefix+"*"))
		for _, f := range old {
			_ = os.Remove(f)
		}
	}
	p := &pushes{
		cfg: cfg, now: now, log: log,
		open: make(map[string]*upload),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shoal_agent_push_bytes_total",
			Help: "Blob bytes received from pushing clients and forwarded to the origin.",
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shoal_agent_pushes_total",
			Help: "Pushes forwarded to the origin, by kind (blob, mount, manifest) and result (ok, refused: the origin or the agent said no).",
		}, []string{"kind", "result"}),
	}
	if err := reg.Register(p.bytes); err != nil {
		return nil, fmt.Errorf("agent: push metrics: %w", err)
	}
	if err := reg.Register(p.results); err != nil {
		return nil, fmt.Errorf("agent: push metrics: %w", err)
	}
	return p, nil
}

func (p *pushes) count(kind string, err error) {
	result := "ok"
	if err != nil {
		result = "refused"
	}
	p.results.WithLabelValues(kind, result).Inc()
}

// add registers a new session for up, with its spool.
func (p *pushes) add(pu registryshim.Pusher, up *upstream.Upload) (*upload, error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	f, err := os.CreateTemp(p.cfg.Dir, spoolPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("%w: spool: %w", registryshim.ErrUnavailable, err)
	}
	u := &upload{id: hex.EncodeToString(b[:]), repo: pu.Repo, authz: pu.Authorization,
		up: up, spool: f, sha: sha256.New(), last: p.now()}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.open) >= p.cfg.MaxUploads { // others opened since room said yes
		u.closeSpool()
		return nil, fmt.Errorf("%w: %d uploads open", registryshim.ErrTooManyRequests, p.cfg.MaxUploads)
	}
	p.open[u.id] = u
	return u, nil
}

// room drops idle sessions and reports whether another may open.
func (p *pushes) room() bool {
	now := p.now()
	var idle []*upload
	p.mu.Lock()
	for id, u := range p.open {
		if !u.busy && now.Sub(u.last) >= p.cfg.IdleTimeout {
			delete(p.open, id)
			idle = append(idle, u)
		}
	}
	ok := len(p.open) < p.cfg.MaxUploads
	p.mu.Unlock()
	for _, u := range idle {
		p.log.Info("push upload idle, dropped", "repo", u.repo.Name, "uuid", u.id, "bytes", u.size)
		u.discard(context.Background())
	}
	return ok
}

// take gives a request the session id, if it belongs to pu's repository and
// credentials and no other request holds it.
func (p *pushes) take(pu registryshim.Pusher, id string) (*upload, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.open[id]
	if u == nil || u.repo != pu.Repo || u.authz != pu.Authorization {
		return nil, registryshim.ErrBlobUploadUnknown
	}
	if u.busy {
		return nil, fmt.Errorf("%w: another request of the session is under way", registryshim.ErrBlobUploadInvalid)
	}
	u.busy = true
	return u, nil
}

func (p *pushes) release(u *upload) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u.busy, u.last = false, p.now()
}

// drop ends a session: the spool is deleted, the origin's session
// cancelled when cancel is set.
func (p *pushes) drop(ctx context.Context, u *upload, cancel bool) {
	p.mu.Lock()
	delete(p.open, u.id)
	p.mu.Unlock()
	if cancel {
		u.discard(ctx)
		return
	}
	u.closeSpool()
}

func (u *upload) discard(ctx context.Context) {
	cctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer stop()
	u.up.Cancel(cctx)
	u.closeSpool()
}

func (u *upload) closeSpool() {
	u.spool.Close()
	_ = os.Remove(u.spool.Name())
}

// close drops every session.
func (p *pushes) close() {
	p.mu.Lock()
	open := p.open
	p.open = map[string]*upload{}
	p.mu.Unlock()
	for _, u := range open {
		u.discard(context.Background())
	}
}

// pushBackend is the agent as a registryshim.PushBackend; the shim is
// given it instead of the Agent when pushes are allowed.
type pushBackend struct{ *Agent }

var _ registryshim.PushBackend = pushBackend{}

// confirm records dgst as confirmed in repo for the identity the push of
// ctx was made as (see above).
func (b pushBackend) confirm(ctx context.Context, repo registryshim.Repo, dgst digest.Digest) {
	if b.up.PushedAs(ctx, repo.Registry) {
		b.confirms.add(b.keyFor(ctx, repo, dgst))
	}
}

func (b pushBackend) StartUpload(ctx context.Context, pu registryshim.Pusher) (string, error) {
	if !b.pushes.room() {
		return "", fmt.Errorf("%w: %d uploads open", registryshim.ErrTooManyRequests, b.pushes.cfg.MaxUploads)
	}
	up, err := b.up.StartUpload(ctx, pu.Repo.Registry, pu.Repo.Name)
	if err != nil {
		b.pushes.count("blob", err)
		return "", pushError(err)
	}
	u, err := b.pushes.add(pu, up)
	if err != nil {
		up.Cancel(ctx)
		return "", err
	}
	return u.id, nil
}

func (b pushBackend) UploadOffset(_ context.Context, pu registryshim.Pusher, id string) (int64, error) {
	u, err := b.pushes.take(pu, id)
	if err != nil {
		return 0, err
	}
	defer b.pushes.release(u)
	return u.size, nil
}

func (b pushBackend) WriteUpload(ctx context.Context, pu registryshim.Pusher, id string, c registryshim.Chunk) (int64, error) {
	u, err := b.pushes.take(pu, id)
	if err != nil {
		return 0, err
	}
	if err := b.write(ctx, u, c); err != nil {
		return 0, err
	}
	size := u.size
	b.pushes.release(u)
	return size, nil
}

// write forwards a chunk to the origin, teeing it into the spool and the
// hash. A chunk that does not start at the session's offset is refused and
// the session kept; any other failure ends the session, here and on the
// origin: what the origin holds of it is not known any more.
func (b pushBackend) write(ctx context.Context, u *upload, c registryshim.Chunk) error {
	if c.Offset >= 0 && c.Offset != u.size {
		b.pushes.release(u)
		return fmt.Errorf("%w: chunk at %d, upload at %d", registryshim.ErrUploadOutOfOrder, c.Offset, u.size)
	}
	if c.Length == 0 || c.Body == nil {
		return nil
	}
	src := &clientBody{r: c.Body}
	var body io.Reader = src
	if c.Length > 0 {
		body = io.LimitReader(src, c.Length)
	}
	tee := &teeReader{r: body, w: io.MultiWriter(u.spool, u.sha)}
	before := u.up.Offset()
	err := u.up.Write(ctx, tee, c.Length)
	n := u.up.Offset() - before
	b.pushes.bytes.Add(float64(tee.n))
	switch {
	case err == nil && c.Length > 0 && n != c.Length:
		err = fmt.Errorf("%w: %d of %d bytes", registryshim.ErrSizeInvalid, n, c.Length)
	case src.err != nil && !errors.Is(src.err, io.EOF):
		err = fmt.Errorf("%w: reading the chunk: %w", registryshim.ErrBlobUploadInvalid, src.err)
	case tee.werr != nil:
		err = fmt.Errorf("%w: spool: %w", registryshim.ErrUnavailable, tee.werr)
	case err != nil:
		err = pushError(err)
	}
	if err != nil {
		b.pushes.count("blob", err)
		b.pushes.drop(ctx, u, true)
		return err
	}
	u.size += n
	return nil
}

func (b pushBackend) FinishUpload(ctx context.Context, pu registryshim.Pusher, id string, dgst digest.Digest, c registryshim.Chunk) error {
	u, err := b.pushes.take(pu, id)
	if err != nil {
		return err
	}
	if err := b.write(ctx, u, c); err != nil {
		return err
	}
	if got, err := u.digest(dgst.Algorithm()); err != nil || got != dgst {
		b.pushes.count("blob", registryshim.ErrDigestInvalid)
		b.pushes.drop(ctx, u, true)
		if err != nil {
			return fmt.Errorf("%w: spool: %w", registryshim.ErrUnavailable, err)
		}
		return fmt.Errorf("%w: content is %s", registryshim.ErrDigestInvalid, got)
	}
	if err := u.up.Finish(ctx, dgst, nil, 0); err != nil {
		b.pushes.count("blob", err)
		b.pushes.drop(ctx, u, true)
		return pushError(err)
	}
	b.pushes.count("blob", nil)
	// The origin holds the blob: from here on the push has succeeded, and
	// the store is only a copy.
	if err := b.commitPushed(ctx, dgst, u.spool, u.size); err != nil {
		b.log.Warn("pushed blob not kept in the store", "digest", dgst, "err", err)
	}
	b.confirm(ctx, u.repo, dgst)
	b.pushes.drop(ctx, u, false)
	b.log.Info("blob pushed through", "registry", u.repo.Registry, "repo", u.repo.Name, "digest", dgst, "bytes", u.size)
	return nil
}

// digest is the digest of what the session received.
func (u *upload) digest(alg digest.Algorithm) (digest.Digest, error) {
	if alg == digest.SHA256 {
		return digest.NewDigest(alg, u.sha), nil
	}
	if !alg.Available() {
		return "", fmt.Errorf("algorithm %s unavailable", alg)
	}
	return alg.FromReader(io.NewSectionReader(u.spool, 0, u.size))
}

// commitPushed copies a pushed blob from its spool into the store, which
// verifies it again, and waits for the commit. The piece CIDs are computed
// on the way and handed to the swarm, which answers peers (the seeder
// first) with them instead of reading the blob back.
func (a *Agent) commitPushed(ctx context.Context, dgst digest.Digest, f *os.File, size int64) error {
	ctx = context.WithoutCancel(ctx)
	if _, err := a.store.Stat(ctx, dgst); err == nil {
		return nil
	}
	info := &piece.Info{Digest: dgst, Size: size, PieceSize: piece.SizeFor(size)}
	r, err := a.store.Fetch(ctx, dgst, size, func(ctx context.Context, w store.Writer) error {
		h := piece.NewHasher(info.PieceSize, func(_ int, c cid.Cid) { info.Pieces = append(info.Pieces, c) })
		buf := make([]byte, copyBuffer)
		for off := int64(0); off < size; {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
			if n > 0 {
				if _, werr := w.WriteAt(buf[:n], off); werr != nil {
					return werr
				}
				h.Write(buf[:n])
				off += int64(n)
			}
			if err != nil && off < size {
				return err
			}
		}
		return h.Close()
	})
	if err != nil {
		return err
	}
	defer r.Close()
	var b [1]byte
	if _, err := r.ReadAt(b[:], size); !errors.Is(err, io.EOF) { // the end is readable once committed
		return fmt.Errorf("store commit: %w", err)
	}
	if a.swarm != nil && dgst.Algorithm() == digest.SHA256 {
		a.swarm.Hashed(info) // complete only if this fill ran, not one it joined
	}
	return nil
}

func (b pushBackend) CancelUpload(ctx context.Context, pu registryshim.Pusher, id string) error {
	u, err := b.pushes.take(pu, id)
	if err != nil {
		return err
	}
	b.pushes.drop(ctx, u, true)
	return nil
}

func (b pushBackend) MountBlob(ctx context.Context, pu registryshim.Pusher, from string, dgst digest.Digest) (string, error) {
	if !b.pushes.room() {
		return "", fmt.Errorf("%w: %d uploads open", registryshim.ErrTooManyRequests, b.pushes.cfg.MaxUploads)
	}
	up, err := b.up.MountBlob(ctx, pu.Repo.Registry, pu.Repo.Name, from, dgst)
	if err != nil {
		b.pushes.count("mount", err)
		return "", pushError(err)
	}
	if up == nil {
		b.pushes.count("mount", nil)
		b.confirm(ctx, pu.Repo, dgst)
		return "", nil
	}
	u, err := b.pushes.add(pu, up)
	if err != nil {
		up.Cancel(ctx)
		return "", err
	}
	return u.id, nil
}

func (b pushBackend) PutManifest(ctx context.Context, pu registryshim.Pusher, ref string, m *registryshim.Manifest) error {
	err := b.up.PutManifest(ctx, pu.Repo.Registry, pu.Repo.Name, ref, m.MediaType, m.Body, m.Digest)
	b.pushes.count("manifest", err)
	if err != nil {
		return pushError(err)
	}
	b.mans.put(m)
	if b.up.PushedAs(ctx, pu.Repo.Registry) {
		b.confirmManifestFor(ctx, pu.Repo, m)
	}
	if _, perr := digest.Parse(ref); perr != nil {
		b.tags.put(tagKey{pu.Repo.Registry, pu.Repo.Name, ref}, m.Digest, b.now())
	}
	b.log.Info("manifest pushed through", "registry", pu.Repo.Registry, "repo", pu.Repo.Name, "ref", ref, "digest", m.Digest)
	return nil
}

// pushErrors maps the push path's upstream answers; the rest go through
// the agent's one table (errors.go).
var pushErrors = []struct{ up, oci error }{
	{upstream.ErrUploadUnknown, registryshim.ErrBlobUploadUnknown},
	{upstream.ErrUploadInvalid, registryshim.ErrBlobUploadInvalid},
	{upstream.ErrSizeInvalid, registryshim.ErrSizeInvalid},
	{upstream.ErrManifestBlobUnknown, registryshim.ErrManifestBlobUnknown},
	{upstream.ErrRangeNotSatisfiable, registryshim.ErrUploadOutOfOrder},
}

func pushError(err error) error {
	for _, m := range pushErrors {
		if errors.Is(err, m.up) {
			return fmt.Errorf("%w: %w", m.oci, err)
		}
	}
	return ociError(err)
}

// clientBody remembers why reading the client's body stopped.
type clientBody struct {
	r   io.Reader
	err error
}

func (c *clientBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil {
		c.err = err
	}
	return n, err
}

// teeReader is io.TeeReader that remembers a write failure.
type teeReader struct {
	r    io.Reader
	w    io.Writer
	n    int64
	werr error
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.werr = werr
			return n, werr
		}
		t.n += int64(n)
	}
	return n, err
}
