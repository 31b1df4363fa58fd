package tracker

import (
	"container/list"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoal-dev/shoal/p2p/piece"
)

// Seeder fetches blobs from the origin on the tracker's behalf.
type Seeder interface {
	// Seed fetches src from the origin, calling progress with the metainfo
	// known so far each time it grows; returns once the blob is complete and
	// verified, or an error wrapping ErrNotFound (the origin does not have
	// it) or ErrUnavailable (the origin could not be reached).
	Seed(ctx context.Context, src Source, progress func(*piece.Info)) error
}

// Clock tells the time; injected so tests can drive expiry.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Server is the tracker. Its zero value is not usable; call NewServer.
type Server struct {
	cfg     Config
	seeder  Seeder
	log     *slog.Logger
	reg     prometheus.Registerer
	clock   Clock
	metrics *metrics
	token   [sha256.Size]byte
	swarm   *swarm

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

// NewServer returns a tracker seeded by seeder.
func NewServer(cfg Config, seeder Seeder, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if seeder == nil {
		return nil, errors.New("tracker: nil seeder")
	}
	s := &Server{
		cfg:     cfg,
		seeder:  seeder,
		log:     slog.New(slog.DiscardHandler),
		clock:   systemClock{},
		token:   sha256.Sum256([]byte(cfg.Token)),
		closing: make(chan struct{}),
		infos:   make(map[digest.Digest]*entry),
		lru:     list.New(),
	}
	for _, o := range opts {
		o.applyServer(s)
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(s.reg)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.swarm = newSwarm(cfg.PeerTTL, func(d int) { m.peers.Add(float64(d)) })
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
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
	mux.Handle("/v1/", s.auth(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, fmt.Errorf("%w: no route %s %s", ErrInvalid, r.Method, truncate(r.URL.Path)))
	}))
	return mux
}

func (s *Server) auth(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Hashing first makes the comparison constant-time in the length too.
		sum := sha256.Sum256([]byte(tok))
		if !ok || subtle.ConstantTimeCompare(sum[:], s.token[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoal-tracker"`)
			s.writeError(w, fmt.Errorf("%w: missing or wrong bearer token", ErrUnauthorized))
			return
		}
		next(w, r)
	})
}

func (s *Server) handleAnnounce(w http.ResponseWriter, r *http.Request) {
	var a wireAnnounce
	if err := decodeStrict(http.MaxBytesReader(w, r.Body, maxRequestBody), maxRequestBody, &a); err != nil {
		s.writeError(w, requestError(err))
		return
	}
	if err := a.validate(); err != nil {
		s.writeError(w, err)
		return
	}
	s.swarm.announce(&a, s.clock.Now())
	s.metrics.announces.Inc()
	s.log.Debug("announce", "peer", a.Peer.ID, "blobs", len(a.Blobs), "seeder", a.Peer.Seeder)
	s.writeJSON(w, http.StatusOK, announceResponse{IntervalMs: s.cfg.AnnounceInterval.Milliseconds()})
}

func (s *Server) handlePeers(w http.ResponseWriter, r *http.Request) {
	d := digest.Digest(r.PathValue("digest"))
	if err := validDigest(d); err != nil {
		s.writeError(w, err)
		return
	}
	self := r.URL.Query().Get("self")
	if self != "" && !validPeerID(self) {
		s.writeError(w, fmt.Errorf("%w: self %q", ErrInvalid, truncate(self)))
		return
	}
	peers := s.swarm.handout(d, self, s.cfg.MaxHandout, s.clock.Now())
	s.metrics.handouts.Inc()
	s.metrics.handoutPeers.Observe(float64(len(peers)))
	s.writeJSON(w, http.StatusOK, peersResponse{Peers: peers})
}

func (s *Server) handleMetaInfo(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	src := Source{Registry: q.Get("registry"), Repo: q.Get("repo"), Digest: digest.Digest(r.PathValue("digest"))}
	have := -1
	err := src.Validate()
	if v := q.Get("have"); err == nil && v != "" {
		have, err = strconv.Atoi(v)
		if err != nil || have < -1 || have > piece.MaxPieces {
			err = fmt.Errorf("%w: have %q", ErrInvalid, truncate(v))
		}
	}
	if err != nil {
		s.metrics.metaInfoCalls.WithLabelValues(resultInvalid).Inc()
		s.writeError(w, err)
		return
	}

	wait := time.NewTimer(s.cfg.MetaInfoWait)
	defer wait.Stop()
	gen := 0 // seedings start at 1
	for {
		v, err := s.watch(src, gen)
		gen = v.gen
		if err != nil {
			s.metrics.metaInfoCalls.WithLabelValues(resultOf(err)).Inc()
			s.writeError(w, err)
			return
		}
		if v.info != nil && (have < 0 || len(v.info.Pieces) > have || v.info.Complete()) {
			s.writeInfo(w, v.body)
			return
		}
		select {
		case <-v.changed:
			continue
		case <-wait.C:
			if v.info != nil {
				s.writeInfo(w, v.body)
				return
			}
			s.metrics.metaInfoCalls.WithLabelValues(resultPending).Inc()
			s.writeError(w, fmt.Errorf("%w: seeding %s has reported nothing yet", ErrPending, src.Digest))
		case <-s.closing:
			s.metrics.metaInfoCalls.WithLabelValues(resultUnavailable).Inc()
			s.writeError(w, fmt.Errorf("%w: tracker shutting down", ErrUnavailable))
		case <-r.Context().Done():
			s.metrics.metaInfoCalls.WithLabelValues(resultCanceled).Inc()
		}
		return
	}
}

// writeInfo sends an Info encoded once for all its askers.
func (s *Server) writeInfo(w http.ResponseWriter, body []byte) {
	s.metrics.metaInfoCalls.WithLabelValues(resultOK).Inc()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// requestError classifies a body decoding failure: too large or malformed is
// the client's fault; anything else (a broken connection) is not answerable.
func requestError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return fmt.Errorf("%w: body larger than %d bytes", ErrInvalid, tooBig.Limit)
	}
	if errors.Is(err, ErrInvalid) {
		return err
	}
	return fmt.Errorf("%w: reading body: %v", ErrInvalid, err)
}

func resultOf(err error) string {
	switch {
	case errors.Is(err, ErrNotFound):
		return resultNotFound
	case errors.Is(err, ErrInvalid):
		return resultInvalid
	default:
		return resultUnavailable
	}
}

func (s *Server) writeError(w http.ResponseWriter, err error) {
	code, status := statusOf(err)
	msg := err.Error()
	if len(msg) > maxMessageLen {
		msg = msg[:maxMessageLen]
	}
	s.writeJSON(w, status, errorBody{Code: code, Message: msg})
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
