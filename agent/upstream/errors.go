package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Every error of a fetch wraps exactly one of these (or is the caller's own
// context error): what the upstream answered, or why no answer can be used.
// The agent maps them to the OCI errors it answers runtimes with.
var (
	ErrBlobNotFound       = errors.New("blob not found upstream")
	ErrManifestNotFound   = errors.New("manifest not found upstream")
	ErrRepositoryNotFound = errors.New("repository not found upstream")
	// ErrUnauthorized: the upstream wants credentials, or other ones.
	ErrUnauthorized = errors.New("upstream requires authentication")
	// ErrDenied: the upstream refuses, or this client may not ask it (a
	// registry that is not configured, plain HTTP without consent).
	ErrDenied          = errors.New("upstream denies access")
	ErrTooManyRequests = errors.New("upstream rate limit reached")
	// ErrUnavailable: the upstream is unreachable, silent, answers 5xx or
	// something unusable. A runtime told so falls back to the upstream.
	ErrUnavailable         = errors.New("upstream unavailable")
	ErrRangeNotSatisfiable = errors.New("range not satisfiable")
	// ErrInvalidName: a repository name or registry host outside the
	// grammar, or one the upstream calls invalid.
	ErrInvalidName       = errors.New("invalid name")
	ErrInvalidDigest     = errors.New("invalid digest")
	ErrInvalidManifest   = errors.New("invalid manifest")
	ErrInvalidPagination = errors.New("invalid number of tags")
	ErrUnsupported       = errors.New("unsupported by upstream")
	// ErrUnexpected: an answer that fits none of the above.
	ErrUnexpected = errors.New("unexpected answer from upstream")
	// ErrInternal: the client failed before it could ask (credentials
	// unreadable, request not buildable); the upstream said nothing.
	ErrInternal = errors.New("upstream client failure")
)

// ErrDigestMismatch marks content from the upstream that does not hash to
// the digest it was asked or announced under. It wraps ErrUnavailable: the
// upstream is misbehaving, and a runtime told "unavailable" falls back to
// asking it directly.
var ErrDigestMismatch = fmt.Errorf("%w: content does not match its digest", ErrUnavailable)

// kinds lists the sentinels above; an error wrapping one is classified.
var kinds = []error{
	ErrBlobNotFound, ErrManifestNotFound, ErrRepositoryNotFound, ErrUnauthorized, ErrDenied,
	ErrTooManyRequests, ErrUnavailable, ErrRangeNotSatisfiable, ErrInvalidName, ErrInvalidDigest,
	ErrInvalidManifest, ErrInvalidPagination, ErrUnsupported, ErrUnexpected, ErrInternal,
}

func classified(err error) bool {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// mapStatus turns an upstream answer that is not a success into one of the
// sentinels. kind says what was asked (a metric kind), so a plain 404
// becomes ErrBlobNotFound or ErrManifestNotFound; codes are the OCI error
// codes of the upstream's body, if it sent any.
func mapStatus(kind string, status int, codes []string) error {
	switch {
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status == http.StatusForbidden:
		return ErrDenied
	case status == http.StatusTooManyRequests:
		return ErrTooManyRequests
	case status >= 500:
		return ErrUnavailable
	case status == http.StatusRequestedRangeNotSatisfiable:
		return ErrRangeNotSatisfiable
	}
	for _, code := range codes {
		switch code {
		case "NAME_UNKNOWN":
			return ErrRepositoryNotFound
		case "NAME_INVALID":
			return ErrInvalidName
		case "DIGEST_INVALID":
			return ErrInvalidDigest
		case "MANIFEST_INVALID":
			return ErrInvalidManifest
		case "UNSUPPORTED":
			return ErrUnsupported
		case "BLOB_UNKNOWN":
			return ErrBlobNotFound
		case "MANIFEST_UNKNOWN":
			return ErrManifestNotFound
		}
	}
	if status == http.StatusNotFound {
		switch kind {
		case kindBlob, kindHeadBlob:
			return ErrBlobNotFound
		case kindManifest, kindHeadManifest:
			return ErrManifestNotFound
		default:
			return ErrRepositoryNotFound
		}
	}
	return ErrUnexpected
}

// mapError wraps err, from an exchange with the upstream, with the sentinel
// that fits it. The caller's own cancellation stays what it is: it says
// nothing about the upstream.
func mapError(ctx context.Context, kind string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if classified(err) {
		return err // classified where it was made
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		// An error from ggcr's ping or token exchange: the registry (or its
		// token service) answered, just not with a success.
		codes := make([]string, 0, len(terr.Errors))
		for _, d := range terr.Errors {
			codes = append(codes, string(d.Code))
		}
		return fmt.Errorf("%w: %w", mapStatus(kind, terr.StatusCode, codes), err)
	}
	// Connection refused, reset, DNS failure, TLS failure, time-out: the
	// upstream cannot be reached now, which is what ErrUnavailable says.
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
