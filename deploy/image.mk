# The container image of shoal (deploy/image): linux/amd64 and linux/arm64,
# built with go-containerregistry, no Docker engine.
#
#   make image                                      # OCI layout in bin/image
#   make image-push IMAGE=registry.example/shoal:v1
#   make image-push IMAGE=127.0.0.1:5000/shoal:dev IMAGE_INSECURE=1   # plain HTTP
#
# Reproducible: every timestamp is the commit time (SOURCE_DATE_EPOCH), so
# the same commit, Go toolchain and CA bundle give the same digest. The CA
# bundle is the build machine's, from Debian's ca-certificates.

IMAGE_OUT         ?= $(BIN)/image
IMAGE_PLATFORMS   ?= linux/amd64,linux/arm64
IMAGE_CA_CERTS    ?= /etc/ssl/certs/ca-certificates.crt
IMAGE_INSECURE    ?=
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# The commit, for the label; -dirty when git status lists any change.
IMAGE_REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null)$(if $(shell git status --porcelain 2>/dev/null),-dirty)

.PHONY: image image-push

image:
	$(GO) run ./deploy/image build -out $(IMAGE_OUT) -platforms $(IMAGE_PLATFORMS) \
		-created $(SOURCE_DATE_EPOCH) -revision "$(IMAGE_REVISION)" -ca-certs $(IMAGE_CA_CERTS)

image-push:
	@test -n "$(IMAGE)" || { echo "image-push: set IMAGE=REGISTRY/REPO:TAG" >&2; exit 1; }
	$(MAKE) --no-print-directory image
	$(GO) run ./deploy/image push -layout $(IMAGE_OUT) $(if $(IMAGE_INSECURE),-insecure) $(IMAGE)

.PHONY: test-image

# The image tests: two builds compared, the config and layer checked, a push
# to docker-registry and a pull back through an agent (deploy/image).
test-image: deps
	CI=true $(GO) test -race -count=1 -timeout 20m ./deploy/image
