// Package unpack pulls an image and unpacks its layers into a root
// filesystem, verifying every byte on the way.
//
// Each layer is one streaming pipeline, and up to Options.Jobs layers run at
// once:
//
//	registry or agent ──► sha256 (layer digest) ──► gunzip (pgzip) / zstd / none
//	    ──► sha256 (config diff_id) ──► tar ──► Extract into DIR/.shoal-staging-*/layer-N
//
// Staged layers are then applied in order (Apply) to a temporary rootfs in the
// same staging directory, following OCI whiteout semantics; application of
// layer N starts as soon as layers 0..N are staged, so it overlaps with the
// download of later layers. Only when every layer has been verified and
// applied is the temporary rootfs renamed to DIR/rootfs: a failed pull
// leaves no rootfs behind and removes its staging directory.
//
// Untrusted tar content never writes outside its target: names are cleaned
// and must stay relative, parents are walked with Lstat and may not be
// symlinks, symlinks are created as-is and never followed, hard links must
// point inside the tree, and a Budget bounds the total unpacked bytes
// (decompression bombs).
//
// The package is Unix-only: it relies on lchown, mknod and lutimes.
package unpack
