// Package shimtest provides Memory, an in-memory registryshim.Backend for
// tests: a map of repositories to manifests, tags and blobs, with a hook to
// inject errors, a log of calls, and gates that release a blob's bytes a
// little at a time, as a backend still downloading from the swarm would.
package shimtest
