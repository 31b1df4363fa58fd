// Command image builds the container image of shoal without a Docker
// engine, and pushes it (`make image`, `make image-push`).
//
//	go run ./deploy/image build -out bin/image -created "$(git log -1 --format=%ct)"
//	go run ./deploy/image push -layout bin/image [-insecure] registry.example/shoal:v1
//
// build cross-compiles cmd/shoal for every platform (linux/amd64 and
// linux/arm64 by default) and writes an OCI image layout holding one
// image index:
//
//	go build (CGO_ENABLED=0, -trimpath, -buildvcs=false, -ldflags "-s -w -buildid=") ─▶ shoal
//	shoal + CA bundle + passwd/group + /var/lib/shoal ─▶ one layer ─▶ image per platform
//	images ─▶ index ─▶ OCI layout (index.json → index → manifests → config, layer)
//
// Every input of the digests is fixed: the binary is built reproducibly
// (no paths, build ID or VCS stamp; the commit goes in the label
// org.opencontainers.image.revision), tar entries are sorted and carry one
// timestamp (-created: the commit time in `make image`, the epoch by
// default) with fixed owners, and the config, history and gzip stream hold
// nothing else that varies. The same commit, Go toolchain and CA bundle
// (Debian's ca-certificates on the build machine) give the same index
// digest.
//
// The image has no shell: /usr/local/bin/shoal (entrypoint, command
// "agent"), /etc/ssl/certs/ca-certificates.crt, /etc/passwd and /etc/group
// with the user shoal (uid and gid 65532, the image's user), /var/lib/shoal
// owned by it, and /tmp.
//
// push sends the layout's index, with every manifest and blob, to a
// registry, with the credentials of the docker keychain.
package main
