# `make sim`: one simulated rollout (deploy/sim) on a virtual clock, running
# the agent's own swarm, upload gate and the real tracker; prints its row of
# the table in docs/bench/2026-12-03-sim.md and the completion CDF. It runs
# as a test binary (testing/synctest needs one). Bandwidths in MB/s, size
# in MiB, latencies one-way per link (uniform in [min, max]); SIM_ZONES
# puts the agents in zones round robin, each with an uplink of SIM_ZONE_UP
# each way; SIM_WINDOW is a piece stream's send window in KiB, the most of
# each piece in flight a message on the same link waits behind (0: none).
SIM_N       ?= 20
SIM_SIZE    ?= 200
SIM_LAYERS  ?= 5
SIM_SEEDER  ?= 20
SIM_UP      ?= 20
SIM_DOWN    ?= 20
SIM_ORIGIN  ?= 1000
SIM_SLOW    ?= 0
SIM_LAT_MIN ?= 1ms
SIM_LAT_MAX ?= 1ms
SIM_CHURN   ?= 0
SIM_SPREAD  ?= 0s
SIM_SEED    ?= 1
SIM_QUANTUM ?= 100us
SIM_WINDOW  ?= 512
SIM_ZONES   ?= 0
SIM_ZONE_UP ?= 1000

.PHONY: sim
sim:
	cd deploy/sim && $(GO) test -run '^TestSim$$' -count=1 -timeout 3h -args -sim \
	  -sim.n=$(SIM_N) -sim.size=$(SIM_SIZE) -sim.layers=$(SIM_LAYERS) \
	  -sim.seeder=$(SIM_SEEDER) -sim.up=$(SIM_UP) -sim.down=$(SIM_DOWN) -sim.origin=$(SIM_ORIGIN) \
	  -sim.slow=$(SIM_SLOW) -sim.lat-min=$(SIM_LAT_MIN) -sim.lat-max=$(SIM_LAT_MAX) \
	  -sim.churn=$(SIM_CHURN) -sim.spread=$(SIM_SPREAD) -sim.seed=$(SIM_SEED) \
	  -sim.quantum=$(SIM_QUANTUM) -sim.zones=$(SIM_ZONES) -sim.zone-up=$(SIM_ZONE_UP) \
	  -sim.window=$(SIM_WINDOW)
