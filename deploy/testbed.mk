# `make bench-swarm`: the swarm rollout benchmark in network namespaces
# (deploy/testbed). Runs as root; writes out/bench-swarm/{report.txt,
# report.json,chart.svg,logs/}. Sizes in MiB, rates in MB/s (10^6 bytes);
# MBPS sets the hosts' and the origin's rate at once. SEED=1 also rolls
# out an image after `shoal seed IMAGE --wait`, against the cold rollout.
N           ?= 20
SIZE_MIB    ?= 200
LAYERS      ?= 5
HOST_MBPS   ?= 20
ORIGIN_MBPS ?= 20
ifneq ($(MBPS),)
HOST_MBPS   := $(MBPS)
ORIGIN_MBPS := $(MBPS)
endif
SEED        ?= 0
BENCH_SWARM_OUT   ?= out/bench-swarm
BENCH_SWARM_FLAGS ?=
BENCH_SWARM_SEED_FLAG := $(if $(filter 1,$(SEED)),-preseed)

.PHONY: bench-swarm
bench-swarm: deps
	$(GO) build -o $(BIN)/shoal ./cmd/shoal
	$(GO) build -o $(BIN)/testbed ./deploy/testbed/cmd/testbed
	$(BIN)/testbed -n $(N) -size-mib $(SIZE_MIB) -layers $(LAYERS) \
		-host-mbps $(HOST_MBPS) -origin-mbps $(ORIGIN_MBPS) \
		-shoal $(BIN)/shoal -crane $(GOBIN)/crane -out $(BENCH_SWARM_OUT) $(BENCH_SWARM_SEED_FLAG) $(BENCH_SWARM_FLAGS)
