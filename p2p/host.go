package p2p

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/filecoin-project/go-clock"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	tls "github.com/libp2p/go-libp2p/p2p/security/tls"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	connrate "github.com/libp2p/go-libp2p/x/rate"
	"github.com/multiformats/go-multiaddr"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/shoal-dev/shoal/p2p/piece"
)

// Source is what the piece server serves from; the agent implements it over
// its store and its download sessions. Calls, and reads from the pieces it
// opens, must end promptly once ctx ends: Close waits for them.
type Source interface {
	// Watch returns the verified pieces of dgst now and a channel that
	// receives each piece verified later. The channel is closed when the
	// blob is complete or ctx ends; sends must not block past ctx's end.
	// ErrUnknownBlob if the node has nothing of dgst. p is the subscriber:
	// the channel may leave out pieces p has announced to this node, since
	// p will not ask for them.
	Watch(ctx context.Context, p peer.ID, dgst digest.Digest) (*piece.Bitfield, <-chan int, error)
	// Piece opens verified piece n of dgst and returns its length.
	// ErrNoPiece if it is not held (yet), ErrUnknownBlob if nothing of
	// dgst is, ErrRationed if the source rations it (a seeder asking peers
	// to get it from each other).
	Piece(ctx context.Context, dgst digest.Digest, n int) (io.ReadCloser, int64, error)
}

// Host is a libp2p host speaking Shoal's piece, have and meta protocols.
type Host struct {
	cfg      Config
	host     host.Host
	src      Source // set once by Serve, before any handler runs
	log      *slog.Logger
	clock    clock.Clock // the upload queue's wait
	m        *metrics
	uploads  chan struct{} // one token per upload under way
	queued   atomic.Int64  // requests waiting for an upload slot
	upRate   *rate.Limiter // nil: unlimited
	downRate *rate.Limiter
	bufs     sync.Pool // *[]byte of chunk bytes, for sources that are not io.WriterTo
	streams  streamPool

	meta      MetaSource    // src, if it answers meta requests; set with src
	metaSlots chan struct{} // one token per meta request being answered

	ctx    context.Context // ends when Close starts
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	wg      sync.WaitGroup // handlers and watch readers under way
	serving map[peer.ID]int
}

// Option configures New.
type Option func(*options)

type options struct {
	log   *slog.Logger
	reg   prometheus.Registerer
	clock clock.Clock
	key   crypto.PrivKey
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer sets where metrics are registered; the default is a
// private registry nobody reads.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.reg = r } }

// WithClock sets the clock of the upload queue's wait (default: the system
// clock). Stream deadlines are the network's and run on real time.
func WithClock(c clock.Clock) Option { return func(o *options) { o.clock = c } }

// WithIdentity sets the host's key, overriding Config.KeyFile: the caller
// loaded it (LoadIdentity) to sign its tracker announces with it too.
func WithIdentity(k crypto.PrivKey) Option { return func(o *options) { o.key = k } }

// Protocol IDs.
const (
	PieceProtocol protocol.ID = "/shoal/piece/2.0.0"
	HaveProtocol  protocol.ID = "/shoal/have/2.0.0"
	MetaProtocol  protocol.ID = "/shoal/meta/2.0.0"
)

// servingTag protects the connection of a peer we are uploading to.
const servingTag = "shoal-serving"

// New starts a host listening on cfg.ListenAddrs. It can dial and fetch at
// once; it answers piece and have requests only once Serve gave it a Source.
// That two-phase start lets the swarm, which fetches through the host, be
// the Source the host serves.
func New(cfg Config, opts ...Option) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry(), clock: clock.New()}
	for _, opt := range opts {
		opt(&o)
	}
	key := o.key
	if key == nil {
		var err error
		if key, err = loadIdentity(cfg.KeyFile); err != nil {
			return nil, err
		}
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(resourceLimits(cfg)), resourceOptions(cfg)...)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(max(1, cfg.MaxPeers*3/4), cfg.MaxPeers, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}
	lopts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.DisableRelay(),
		libp2p.Ping(false),
		libp2p.DisableIdentifyAddressDiscovery(),
		// libp2p's metrics are package-level collectors shared by every
		// host in the process; two agents in one test must not mix.
		libp2p.DisableMetrics(),
		libp2p.UserAgent("shoal"),
	}
	switch cfg.Security {
	case SecurityTLS:
		lopts = append(lopts, libp2p.Security(tls.ID, tls.New))
	case SecurityNoise:
		lopts = append(lopts, libp2p.Security(noise.ID, noise.New))
	}
	if cfg.PSK != nil {
		lopts = append(lopts, libp2p.PrivateNetwork(pnet.PSK(cfg.PSK)))
	}
	if cfg.Admit != nil {
		lopts = append(lopts, libp2p.ConnectionGater(gater{admit: cfg.Admit}))
	}
	lh, err := libp2p.New(lopts...)
	if err != nil {
		cm.Close()
		rm.Close()
		return nil, fmt.Errorf("p2p: starting libp2p: %w", err)
	}
	m, err := newMetrics(o.reg, func() float64 { return float64(len(lh.Network().Peers())) })
	if err != nil {
		lh.Close()
		return nil, fmt.Errorf("p2p: registering metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Host{
		cfg:      cfg,
		host:     lh,
		log:      o.log,
		clock:    o.clock,
		m:        m,
		uploads:  make(chan struct{}, cfg.MaxUploads),
		upRate:   limiter(cfg.UploadRate),
		downRate: limiter(cfg.DownloadRate),
		ctx:      ctx,
		cancel:   cancel,
		serving:  make(map[peer.ID]int),
	}
	h.bufs.New = func() any { b := make([]byte, chunk); return &b }
	h.streams.idle = make(map[peer.ID][]*pieceStream)
	lh.Network().Notify(&network.NotifyBundle{
		DisconnectedF: func(n network.Network, c network.Conn) {
			if p := c.RemotePeer(); n.Connectedness(p) != network.Connected {
				h.streams.drop(p)
			}
		},
	})
	h.log.Info("p2p host started", "peer", lh.ID(), "addrs", lh.Addrs())
	return h, nil
}

// Serve answers piece and have requests from src from now on, and meta
// requests if src is also a MetaSource. Call it once; until then peers
// asking for pieces are told the protocol is not spoken.
func (h *Host) Serve(src Source) error {
	if src == nil {
		return errors.New("p2p: nil Source")
	}
	if h.src != nil {
		return errors.New("p2p: Serve called twice")
	}
	h.src = src
	h.host.SetStreamHandler(PieceProtocol, h.admitted(h.servePiece))
	h.host.SetStreamHandler(HaveProtocol, h.admitted(h.serveHave))
	if ms, ok := src.(MetaSource); ok {
		h.meta, h.metaSlots = ms, make(chan struct{}, maxMetaAnswers)
		h.host.SetStreamHandler(MetaProtocol, h.admitted(h.serveMeta))
	}
	return nil
}

// admitted serves a stream only if Config.Admit admits its peer now: a
// connection admitted once is asked again on every stream, and a piece
// stream on every request (servePiece), so a peer the tracker stopped
// listing is refused from then on.
func (h *Host) admitted(serve network.StreamHandler) network.StreamHandler {
	if h.cfg.Admit == nil {
		return serve
	}
	return func(s network.Stream) {
		if !h.admits(s) {
			s.Reset()
			return
		}
		serve(s)
	}
}

// admits asks Config.Admit about the peer of s (nil admits everyone).
func (h *Host) admits(s network.Stream) bool {
	return h.cfg.Admit == nil || h.cfg.Admit(s.Conn().RemotePeer())
}

func limiter(bytesPerSecond int64) *rate.Limiter {
	if bytesPerSecond == 0 {
		return nil
	}
	// The burst must hold one chunk, the unit every transfer waits for.
	return rate.NewLimiter(rate.Limit(bytesPerSecond), chunk)
}

// resourceLimits raises libp2p's defaults to what a swarm of MaxPeers agents
// needs. The defaults allow 8 connections per peer, a few dozen streams per
// protocol and per peer, and little memory; yamux charges every receive
// window to its connection, its peer and the system, and only grows a window
// (256 KiB up to 16 MiB) while the charge stays within half the limit, so
// memory caps are what let one stream run at full speed.
func resourceLimits(cfg Config) rcmgr.ConcreteLimitConfig {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	defaults := scaling.AutoScale()

	const window = 16 << 20
	peers := rcmgr.LimitVal(cfg.MaxPeers)
	// 16 transfers with full windows per peer, doubled for the half rule.
	peerMemory := rcmgr.LimitVal64(2 * 16 * window)
	streams := rcmgr.ResourceLimits{
		StreamsInbound:  1024,
		StreamsOutbound: 1024,
		Streams:         2048,
		Memory:          peerMemory,
	}
	ours := rcmgr.ResourceLimits{
		StreamsInbound:  rcmgr.Unlimited,
		StreamsOutbound: rcmgr.Unlimited,
		Streams:         rcmgr.Unlimited,
		Memory:          rcmgr.Unlimited64,
	}
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			ConnsInbound:    2 * peers,
			ConnsOutbound:   2 * peers,
			Conns:           4 * peers,
			StreamsInbound:  256 * peers,
			StreamsOutbound: 256 * peers,
			Streams:         512 * peers,
			// An accounting cap on receive windows, not an allocation:
			// bytes are only buffered while a reader lags.
			Memory: 4 << 30,
		},
		Transient: rcmgr.ResourceLimits{
			ConnsInbound:    peers,
			ConnsOutbound:   peers,
			Conns:           2 * peers,
			StreamsInbound:  4 * peers,
			StreamsOutbound: 4 * peers,
			Streams:         8 * peers,
		},
		PeerDefault: streams,
		Conn:        rcmgr.ResourceLimits{Memory: peerMemory},
		Protocol: map[protocol.ID]rcmgr.ResourceLimits{
			PieceProtocol: ours,
			HaveProtocol:  ours,
			MetaProtocol: {
				StreamsInbound: 4 * peers, StreamsOutbound: 4 * peers, Streams: 8 * peers,
				Memory: rcmgr.Unlimited64,
			},
		},
		ProtocolPeer: map[protocol.ID]rcmgr.ResourceLimits{
			PieceProtocol: streams,
			HaveProtocol:  streams,
			// A few small exchanges per download at a time.
			MetaProtocol: {StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 32 << 20},
		},
	}
	return partial.Build(defaults)
}

// resourceOptions relaxes libp2p's per-address caps: 8 connections per IPv4
// address (per /56 in IPv6), opened at 0.2/s after a burst of 16. They defend
// a public node against one machine posing as many peers; our peers are
// vetted by Admit and the PSK instead, and several agents may share an
// address (one machine, a NAT). Loopback stays unlimited as in libp2p.
func resourceOptions(cfg Config) []rcmgr.Option {
	conns := 2 * cfg.MaxPeers
	rateLimit := connrate.Limit{RPS: 10, Burst: conns}
	return []rcmgr.Option{
		// Its metrics are process-wide collectors; ours suffice.
		rcmgr.WithMetricsDisabled(),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: conns}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: conns}}),
		rcmgr.WithConnRateLimiters(&connrate.Limiter{
			NetworkPrefixLimits: []connrate.PrefixLimit{
				{Prefix: netip.MustParsePrefix("127.0.0.0/8")},
				{Prefix: netip.MustParsePrefix("::1/128")},
			},
			SubnetRateLimiter: connrate.SubnetLimiter{
				IPv4SubnetLimits: []connrate.SubnetLimit{{PrefixLength: 32, Limit: rateLimit}},
				IPv6SubnetLimits: []connrate.SubnetLimit{{PrefixLength: 56, Limit: rateLimit}},
				GracePeriod:      time.Minute,
			},
		}),
	}
}

// ID is the host's peer ID.
func (h *Host) ID() peer.ID { return h.host.ID() }

// AddrInfo is the host's ID and listen addresses, as peers should dial it.
func (h *Host) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: h.host.ID(), Addrs: h.host.Addrs()}
}

// Addrs are the host's full addresses, each ending in /p2p/<id>.
func (h *Host) Addrs() []multiaddr.Multiaddr {
	ai := h.AddrInfo()
	addrs, err := peer.AddrInfoToP2pAddrs(&ai)
	if err != nil {
		return nil // unreachable: the ID is our own, hence valid
	}
	return addrs
}

// Connect connects to a peer, remembering its addresses for later streams.
func (h *Host) Connect(ctx context.Context, ai peer.AddrInfo) error {
	if !h.enter() {
		return ErrClosed
	}
	defer h.leave()
	if err := h.host.Connect(ctx, ai); err != nil {
		return fmt.Errorf("p2p: connecting to %s: %w", ai.ID, err)
	}
	return nil
}

// Protect keeps the connection manager from trimming p's connections while
// tag is set, e.g. while transfers with p are under way.
func (h *Host) Protect(p peer.ID, tag string) { h.host.ConnManager().Protect(p, tag) }

// Unprotect removes tag and reports whether p is still protected by others.
func (h *Host) Unprotect(p peer.ID, tag string) bool {
	return h.host.ConnManager().Unprotect(p, tag)
}

// Close stops serving, ends subscriptions, closes every connection and waits
// for the host's goroutines.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.streams.close()
	err := h.host.Close()
	h.wg.Wait()
	return err
}

// enter registers a goroutine doing work for the host; false once closed.
func (h *Host) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	return true
}

func (h *Host) leave() { h.wg.Done() }

// protectServing and unprotectServing count uploads per peer, so that its
// connection stays protected until the last one ends.
func (h *Host) protectServing(p peer.ID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.serving[p]++
	if h.serving[p] == 1 {
		h.host.ConnManager().Protect(p, servingTag)
	}
}

func (h *Host) unprotectServing(p peer.ID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.serving[p]--
	if h.serving[p] == 0 {
		delete(h.serving, p)
		h.host.ConnManager().Unprotect(p, servingTag)
	}
}
