# `make bench-tracker`: the tracker load generator (deploy/trackerload).
# The real tracker runs in a child process pinned to CPU TRACKER_CPU with
# GOMAXPROCS=1; the simulated agents announce from CPU LOAD_CPU. Prints
# announces a second (wall and per tracker CPU-second), latency
# percentiles and heap per (peer, blob); docs/bench/2026-12-03-tracker.md.
TRACKER_AGENTS   ?= 10000
TRACKER_BLOBS    ?= 20
TRACKER_POOL     ?= 500
TRACKER_CONNS    ?= 64
TRACKER_DURATION ?= 10s
TRACKER_SESSIONS ?= true
TRACKER_CPU      ?= 0
LOAD_CPU         ?= 1

.PHONY: bench-tracker
bench-tracker:
	$(GO) test -c -o $(BIN)/trackerload.test ./deploy/trackerload
	taskset -c $(LOAD_CPU) $(BIN)/trackerload.test -test.run '^TestLoad$$' -load \
	  -load.agents=$(TRACKER_AGENTS) -load.blobs=$(TRACKER_BLOBS) -load.pool=$(TRACKER_POOL) \
	  -load.conns=$(TRACKER_CONNS) -load.duration=$(TRACKER_DURATION) -load.sessions=$(TRACKER_SESSIONS) \
	  -load.server-cpu=$(TRACKER_CPU)
