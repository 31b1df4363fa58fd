# Pull-and-unpack benchmark (issue 5): shoal pull --unpack against the same
# pipeline run sequentially with the standard library's gzip, containerd's
# ctr and podman, on one generated image served by docker-registry on
# loopback. Reported, not asserted; results in out/bench-unpack/.

.PHONY: bench-unpack

BENCH_UNPACK_FLAGS ?=

bench-unpack: build
	@command -v docker-registry >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q docker-registry; } || true
	@command -v podman >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q --no-install-recommends podman; } || echo "podman not installed: skipped"
	$(GO) run ./deploy/bench/unpack -shoal $(BIN)/shoal -out out/bench-unpack $(BENCH_UNPACK_FLAGS)
