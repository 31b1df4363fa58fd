# `make bench-faults`: the fault suite in network namespaces (deploy/testbed,
# issue 12): one rollout per fault, each on a bed of its own. Runs as root;
# prints the fault table and writes out/bench-faults/{report.txt,
# report.json,logs/<fault>/}. Sizes in MiB, rates in MB/s (10^6 bytes).
FAULTS_N         ?= 10
FAULTS_SIZE_MIB  ?= 50
FAULTS_LAYERS    ?= 5
FAULTS_MBPS      ?= 5
FAULTS           ?= all
BENCH_FAULTS_OUT   ?= out/bench-faults
BENCH_FAULTS_FLAGS ?=

.PHONY: bench-faults
bench-faults: deps
	$(GO) build -o $(BIN)/shoal ./cmd/shoal
	$(GO) build -o $(BIN)/liar ./deploy/testbed/cmd/liar
	$(GO) build -o $(BIN)/faults ./deploy/testbed/cmd/faults
	$(BIN)/faults -n $(FAULTS_N) -size-mib $(FAULTS_SIZE_MIB) -layers $(FAULTS_LAYERS) \
		-host-mbps $(FAULTS_MBPS) -faults $(FAULTS) \
		-shoal $(BIN)/shoal -liar $(BIN)/liar -crane $(GOBIN)/crane -out $(BENCH_FAULTS_OUT) $(BENCH_FAULTS_FLAGS)
