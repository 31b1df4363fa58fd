// Package grammar is the OCI distribution grammar of repository names, tags
// and registry hosts: the one definition that the registry shim, the
// upstream client, the tracker and the testbed all check names against.
//
//	runtime path /v2/<name>/manifests/<tag>?ns=<host[:port]>
//	                   │              │          │
//	               Repository        Tag      Registry
//
// A name that passes is safe to put into an upstream URL: it cannot climb
// out of /v2/, hold a query, or carry an escape. The functions are pure
// predicates over bytes; case folding, error values and how a caller answers
// a bad name stay with the caller.
//
// The package imports only the standard library, so anything in Shoal can
// use it (see imports_test.go).
package grammar
