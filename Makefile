# Shoal. `make demo` runs the local demo swarm; `make test` runs every test.
# Both install what they need first (apt packages as root, Go modules).

GO      ?= go
BIN     := bin
PKGS    := ./...
GOBIN   := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)

.PHONY: all build test test-unit lint bench demo deps fuzz fuzz-short clean

all: build

build:
	$(GO) build -o $(BIN)/shoal ./cmd/shoal

deps:
	bash deploy/deps.sh
	$(GO) mod download

# The whole suite: unit, component, multi-node and end-to-end tests (the
# latter start docker-registry, containerd, skopeo and crane, and network
# namespaces when run as root), then every fuzz target for a short budget.
test: deps
	$(GO) vet $(PKGS)
	$(GO) test -race -timeout 20m $(PKGS)
	cd deploy/kubernetes && $(GO) vet ./... && $(GO) test -timeout 10m ./...
	$(call fuzz-all,$(FUZZTIME_SHORT),-fuzzminimizetime 1x)

test-unit:
	$(GO) test -race -short $(PKGS)

lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet $(PKGS)

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

demo:
	$(GO) run ./cmd/shoal demo

# Fuzzing: `make fuzz` gives every target FUZZTIME (FUZZTIME=10m for a long
# hunt); `make fuzz-short`, run by `make test`, gives each FUZZTIME_SHORT
# inputs. The short run counts inputs rather than seconds: a time budget
# that ends while a worker handles a new input fails the run with "context
# deadline exceeded", which a CI run must not do. Building and replaying
# the seed corpora of the 30-odd targets is most of its time (about two
# minutes on a 2-core machine).
FUZZTIME       ?= 20s
FUZZTIME_SHORT ?= 5000x

# fuzz-all runs every fuzz target of $(PKGS) for $(1) each. Only packages
# with a `func Fuzz` in their test files are listed, so the others are not
# built again.
define fuzz-all
	@for p in $$($(GO) list -f '{{.ImportPath}} {{.Dir}}' $(PKGS) | \
	    while read -r ip dir; do grep -qs '^func Fuzz' "$$dir"/*_test.go && echo "$$ip"; done); do \
	  for f in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
	    echo "== $$p $$f ($(1))"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(1) $(2) $$p || exit 1; \
	  done; done
endef

fuzz:
	$(call fuzz-all,$(FUZZTIME))

fuzz-short:
	$(call fuzz-all,$(FUZZTIME_SHORT),-fuzzminimizetime 1x)

clean:
	rm -rf $(BIN)

# The Helm chart's default render, deploy/kubernetes/shoal.yaml (its own Go
# module: the main module does not depend on Helm).
.PHONY: kubernetes-manifests
kubernetes-manifests:
	cd deploy/kubernetes && $(GO) generate .

# Benchmark and testbed targets live beside their code.
-include deploy/*.mk
