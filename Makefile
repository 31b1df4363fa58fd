# Shoal. `make demo` runs the local demo swarm; `make test` runs every test.
# Both install what they need first (apt packages as root, Go modules).

GO      ?= go
BIN     := bin
PKGS    := ./...
GOBIN   := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

.PHONY: all build test test-unit lint bench demo deps fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/shoal ./cmd/shoal

deps:
	bash deploy/deps.sh
	$(GO) mod download

# The whole suite: unit, component, multi-node and end-to-end tests (the
# latter start docker-registry, containerd, skopeo and crane, and network
# namespaces when run as root).
test: deps
	$(GO) vet $(PKGS)
	$(GO) test -race -timeout 20m $(PKGS)

test-unit:
	$(GO) test -race -short $(PKGS)

lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

demo:
	$(GO) run ./cmd/shoal demo

fuzz:
	@for p in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
	    echo "== $$p $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$p || exit 1; \
	  done; done

clean:
	rm -rf $(BIN)

# Benchmark and testbed targets live beside their code.
-include deploy/*.mk
