package tracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// CreateSeedJob asks the tracker to seed req (POST /v1/seed, with a seed
// token) and returns the job it started, or the live one that asks the
// same. A cluster token is refused with ErrForbidden, a full queue with
// ErrBusy.
func (c *Client) CreateSeedJob(ctx context.Context, req SeedRequest) (*SeedJob, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("tracker: encode seed request: %w", err)
	}
	var job SeedJob
	if err := c.seedDo(ctx, http.MethodPost, "/v1/seed", body, http.StatusAccepted, &job); err != nil {
		return nil, err
	}
	return &job, job.validate()
}

// SeedJob reads a seed job (GET /v1/seed/{id}); ErrNotFound when the
// tracker does not know it (expired, or the tracker restarted).
func (c *Client) SeedJob(ctx context.Context, id string) (*SeedJob, error) {
	var job SeedJob
	if err := c.seedDo(ctx, http.MethodGet, "/v1/seed/"+url.PathEscape(id), nil, http.StatusOK, &job); err != nil {
		return nil, err
	}
	return &job, job.validate()
}

// seedDo is Client.do for the seed API, whose POST answers 202.
func (c *Client) seedDo(ctx context.Context, method, path string, body []byte, want int, out any) error {
	u := *c.base
	u.Path += path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("tracker: %w", err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("tracker: %s %s: %w", method, path, ctx.Err())
		case certificateError(err):
			return fmt.Errorf("%w: %s %s: %w", ErrCertificate, method, path, err)
		}
		return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return c.statusError(resp, method, path)
	}
	if err := decodeStrict(resp.Body, maxSeedJobBody, out); err != nil {
		if !errors.Is(err, ErrInvalid) {
			return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, method, path, err)
		}
		return fmt.Errorf("tracker: %s %s: %w", method, path, err)
	}
	return nil
}

// ForwardWebhook passes a registry webhook on to this tracker replica
// (POST route with the same body and content type), which seeds the part
// of it that shard says (ShardHeader) and passes it on no further.
func (c *Client) ForwardWebhook(ctx context.Context, route, contentType string, body []byte, shard SeedShard) error {
	u := *c.base
	u.Path += route
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("tracker: %w", err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(ShardHeader, shard.Encode())
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("tracker: POST %s: %w", route, ctx.Err())
		}
		return fmt.Errorf("%w: POST %s: %w", ErrUnavailable, route, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return c.statusError(resp, http.MethodPost, route)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxSeedJobBody))
	return nil
}
