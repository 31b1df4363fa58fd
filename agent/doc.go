// Package agent is the Shoal node agent: the registry backend that the
// registryshim handler serves on localhost.
//
//	runtime ──HTTP──▶ registryshim ──▶ Agent ──▶ manifests: upstream (by tag: HEAD, short cache)
//	                                         └─▶ blobs: store ◀── filler ◀── swarm (pieces from peers and the seeder)
//	                                                                    └── upstream (Range requests: no tracker, or a stalled swarm)
//
// Manifests always come from the upstream registry (they carry tags and
// authorisation); a manifest by digest is immutable and cached in memory. A
// blob is served from the content store, which streams the bytes of a
// download still under way and shares one download among all readers. With
// a swarm (WithSwarm) the store is filled with pieces from peers; without
// one, or when the tracker cannot be reached, from the upstream.
//
// The Agent does not build its parts: cmd/shoal makes the upstream client,
// the store and the swarm and hands them to New, and closes them after the
// Agent. The tracker's seeder is an Agent too, whose Seed fetches a blob
// from the origin once and names its pieces as they arrive.
//
// Upstream errors are the upstream package's own; errors.go maps them, and
// the store's, onto the OCI error table in one place.
package agent
