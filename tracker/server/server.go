package server

import (
	"bytes"
	"container/list"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

// Seeder fetches blobs from the origin on the tracker's behalf.
type Seeder interface {
	// Seed fetches src from the origin, calling progress with the metainfo
	// known so far each time it grows; returns once the blob is complete and
	// verified, or an error wrapping tracker.ErrNotFound (the origin does not
	// have it) or tracker.ErrUnavailable (the origin could not be reached).
	Seed(ctx context.Context, src tracker.Source, progress func(*piece.Info)) error
}

// Clock tells the time; injected so tests can drive expiry.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Server is the tracker. Its zero value is not usable; call New, then Start.
type Server struct {
	cfg     Config
	seeder  Seeder // set once by Start, before the server is used
	log     *slog.Logger
	reg     prometheus.Registerer
	clock   Clock
	metrics *metrics
	tokens  [][sha256.Size]byte // hashes of the accepted tokens
	secret  [32]byte            // derives announce session keys (tracker.SessionHeader)
	swarm   *swarm
	seed    *uint64   // WithSeed
	started time.Time // by clock: Listed cannot tell before PeerTTL has passed
	// seedJobs runs seed jobs, webhooks and preheat (job.go).
	seedJobs *jobs
	replicas Replicas // WithReplicas: webhooks shard over them

	ctx     context.Context // parent of every seeding; canceled by Close
	cancel  context.CancelFunc
	closing chan struct{} // closed by Close: wakes long-polls
	seeds   sync.WaitGroup

	mu      sync.Mutex // guards closed, infos, lru and seeding
	closed  bool
	seeding int // entries being seeded
	infos   map[digest.Digest]*entry
	lru     *list.List // of *entry not being seeded; front = most recently asked
	closeMu sync.Once
}

// New returns a tracker that has no seeder yet: Start gives it one. The two
// steps let the seeder's own swarm announce to this server in process,
// while the server calls the seeder.
func New(cfg Config, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     slog.New(slog.DiscardHandler),
		clock:   systemClock{},
		closing: make(chan struct{}),
		infos:   make(map[digest.Digest]*entry),
		lru:     list.New(),
	}
	for _, tok := range cfg.Tokens {
		s.tokens = append(s.tokens, sha256.Sum256([]byte(tok)))
	}
	if _, err := crand.Read(s.secret[:]); err != nil {
		return nil, fmt.Errorf("tracker: session secret: %w", err)
	}
	for _, o := range opts {
		o(s)
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(s.reg)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if s.seedJobs, err = newJobs(s); err != nil {
		return nil, err
	}
	s.started = s.clock.Now()
	s.swarm = newSwarm(cfg.pace, func(d int) { m.peers.Add(float64(d)) })
	if s.seed != nil {
		s.swarm.rng = rand.New(rand.NewPCG(*s.seed, 0))
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Start hands the server its seeder. Call it once, before serving Handler
// or calling the server's methods.
func (s *Server) Start(seeder Seeder) error {
	if seeder == nil {
		return errors.New("tracker: nil seeder")
	}
	if s.seeder != nil {
		return errors.New("tracker: Start called twice")
	}
	s.seeder = seeder
	return nil
}

// Close stops every seeding, answers pending long-polls with 503 and waits
// for the seeding goroutines to return. Requests after Close answer 503.
func (s *Server) Close() error {
	s.closeMu.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		close(s.closing)
	})
	s.seeds.Wait()
	return nil
}

// Handler serves the tracker's HTTP API (see the package documentation).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.Handle("POST /v1/announce", s.auth(s.handleAnnounce))
	mux.Handle("GET /v1/blobs/{digest}/peers", s.auth(s.handlePeers))
	mux.Handle("GET /v1/blobs/{digest}/metainfo", s.auth(s.handleMetaInfo))
	mux.Handle("GET /v1/peers/{id}", s.auth(s.handleListed)) // peer admission (admit.go)
	mux.Handle("GET /v1/status", s.auth(s.handleStatus))
	s.seedRoutes(mux)                           // seed jobs and webhooks (job_http.go)
	mux.HandleFunc("GET /status", s.statusPage) // Basic auth for browsers (status.go)
	mux.Handle("/v1/", s.auth(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, fmt.Errorf("%w: no route %s %s", tracker.ErrInvalid, r.Method, r.URL.Path[:min(len(r.URL.Path), 80)]))
	}))
	return mux
}

func (s *Server) auth(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Hashing first makes the comparison constant-time in the length too.
		sum := sha256.Sum256([]byte(tok))
		if !ok || !s.known(sum) {
			if ok && s.seedJobs.knows(sum) {
				s.writeError(w, seedTokenRefusal())
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoal-tracker"`)
			s.writeError(w, fmt.Errorf("%w: missing or wrong bearer token", tracker.ErrUnauthorized))
			return
		}
		next(w, r)
	})
}

// Announce records an agent's announce, as POST /v1/announce does; the
// seeder of this server calls it in process.
func (s *Server) Announce(_ context.Context, a tracker.Announce) (time.Duration, error) {
	if err := a.Validate(); err != nil {
		return 0, err
	}
	return s.record(a, [32]byte{}), nil
}

// record keeps a, whose body hashes to sum, and returns the interval to
// tell its peer.
func (s *Server) record(a tracker.Announce, sum [32]byte) time.Duration {
	interval := s.swarm.announce(a, s.clock.Now(), sum)
	s.metrics.announces.Inc()
	s.log.Debug("announce", "peer", a.Peer.ID, "blobs", len(a.Blobs), "seeder", a.Peer.Seeder)
	return interval
}

// Peers hands out peers holding d, never self, as GET
// /v1/blobs/{digest}/peers does.
func (s *Server) Peers(_ context.Context, d digest.Digest, self string) ([]tracker.Peer, error) {
	if err := validPeersRequest(d, self); err != nil {
		return nil, err
	}
	return s.handout(d, self), nil
}

// handout draws the peers of a valid request and counts them.
func (s *Server) handout(d digest.Digest, self string) []tracker.Peer {
	peers := s.swarm.handout(d, self, s.cfg.MaxHandout, s.clock.Now())
	s.metrics.handouts.Inc()
	s.metrics.handoutPeers.Observe(float64(len(peers)))
	return peers
}

func validPeersRequest(d digest.Digest, self string) error {
	if err := tracker.ValidateDigest(d); err != nil {
		return err
	}
	if self != "" {
		return tracker.ValidatePeerID(self)
	}
	return nil
}

// MetaInfo answers what GET /v1/blobs/{digest}/metainfo does (see the
// package documentation), in process.
func (s *Server) MetaInfo(ctx context.Context, src tracker.Source, have int) (*piece.Info, error) {
	v, err := s.metaInfo(ctx, src, have)
	if err != nil {
		return nil, err
	}
	return v.info, nil
}

// MetaInfoAfter is MetaInfo with have the pieces of known: in process,
// the whole Info costs no more than the hashes after known's.
func (s *Server) MetaInfoAfter(ctx context.Context, src tracker.Source, known *piece.Info) (*piece.Info, error) {
	return s.MetaInfo(ctx, src, len(known.Pieces))
}

// metaInfo long-polls the metainfo of src until more than have pieces are
// known or it is complete, or MetaInfoWait passes, and counts the answer.
func (s *Server) metaInfo(ctx context.Context, src tracker.Source, have int) (view, error) {
	err := src.Validate()
	if err == nil && (have < -1 || have > piece.MaxPieces) {
		err = fmt.Errorf("%w: have %d", tracker.ErrInvalid, have)
	}
	if err != nil {
		s.metrics.metaInfoCalls.WithLabelValues(resultInvalid).Inc()
		return view{}, err
	}
	v, err := s.await(ctx, src, have)
	s.metrics.metaInfoCalls.WithLabelValues(resultOf(err)).Inc()
	return v, err
}

func (s *Server) await(ctx context.Context, src tracker.Source, have int) (view, error) {
	wait := time.NewTimer(s.cfg.MetaInfoWait)
	defer wait.Stop()
	gen := 0 // seedings start at 1
	for {
		v, err := s.watch(src, gen)
		gen = v.gen
		if err != nil {
			return v, err
		}
		if v.info != nil && (have < 0 || len(v.info.Pieces) > have || v.info.Complete()) {
			return v, nil
		}
		select {
		case <-v.changed:
			continue
		case <-wait.C:
			if v.info != nil {
				return v, nil
			}
			return v, fmt.Errorf("%w: seeding %s has reported nothing yet", tracker.ErrPending, src.Digest)
		case <-s.closing:
			return v, fmt.Errorf("%w: tracker shutting down", tracker.ErrUnavailable)
		case <-ctx.Done():
			return v, ctx.Err()
		}
	}
}

// known reports whether sum is the hash of an accepted token, comparing
// with every one in constant time.
func (s *Server) known(sum [sha256.Size]byte) bool {
	match := 0
	for _, t := range s.tokens {
		match |= subtle.ConstantTimeCompare(sum[:], t[:])
	}
	return match == 1
}

// handleAnnounce records an API announce: well-formed (else 400), not a
// seeder's, and signed by the key of its peer ID (else 401, see
// tracker.SignatureHeader), so a token holder speaks only for itself.
func (s *Server) handleAnnounce(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		s.writeError(w, requestError(err))
		return
	}
	sum := sha256.Sum256(body)
	id, err := s.checkSession(r, body)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if id != "" {
		if interval, ok := s.swarm.touch(id, sum, s.clock.Now()); ok {
			s.metrics.announces.Inc()
			s.writeJSON(w, http.StatusOK, tracker.AnnounceResponse{IntervalMs: interval.Milliseconds(), Preheat: s.Preheat(id)})
			return
		}
	}
	a, err := tracker.DecodeAnnounce(bytes.NewReader(body))
	if err != nil {
		s.writeError(w, requestError(err))
		return
	}
	if a.Peer.Seeder {
		// The one seeder is this server's own, which announces in process:
		// a token holder must not draw every agent's first requests.
		s.metrics.refused.WithLabelValues(refusedSeeder).Inc()
		s.log.Warn("announce refused: an agent claimed to be a seeder", "peer", a.Peer.ID)
		s.writeError(w, fmt.Errorf("%w: only the tracker's own seeder announces as a seeder", tracker.ErrUnauthorized))
		return
	}
	var sess *tracker.Session
	switch {
	case id != "" && id != a.Peer.ID:
		s.metrics.refused.WithLabelValues(refusedBadSession).Inc()
		s.writeError(w, fmt.Errorf("%w: the session is another peer's", tracker.ErrBadSession))
		return
	case id == "":
		if err := s.verifyAnnounce(r, body, a); err != nil {
			s.writeError(w, err)
			return
		}
		if r.Header.Get(tracker.SessionHeader) == "new" {
			v := tracker.NewSession(s.secret[:], a.Peer.ID, s.clock.Now())
			sess = &v
		}
	}
	if a.Pieces != piece.Policy {
		// An agent of another piece policy stays listed (peer admission)
		// but is nobody's holder: its piece n is not ours.
		s.metrics.refused.WithLabelValues(refusedPolicy).Inc()
		s.log.Debug("announce of another piece policy: its blobs are left out", "peer", a.Peer.ID, "pieces", a.Pieces)
		a.Blobs = nil
	}
	interval := s.record(a, sum)
	s.writeJSON(w, http.StatusOK, tracker.AnnounceResponse{IntervalMs: interval.Milliseconds(), Preheat: s.Preheat(a.Peer.ID), Session: sess})
}

func (s *Server) handlePeers(w http.ResponseWriter, r *http.Request) {
	d, self := digest.Digest(r.PathValue("digest")), r.URL.Query().Get("self")
	// A bad request is 400 before a policy refusal (409), and neither
	// draws a handout or counts one.
	err := validPeersRequest(d, self)
	if err == nil {
		err = tracker.CheckPolicy(r.URL.Query().Get(tracker.PiecesParam))
	}
	if err != nil {
		s.writeError(w, err)
		return
	}
	peers := s.handout(d, self)
	w.Header().Set(tracker.PiecesHeader, strconv.Itoa(piece.Policy))
	s.writeJSON(w, http.StatusOK, tracker.PeersResponse{Peers: peers})
}

func (s *Server) handleMetaInfo(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	src := tracker.Source{Registry: q.Get("registry"), Repo: q.Get("repo"), Digest: digest.Digest(r.PathValue("digest"))}
	have, err := tracker.ParseHave(q.Get("have"))
	from := 0
	if err == nil {
		from, err = tracker.ParseFrom(q.Get(tracker.FromParam))
	}
	if err == nil {
		err = src.Validate()
	}
	if err == nil {
		// Before seeding: an agent of another policy would get nothing of use.
		err = tracker.CheckPolicy(q.Get(tracker.PiecesParam))
	}
	if err != nil {
		s.metrics.metaInfoCalls.WithLabelValues(resultInvalid).Inc()
		s.writeError(w, err)
		return
	}
	v, err := s.metaInfo(r.Context(), src, have)
	switch {
	case err == nil && from > 0 && from <= len(v.info.Pieces):
		// Only the hashes the asker lacks; a from beyond those known (a
		// tracker that restarted and knows fewer) gets the whole Info.
		d := tracker.MetaInfoDelta{Info: *v.info, From: from}
		d.Pieces = d.Pieces[from:]
		body, err := json.Marshal(d)
		if err != nil {
			s.writeError(w, err)
			return
		}
		s.writeInfo(w, append(body, '\n'))
	case err == nil:
		s.writeInfo(w, v.body)
	case r.Context().Err() == nil:
		s.writeError(w, err)
	}
}

// writeInfo sends an Info encoded once for all its askers.
func (s *Server) writeInfo(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set(tracker.PiecesHeader, strconv.Itoa(piece.Policy))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// readBody reads an announce's body, in one allocation when its length is
// declared.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, tracker.MaxRequestBody)
	if n := r.ContentLength; n > 0 && n <= tracker.MaxRequestBody {
		body := make([]byte, n)
		if _, err := io.ReadFull(rd, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	return io.ReadAll(rd)
}

// requestError classifies a body decoding failure: too large or malformed is
// the client's fault; anything else (a broken connection) is not answerable.
func requestError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return fmt.Errorf("%w: body larger than %d bytes", tracker.ErrInvalid, tooBig.Limit)
	}
	if errors.Is(err, tracker.ErrInvalid) {
		return err
	}
	return fmt.Errorf("%w: reading body: %v", tracker.ErrInvalid, err)
}

func resultOf(err error) string {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, tracker.ErrPending):
		return resultPending
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return resultCanceled
	case errors.Is(err, tracker.ErrNotFound):
		return resultNotFound
	case errors.Is(err, tracker.ErrInvalid):
		return resultInvalid
	default:
		return resultUnavailable
	}
}

func (s *Server) writeError(w http.ResponseWriter, err error) {
	code, status := tracker.StatusOf(err)
	msg := err.Error()
	if len(msg) > tracker.MaxMessageLen {
		msg = msg[:tracker.MaxMessageLen]
	}
	s.writeJSON(w, status, tracker.ErrorBody{Code: code, Message: msg})
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own types are encoded here; failing means a bug.
		s.log.Error("encode response", "error", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
