# End-to-end tests and benchmarks of the agent with the real shoal binary,
# docker-registry as the origin and real clients (deploy/e2e).
#
#   make test-e2e                       # the end-to-end tests alone
#   make bench-agent                    # cold/warm pull ratios, TTFB, RSS
#   make bench-agent BENCH_IMAGE_MB=200 BENCH_COUNT=5

BENCH_IMAGE_MB ?= 40
BENCH_COUNT    ?= 3

.PHONY: test-e2e bench-agent

test-e2e: deps
	CI=true $(GO) test -race -count=1 -timeout 10m ./deploy/e2e

bench-agent: deps
	SHOAL_BENCH_IMAGE_MB=$(BENCH_IMAGE_MB) $(GO) test -run '^$$' -bench . \
	  -benchtime $(BENCH_COUNT)x -timeout 30m ./deploy/e2e
