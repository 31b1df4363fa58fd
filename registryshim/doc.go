// Package registryshim serves the read half of the OCI Distribution API on
// the agent's localhost port, for container runtimes (containerd, CRI-O,
// podman, skopeo, crane, Docker).
//
// The handler only speaks HTTP: it validates every path, digest, name and
// Range header, then asks a Backend, which the agent implements:
//
//	runtime ──GET /v2/<name>/blobs/<digest>──▶ Handler ──Blob()──▶ Backend (agent)
//	        ◀── bytes as soon as ReadAt returns ──┘ ◀── Blob.ReadAt blocks until pieces land
//
// Blobs are streamed: the response starts as soon as the first chunk can be
// read, so a runtime starts unpacking while the swarm is still fetching.
// A failure after the status line was sent aborts the connection, so the
// client never mistakes a short body for a complete one.
//
// errors.go holds the project's single table of OCI error codes. Backends
// wrap its sentinels; the handler answers with the sentinel's code, status
// and message, never with the wrapped text, which may carry internal details.
//
// Names, tags and ?ns= registries are checked against the grammar
// subpackage, the one definition of them Shoal has.
//
// The package imports nothing else of Shoal's: only the standard library,
// go-digest, Prometheus and its own grammar (see imports_test.go).
package registryshim
