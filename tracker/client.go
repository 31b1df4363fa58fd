package tracker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/opencontainers/go-digest"

	"github.com/shoal-dev/shoal/p2p/piece"
)

// Client talks to a tracker on behalf of an agent. Every answer is decoded
// strictly and bounded: a tracker answering garbage yields an error wrapping
// ErrInvalid. Transport failures wrap ErrUnavailable.
type Client struct {
	base    *url.URL
	auth    string
	http    *http.Client
	log     *slog.Logger
	preheat func([]PreheatItem) // WithPreheat
	key     crypto.PrivKey      // signs announces; nil sends them unsigned
	now     func() time.Time
	session *sessions // session keys of signed announces (session.go)
}

// NewClient returns a client of the tracker at baseURL (http or https).
func NewClient(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("tracker: base URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("tracker: base URL %q: want http(s)://host[:port][/path]", baseURL)
	}
	if err := ValidateToken(token); err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c := &Client{base: u, auth: "Bearer " + token, http: http.DefaultClient, log: slog.New(slog.DiscardHandler), now: time.Now, session: &sessions{}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Announce reports which blobs this agent downloads or holds, and returns
// the interval within which to announce again. With WithKey the announce is
// signed (see SignatureHeader), or, once the tracker handed this peer a
// session, carries its MAC (SessionHeader); a tracker refuses unsigned ones.
func (c *Client) Announce(ctx context.Context, a Announce) (time.Duration, error) {
	if err := a.Validate(); err != nil {
		return 0, err
	}
	body, err := json.Marshal(a.wire())
	if err != nil {
		return 0, fmt.Errorf("tracker: encode announce: %w", err)
	}
	if c.key != nil {
		// A session MAC in place of a signature (session.go); refused (the
		// tracker restarted), sign again.
		if sess, ok := c.session.get(a.Peer.ID, c.now()); ok {
			mac, err := MACAnnounce(sess, a.Peer.ID, body, c.now())
			if err == nil {
				d, err := c.announce(ctx, body, http.Header{SessionHeader: {mac}}, a.Peer.ID)
				if !errors.Is(err, ErrUnauthorized) {
					return d, err
				}
			}
			c.session.put(a.Peer.ID, nil)
		}
		sig, err := SignAnnounce(c.key, body, c.now())
		if err != nil {
			return 0, err
		}
		return c.announce(ctx, body, http.Header{SignatureHeader: {sig}, SessionHeader: {"new"}}, a.Peer.ID)
	}
	return c.announce(ctx, body, nil, a.Peer.ID)
}

// announce posts one announce body with hdr and keeps the session the
// answer carries.
func (c *Client) announce(ctx context.Context, body []byte, hdr http.Header, id string) (time.Duration, error) {
	var resp AnnounceResponse
	if err := c.doWith(ctx, http.MethodPost, "/v1/announce", nil, body, hdr, maxAnnounceResp, &resp); err != nil {
		return 0, err
	}
	if resp.IntervalMs <= 0 || resp.IntervalMs > time.Hour.Milliseconds() {
		return 0, fmt.Errorf("%w: announce interval %d ms", ErrInvalid, resp.IntervalMs)
	}
	if resp.Session != nil {
		c.session.put(id, resp.Session)
	}
	c.offerPreheat(resp.Preheat)
	return time.Duration(resp.IntervalMs) * time.Millisecond, nil
}

// Peers asks for peers holding dgst, never self (the asker's peer ID).
func (c *Client) Peers(ctx context.Context, dgst digest.Digest, self string) ([]Peer, error) {
	if err := ValidateDigest(dgst); err != nil {
		return nil, err
	}
	q := url.Values{PiecesParam: {strconv.Itoa(piece.Policy)}}
	if self != "" {
		if err := ValidatePeerID(self); err != nil {
			return nil, err
		}
		q.Set("self", self)
	}
	var resp PeersResponse
	if err := c.do(ctx, http.MethodGet, "/v1/blobs/"+dgst.String()+"/peers", q, nil, maxPeersBody, &resp); err != nil {
		return nil, err
	}
	for i := range resp.Peers {
		if err := resp.Peers[i].validate(); err != nil {
			return nil, fmt.Errorf("tracker: peers of %s: %w", dgst, err)
		}
	}
	return resp.Peers, nil
}

// MetaInfo returns the metainfo of src known now. With have ≥ 0 the tracker
// holds the request until more than have pieces are known or the Info is
// complete, or until its MetaInfoWait passes (then answers what is known).
// While the tracker's seeder has reported nothing yet, it returns an error
// wrapping ErrPending: ask again. A tracker of another piece policy than
// piece.Policy answers ErrPolicy (as Peers does).
func (c *Client) MetaInfo(ctx context.Context, src Source, have int) (*piece.Info, error) {
	return c.metaInfo(ctx, src, have, nil)
}

// MetaInfoAfter is MetaInfo with have the pieces of known, the metainfo of
// src the caller holds: only the hashes after those travel (FromParam),
// and it returns known grown by them.
func (c *Client) MetaInfoAfter(ctx context.Context, src Source, known *piece.Info) (*piece.Info, error) {
	return c.metaInfo(ctx, src, len(known.Pieces), known)
}

func (c *Client) metaInfo(ctx context.Context, src Source, have int, known *piece.Info) (*piece.Info, error) {
	if err := src.Validate(); err != nil {
		return nil, err
	}
	q := url.Values{"repo": {src.Repo}, PiecesParam: {strconv.Itoa(piece.Policy)}}
	if src.Registry != "" {
		q.Set("registry", src.Registry)
	}
	if have >= 0 {
		q.Set("have", strconv.Itoa(min(have, piece.MaxPieces)))
	}
	if known != nil && len(known.Pieces) > 0 {
		q.Set(FromParam, strconv.Itoa(len(known.Pieces)))
	}
	var d MetaInfoDelta
	if err := c.do(ctx, http.MethodGet, "/v1/blobs/"+src.Digest.String()+"/metainfo", q, nil, maxInfoBody, &d); err != nil {
		return nil, err
	}
	info := d.Info
	if d.From != 0 {
		// Only the hashes after known's: they must follow on from them.
		if known == nil || d.From != len(known.Pieces) || d.Digest != known.Digest || d.Size != known.Size || d.PieceSize != known.PieceSize {
			return nil, fmt.Errorf("%w: metainfo of %s from piece %d, which was not asked", ErrInvalid, src.Digest, d.From)
		}
		info.Pieces = append(slices.Clip(known.Pieces), d.Pieces...)
	}
	if err := info.Validate(); err != nil {
		return nil, fmt.Errorf("%w: metainfo of %s: %w", ErrInvalid, src.Digest, err)
	}
	if info.Digest != src.Digest {
		return nil, fmt.Errorf("%w: asked metainfo of %s, got %s", ErrInvalid, src.Digest, info.Digest)
	}
	return &info, nil
}

// Listed reports whether the tracker lists peer ID id now, as GET
// /v1/peers/{id} answers: the question behind peer admission. A tracker
// that cannot tell yet (it restarted less than a peer TTL ago) answers
// ErrUnavailable, as does one that cannot be reached.
func (c *Client) Listed(ctx context.Context, id string) (bool, error) {
	if err := ValidatePeerID(id); err != nil {
		return false, err
	}
	var resp ListedResponse
	if err := c.do(ctx, http.MethodGet, "/v1/peers/"+id, nil, nil, maxListedResp, &resp); err != nil {
		return false, err
	}
	return resp.Listed, nil
}

// Ping checks that the tracker answers its health probe, over TLS that
// verifies: a certificate that does not wraps ErrCertificate.
func (c *Client) Ping(ctx context.Context) error {
	u := *c.base
	u.Path += "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("tracker: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if certificateError(err) {
			return fmt.Errorf("%w: %w", ErrCertificate, err)
		}
		return fmt.Errorf("%w: ping: %w", ErrUnavailable, unreachable{err})
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: ping: HTTP %d", ErrUnavailable, resp.StatusCode)
	}
	return nil
}

// unreachable marks a request that got no answer from the tracker (it could
// not be reached, or its answer broke off), as opposed to an answer of 503:
// a replica set (replica.go) fails over on the former only.
type unreachable struct{ error }

func (u unreachable) Unwrap() error { return u.error }

// Unreachable reports whether err is a request that got no answer from the
// tracker at all.
func Unreachable(err error) bool {
	var u unreachable
	return errors.As(err, &u)
}

// certificateError tells TLS verification failures from other transport
// errors.
func certificateError(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid)
}

// do sends one request and decodes a 200 answer into out; any other answer
// becomes the matching sentinel error with the tracker's message.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, limit int64, out any) error {
	return c.doWith(ctx, method, path, q, body, nil, limit, out)
}

// doWith is do with extra request headers hdr.
func (c *Client) doWith(ctx context.Context, method, path string, q url.Values, body []byte, hdr http.Header, limit int64, out any) error {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("tracker: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("tracker: %s %s: %w", method, path, ctx.Err())
		}
		if certificateError(err) {
			return fmt.Errorf("%w: %s %s: %w", ErrCertificate, method, path, err)
		}
		return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, method, path, unreachable{err})
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.statusError(resp, method, path)
	}
	if want := q.Get(PiecesParam); want != "" && resp.Header.Get(PiecesHeader) != want {
		// A tracker older than piece policy 2 ignores the parameter.
		return fmt.Errorf("%w: %s %s: the tracker does not cut blobs by piece policy %s", ErrPolicy, method, path, want)
	}
	if err := decodeStrict(resp.Body, limit, out); err != nil {
		if !errors.Is(err, ErrInvalid) {
			// The body broke off: a transport failure, not garbage.
			return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, method, path, unreachable{err})
		}
		return fmt.Errorf("tracker: %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) statusError(resp *http.Response, method, path string) error {
	sentinel := errorOf(resp.StatusCode)
	var e ErrorBody
	if err := decodeStrict(resp.Body, maxErrorBody, &e); err != nil {
		c.log.Debug("tracker error without a JSON body", "status", resp.StatusCode, "error", err)
		return fmt.Errorf("%w: %s %s: HTTP %d", sentinel, method, path, resp.StatusCode)
	}
	return fmt.Errorf("%w: %s %s: HTTP %d: %s", sentinel, method, path, resp.StatusCode, e.Message[:min(len(e.Message), MaxMessageLen)])
}
