// Package agent is the Shoal node agent: the registry backend that the
// registryshim handler serves on localhost.
//
//	runtime ──HTTP──▶ registryshim ──▶ Agent ──▶ manifests: upstream (by tag: HEAD, short cache)
//	                                         └─▶ blobs: store ◀── filler ◀── upstream (Range resume)
//
// Manifests always come from the upstream registry (they carry tags and
// authorisation); a manifest by digest is immutable and cached in memory. A
// blob is served from the content store, which streams the bytes of a
// download still under way and shares one download among all readers.
package agent
