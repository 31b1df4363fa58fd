package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p"
	"github.com/shoal-dev/shoal/p2p/piece"
	"github.com/shoal-dev/shoal/tracker"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("liar", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	var (
		trackerURL = flag.String("tracker", "", "tracker URL")
		tokenFile  = flag.String("token-file", "", "file holding the cluster token")
		listen     = flag.String("listen", "/ip4/127.0.0.1/tcp/4002", "libp2p listen multiaddr")
		idFile     = flag.String("id-file", "", "file to write the peer ID to once announced")
	)
	flag.Parse()
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		return err
	}
	src := &garbage{blobs: make(map[digest.Digest]int64)}
	var states []tracker.BlobState
	for _, arg := range flag.Args() {
		d, size, err := parseBlob(arg)
		if err != nil {
			return err
		}
		src.blobs[d] = size
		states = append(states, tracker.BlobState{Digest: d, Have: piece.Count(size, piece.SizeFor(size)), Complete: true})
	}
	if len(states) == 0 {
		return errors.New("no blobs to lie about")
	}
	// A liar holds the token and its own key: it announces, signed, and is
	// listed, so admission lets it in; only the piece CIDs catch it.
	key, err := p2p.LoadIdentity("")
	if err != nil {
		return err
	}
	tc, err := tracker.NewClient(*trackerURL, strings.TrimSpace(string(tok)), tracker.WithKey(key))
	if err != nil {
		return err
	}
	cfg := p2p.DefaultConfig()
	cfg.ListenAddrs = []string{*listen}
	h, err := p2p.New(cfg, p2p.WithIdentity(key))
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.Serve(src); err != nil {
		return err
	}
	self := tracker.Peer{ID: h.ID().String()}
	for _, a := range h.Addrs() {
		self.Addrs = append(self.Addrs, a.String())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log.Info("liar up", "peer", self.ID, "addrs", self.Addrs, "blobs", len(states))
	wroteID := false
	var reported int64
	for {
		interval, err := tc.Announce(ctx, tracker.Announce{Peer: self, Blobs: states})
		if err != nil {
			log.Warn("announce failed", "err", err)
			interval = time.Second
		} else if !wroteID && *idFile != "" {
			if err := os.WriteFile(*idFile, []byte(self.ID+"\n"), 0o644); err != nil {
				return err
			}
			wroteID = true
		}
		if n := src.asked.Load(); n != reported {
			reported = n
			log.Info("corrupt pieces", "pieces", n, "bytes", src.sent.Load())
		}
		select {
		case <-ctx.Done():
			log.Info("liar stopping", "pieces", src.asked.Load(), "bytes", src.sent.Load())
			return nil
		case <-time.After(min(interval/2, time.Second)):
		}
	}
}

// parseBlob reads sha256:<hex>:<size>.
func parseBlob(s string) (digest.Digest, int64, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("blob %q: want sha256:<hex>:<size>", s)
	}
	d, err := digest.Parse(s[:i])
	if err != nil {
		return "", 0, fmt.Errorf("blob %q: %w", s, err)
	}
	size, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil || size <= 0 {
		return "", 0, fmt.Errorf("blob %q: bad size", s)
	}
	return d, size, nil
}

// garbage is a p2p.Source that holds every piece of its blobs and serves
// each as random bytes.
type garbage struct {
	blobs map[digest.Digest]int64 // read-only after start
	asked atomic.Int64            // pieces opened
	sent  atomic.Int64            // bytes read from them, about what went out
}

var _ p2p.Source = (*garbage)(nil)

func (g *garbage) Watch(_ context.Context, _ peer.ID, d digest.Digest) (*piece.Bitfield, <-chan int, error) {
	size, ok := g.blobs[d]
	if !ok {
		return nil, nil, p2p.ErrUnknownBlob
	}
	bf := piece.NewBitfield(piece.Count(size, piece.SizeFor(size)))
	for i := range bf.Len() {
		bf.Set(i)
	}
	ch := make(chan int)
	close(ch) // complete: nothing more will come
	return bf, ch, nil
}

func (g *garbage) Piece(_ context.Context, d digest.Digest, n int) (io.ReadCloser, int64, error) {
	size, ok := g.blobs[d]
	if !ok {
		return nil, 0, p2p.ErrUnknownBlob
	}
	ps := piece.SizeFor(size)
	if n < 0 || n >= piece.Count(size, ps) {
		return nil, 0, p2p.ErrNoPiece
	}
	length := min(ps, size-int64(n)*ps)
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], uint64(g.asked.Add(1)))
	return io.NopCloser(&counted{r: io.LimitReader(rand.NewChaCha8(seed), length), n: &g.sent}), length, nil
}

// counted adds what is read through it to n.
type counted struct {
	r io.Reader
	n *atomic.Int64
}

func (c *counted) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}
