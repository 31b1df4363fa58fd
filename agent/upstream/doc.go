// Package upstream is the agent's client for origin registries: the ones a
// pull falls through to when no peer has the content, and the source the
// swarm is seeded from.
//
//	registryshim ──ns=docker.io──▶ agent ──Manifest/Blob(registry, repo, …)──▶ Client
//	                                          │ route: ns → Registry table, "" → Default
//	                                          │ auth:  ggcr ping + basic/bearer, one token per repo
//	                                          ▼
//	                                      origin registry (GET/HEAD /v2/<repo>/…)
//
// Authentication (ping, basic, bearer-token exchange, docker config.json
// credentials) is go-containerregistry's; the requests themselves are raw
// HTTP through its RoundTripper so blobs can be fetched with Range and
// manifests come back byte for byte.
//
// Every error of a fetch wraps one of the package's sentinels (errors.go),
// or is the caller's own context error, so the agent can answer the runtime
// with the upstream's verdict (404, 401, 429, 503) as is; the agent maps them
// to OCI codes in one table. An upstream that is unreachable, silent, or
// answers with something unusable is ErrUnavailable, which the agent
// answers with UNAVAILABLE: a runtime using the agent as a mirror falls back
// to the upstream.
//
// The package does not import registryshim: the shim is the agent's
// concern; only the name grammar (registryshim/grammar) is shared.
// No 200 carries wrong bytes: a manifest fetched by digest is hashed before
// it is returned, and a blob asked from an offset starts at that offset even
// when the upstream ignores Range.
package upstream
