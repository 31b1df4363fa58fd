package unpack

import "errors"

// Sentinel errors; the errors returned by this package wrap them with the
// layer and entry they concern. Check with errors.Is.
var (
	// ErrUnsafeEntry: a tar entry would write outside the target (absolute
	// name, ".." component, a parent that is a symlink, a hard link leaving
	// the tree).
	ErrUnsafeEntry = errors.New("unsafe tar entry")
	// ErrTooLarge: the unpacked size exceeds the configured maximum.
	ErrTooLarge = errors.New("unpacked size exceeds limit")
	// ErrDigestMismatch: the compressed layer does not match its digest.
	ErrDigestMismatch = errors.New("layer digest mismatch")
	// ErrDiffIDMismatch: the uncompressed layer does not match the image
	// config's diff_id.
	ErrDiffIDMismatch = errors.New("layer diff_id mismatch")
	// ErrUnsupported: an entry type or compression this package refuses.
	ErrUnsupported = errors.New("unsupported content")
	// ErrExists: the target rootfs already exists and Force was not set.
	ErrExists = errors.New("target rootfs already exists")
	// ErrBadImage: the manifest or config is inconsistent.
	ErrBadImage = errors.New("invalid image")
	// ErrInvalidOptions: Options failed validation.
	ErrInvalidOptions = errors.New("invalid unpack options")
)
