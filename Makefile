# Spindle — build, test, demo and benchmark targets. `make test` and `make demo` work as the
# first command on a fresh machine: both install what they need first.
SHELL        := /bin/bash
SWIFT        ?= swift
STRICT_FLAGS  = -Xswiftc -warnings-as-errors --explicit-target-dependency-import-check error
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps build check test test-cluster test-release demo bench fuzz docs clean

# Installs libuv's headers only when they are missing. apt knows no packages on a fresh
# machine until `apt-get update` has run, so it runs first.
deps:
	@if ! pkg-config --exists libuv 2>/dev/null || [ ! -f /usr/include/uv.h ]; then \
		echo "==> installing libuv1-dev"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq libuv1-dev pkg-config; \
	fi

build: deps
	$(SWIFT) build $(STRICT_FLAGS)

check: deps
	$(SWIFT) build --build-tests $(STRICT_FLAGS)

# The test targets run in groups, one process after another (tests run in parallel within a
# group): on 2 cores, one process running every target at once let CPU-bound tests (tasklet
# loops, runner ticks, worker floods) hold the cooperative pool's threads for seconds while
# timing-sensitive tests beside them (heartbeats, liveness bounds, handshake timeouts) waited;
# one full run in five or so failed that way. The tests that keep both cores busy for seconds
# (tens of thousands of barrier rounds with more lanes than cores, 100 000 tasks through
# worker processes) run last, alone. A new test target must be added to a group. The cluster
# tests run in `make test-cluster`.
CPU_HEAVY_TESTS = tenThousandRoundsLoseNoArrivalAndAddNone|ProcessWorkerTests/hundredThousand
TEST_GROUPS = SpindleSupportTests|SpindleKernelTests|SpindleEventLoopTests \
              SpindleTCPTests \
              SpindleTaskletsTests|SpindleTaskQueueTests|SpindleProcessWorkersTests \
              SpindleNodeEngineTests \
              SpindleHostMeshTests \
              SpindleRunnerTests \
              SpindleActorsTests \
              SpindleIntegrationTests
test: deps
	$(SWIFT) build --build-tests $(STRICT_FLAGS)
	@failed=""; for group in $(foreach g,$(TEST_GROUPS),'$(g)'); do \
		echo "==> $$group"; \
		$(SWIFT) test --skip-build --filter "$$group" --skip 'ClusterTests|$(CPU_HEAVY_TESTS)' || failed="$$failed $$group"; \
	done; \
	echo "==> CPU-heavy tests"; \
	$(SWIFT) test --skip-build --filter '$(CPU_HEAVY_TESTS)' || failed="$$failed CPU-heavy"; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi

# Spindle across hosts: network namespaces as machines (scripts/testcluster), real agents in
# them, sshd for the SSH launcher. Needs root; installs iproute2, nftables and openssh-server
# when missing.
test-cluster: deps
	@if [ "$$(id -u)" != 0 ]; then echo "test-cluster needs root (network namespaces); skipping"; exit 0; fi; \
	missing=""; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v nft >/dev/null || missing="$$missing nftables"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v ssh-keygen >/dev/null || missing="$$missing openssh-client"; \
	if [ -n "$$missing" ]; then \
		echo "==> installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(SWIFT) build --build-tests $(STRICT_FLAGS)
	$(SWIFT) test --skip-build --filter ClusterTests
	scripts/testcluster down

# The suite again with the optimiser on (testability kept for the @testable imports): it
# catches what only release builds get wrong, like the spurious FrameError of the reliable link pass (docs/benchmarks-history.md).
test-release: deps
	$(SWIFT) build -c release --build-tests -Xswiftc -enable-testing
	$(SWIFT) test -c release --skip-build -Xswiftc -enable-testing

# The demo starts `spindle-shard` procs and re-enters itself as task workers: build every
# product, then run it.
demo: deps
	$(SWIFT) build $(STRICT_FLAGS)
	$$($(SWIFT) build --show-bin-path)/spindle-demo

# The mesh and runner suites start the `spindle` and `spindle-shard` binaries: build every
# product in release, then run the benchmarks (ARGS="queue --json" picks suites and format).
bench: deps
	$(SWIFT) build -c release
	$$($(SWIFT) build -c release --show-bin-path)/spindle-bench $(ARGS)

# libFuzzer over the parsers of untrusted bytes (Fuzz/README.md): each target runs SECONDS
# seconds from the seed corpus; a crash stops with its input in .build-fuzz/crash-*.
SECONDS ?= 30
FUZZ_TARGETS = frames handshake records reliable
fuzz: deps
	$(SWIFT) build --scratch-path .build-fuzz --product spindle-fuzz \
		-Xswiftc -sanitize=fuzzer,address -Xswiftc -DSPINDLE_LIBFUZZER
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p .build-fuzz/corpus/$$t && cp Fuzz/Corpus/$$t/* .build-fuzz/corpus/$$t/ && \
		echo "==> fuzzing $$t for $(SECONDS) s" && \
		SPINDLE_FUZZ_TARGET=$$t .build-fuzz/debug/spindle-fuzz -max_total_time=$(SECONDS) -seed=1 \
			-print_final_stats=1 -artifact_prefix=.build-fuzz/crash-$$t- .build-fuzz/corpus/$$t \
			2>&1 | grep -E 'Done|stat::number_of_executed_units|ERROR|SUMMARY|crash' ; \
		test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

# DocC for every library product (scripts/build-docs): fails on a broken symbol link.
docs: deps
	scripts/build-docs

clean:
	rm -rf .build
