package tracker

import (
	"fmt"

	"github.com/opencontainers/go-digest"
)

// PreheatItem is a blob the tracker asks an agent to fetch ahead of a
// rollout, in the answer to its announce: the agent fetches it through the
// swarm as a pull would, from Registry/Repo.
type PreheatItem struct {
	Digest   digest.Digest `json:"d"`
	Size     int64         `json:"s"`
	Registry string        `json:"r,omitempty"` // "" is the default upstream
	Repo     string        `json:"n"`
}

// MaxPreheatItems bounds the items of one announce answer; the rest come
// with later announces.
const MaxPreheatItems = 16

func (p PreheatItem) validate() error {
	src := Source{Registry: p.Registry, Repo: p.Repo, Digest: p.Digest}
	if err := src.Validate(); err != nil {
		return err
	}
	if p.Size < 0 {
		return fmt.Errorf("%w: preheat %s: size %d", ErrInvalid, p.Digest, p.Size)
	}
	return nil
}

// WithPreheat hands the preheat work in the tracker's announce answers to
// fn (an agent's preheater); invalid items are logged and dropped.
func WithPreheat(fn func([]PreheatItem)) Option {
	return func(c *Client) { c.preheat = fn }
}

// offerPreheat passes the valid items of an announce answer to the hook.
func (c *Client) offerPreheat(items []PreheatItem) {
	if c.preheat == nil || len(items) == 0 {
		return
	}
	if len(items) > MaxPreheatItems {
		items = items[:MaxPreheatItems]
	}
	ok := make([]PreheatItem, 0, len(items))
	for _, p := range items {
		if err := p.validate(); err != nil {
			c.log.Warn("tracker sent an invalid preheat item", "error", err)
			continue
		}
		ok = append(ok, p)
	}
	c.preheat(ok)
}

// Preheating returns a copy of c whose announce answers' preheat work goes
// to fn, as WithPreheat does.
func (c *Client) Preheating(fn func([]PreheatItem)) *Client {
	cc := *c
	cc.preheat = fn
	return &cc
}
