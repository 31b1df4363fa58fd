package agent

import (
	"errors"
	"fmt"

	"github.com/shoal-dev/shoal/agent/store"
	"github.com/shoal-dev/shoal/agent/upstream"
	"github.com/shoal-dev/shoal/registryshim"
)

// ociErrors is the one table from the upstream client's errors to the OCI
// errors the shim answers runtimes with: the upstream's verdict is passed on
// as is (404, 401, 429), and anything that makes its answer unusable is
// UNAVAILABLE, on which a runtime falls back to the upstream itself.
var ociErrors = []struct{ up, oci error }{
	{upstream.ErrBlobNotFound, registryshim.ErrBlobUnknown},
	{upstream.ErrManifestNotFound, registryshim.ErrManifestUnknown},
	{upstream.ErrRepositoryNotFound, registryshim.ErrNameUnknown},
	{upstream.ErrUnauthorized, registryshim.ErrUnauthorized},
	{upstream.ErrDenied, registryshim.ErrDenied},
	{upstream.ErrTooManyRequests, registryshim.ErrTooManyRequests},
	{upstream.ErrUnavailable, registryshim.ErrUnavailable}, // and ErrDigestMismatch, which wraps it
	{upstream.ErrRangeNotSatisfiable, registryshim.ErrRangeInvalid},
	{upstream.ErrInvalidName, registryshim.ErrNameInvalid},
	{upstream.ErrInvalidDigest, registryshim.ErrDigestInvalid},
	{upstream.ErrInvalidManifest, registryshim.ErrManifestInvalid},
	{upstream.ErrInvalidPagination, registryshim.ErrPaginationNumberInvalid},
	{upstream.ErrUnsupported, registryshim.ErrUnsupported},
	{upstream.ErrUnexpected, registryshim.ErrInternal},
	{upstream.ErrInternal, registryshim.ErrInternal},
}

// ociError wraps err, from the upstream client, with the OCI error its
// sentinel maps to; err stays in the chain, so the agent's own checks of
// upstream sentinels still hold. An error wrapping none (the caller's own
// cancellation) is returned as is, and nil stays nil.
func ociError(err error) error {
	if err == nil {
		return nil
	}
	for _, m := range ociErrors {
		if errors.Is(err, m.up) {
			return fmt.Errorf("%w: %w", m.oci, err)
		}
	}
	return err
}

// storeError maps store failures onto the OCI table: the client can do
// nothing about them but fall back to the upstream.
func storeError(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %w", registryshim.ErrBlobUnknown, err)
	}
	return fmt.Errorf("%w: %w", registryshim.ErrUnavailable, err)
}
