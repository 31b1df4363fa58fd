package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/shoal-dev/shoal/registryshim"
)

// ErrDigestMismatch marks content from the upstream that does not hash to
// the digest it was asked or announced under. It comes wrapped together
// with registryshim.ErrUnavailable: the upstream is misbehaving, and a
// runtime told "unavailable" falls back to asking it directly.
var ErrDigestMismatch = errors.New("upstream content does not match its digest")

// mapStatus turns an upstream answer that is not a success into one of the
// project's OCI sentinels. kind says what was asked (a metric kind), so a
// plain 404 becomes BLOB_UNKNOWN or MANIFEST_UNKNOWN; codes are the OCI
// error codes of the upstream's body, if it sent any.
func mapStatus(kind string, status int, codes []string) error {
	switch {
	case status == http.StatusUnauthorized:
		return registryshim.ErrUnauthorized
	case status == http.StatusForbidden:
		return registryshim.ErrDenied
	case status == http.StatusTooManyRequests:
		return registryshim.ErrTooManyRequests
	case status >= 500:
		return registryshim.ErrUnavailable
	case status == http.StatusRequestedRangeNotSatisfiable:
		return registryshim.ErrRangeInvalid
	}
	for _, code := range codes {
		switch code {
		case "NAME_UNKNOWN":
			return registryshim.ErrNameUnknown
		case "NAME_INVALID":
			return registryshim.ErrNameInvalid
		case "DIGEST_INVALID":
			return registryshim.ErrDigestInvalid
		case "MANIFEST_INVALID":
			return registryshim.ErrManifestInvalid
		case "UNSUPPORTED":
			return registryshim.ErrUnsupported
		case "BLOB_UNKNOWN":
			return registryshim.ErrBlobUnknown
		case "MANIFEST_UNKNOWN":
			return registryshim.ErrManifestUnknown
		}
	}
	if status == http.StatusNotFound {
		switch kind {
		case kindBlob, kindHeadBlob:
			return registryshim.ErrBlobUnknown
		case kindManifest, kindHeadManifest:
			return registryshim.ErrManifestUnknown
		default:
			return registryshim.ErrNameUnknown
		}
	}
	return registryshim.ErrInternal
}

// mapError wraps err, from an exchange with the upstream, with the sentinel
// that fits it. The caller's own cancellation stays what it is: it says
// nothing about the upstream.
func mapError(ctx context.Context, kind string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	var serr *registryshim.Error
	if errors.As(err, &serr) {
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
	// upstream cannot be reached now, which is what UNAVAILABLE says.
	return fmt.Errorf("%w: %w", registryshim.ErrUnavailable, err)
}
