# Thin wrapper over CMake so users type `make`, `make test`, ... (see README).
# Every target first runs scripts/deps.sh, which installs what is missing.

SHELL       := /bin/bash
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 60
# Warnings are errors in CI (CI=true) and when asked for with WERROR=ON.
WERROR      ?= $(if $(CI),ON,OFF)
CMAKE       := cmake
CTEST       := ctest --output-on-failure -j $(JOBS)
# make install: where to (DESTDIR, if set, is prepended to every path: staging)
PREFIX      ?= /usr/local
DESTDIR     ?=

.PHONY: all build build-tests test asan fuzz bench-parse bench-server bench-client bench-tls bench-cores \
        bench-restart bench-haproxy run format deps deps-bench install uninstall clean soak faults \
        deps-faults

all: build

deps:
	@scripts/deps.sh

deps-bench:
	@scripts/deps.sh --bench

# `make` and `make run` build the library, the CLI and the examples; the test
# suite (and cmocka) only comes with `make test` and `make asan`.
deps-faults:
	@scripts/deps.sh --faults

build: deps
	@$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release -DFERRY_WERROR=$(WERROR) -DFERRY_TESTS=OFF >/dev/null
	@$(CMAKE) --build build -j $(JOBS)

# The same tree with the tests, the test support and the reliability programs.
build-tests: deps
	@$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=Release -DFERRY_WERROR=$(WERROR) -DFERRY_TESTS=ON >/dev/null
	@$(CMAKE) --build build -j $(JOBS)

test: build-tests
	@cd build && $(CTEST)

# CMake's install rules (cmake/install.cmake). Every file installed is added to
# build/installed_files.txt, which `make uninstall` removes again (give it the
# same DESTDIR).
# As root and not staging, ldconfig refreshes the loader's cache, which is how
# libferry.so.0 is found in /usr/local/lib.
LDCONFIG = if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

install: build
	@DESTDIR="$(DESTDIR)" $(CMAKE) --install build --prefix "$(PREFIX)"
	@cat build/install_manifest.txt >> build/installed_files.txt && echo >> build/installed_files.txt
	@$(LDCONFIG)

uninstall:
	@DESTDIR="$(DESTDIR)" $(CMAKE) -DMANIFEST=build/installed_files.txt -P cmake/uninstall.cmake
	@$(LDCONFIG)

asan: deps
	@$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON -DFERRY_WERROR=$(WERROR) -DFERRY_TESTS=ON >/dev/null
	@$(CMAKE) --build build-asan -j $(JOBS)
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 $(CTEST)

# Each target fuzzes from its seed corpus (fuzz/seeds/<target>) for FUZZ_SECONDS.
fuzz: deps
	@CC=clang $(CMAKE) -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_FUZZ=ON >/dev/null
	@$(CMAKE) --build build-fuzz -j $(JOBS) --target $(notdir $(basename $(wildcard fuzz/fuzz_*.c)))
	@set -e; for f in build-fuzz/fuzz/fuzz_*; do \
	  name=$$(basename $$f); mkdir -p build-fuzz/corpus/$$name; \
	  echo "== $$name: $(FUZZ_SECONDS)s (log: build-fuzz/$$name.log)"; \
	  if ! $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build-fuzz/ \
	      build-fuzz/corpus/$$name $$( [ -d fuzz/seeds/$$name ] && echo fuzz/seeds/$$name ) \
	      > build-fuzz/$$name.log 2>&1; then tail -n 40 build-fuzz/$$name.log; exit 1; fi; \
	  grep -E 'stat::number_of_executed_units|stat::peak_rss|DONE' build-fuzz/$$name.log; \
	done

# Benchmarks build in their own tree, so `make` never needs the peers' libraries.
bench-parse: deps-bench
	@$(CMAKE) -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DFERRY_BENCH=ON >/dev/null
	@$(CMAKE) --build build-bench -j $(JOBS) --target parse_bench
	@build-bench/bench/parse_bench

# The demo server on :8080 (docs/serve.md); SERVE_ARGS adds flags.
SERVE_ARGS ?=
run: build
	@build/ferry serve --port 8080 $(SERVE_ARGS)

# ferry serve against nginx and Node 20: throughput, CPU per request, memory per
# idle connection, graceful close (about 3 minutes; see docs/benchmarks.md).
bench-server: build deps-bench
	@bench/server.sh

# ferry bench and ferry fetch against wrk, autocannon, Node 20 (http.Agent,
# undici) and curl, all against one nginx (about 2 minutes; see docs/bench.md).
# undici and autocannon are installed from npm under build-bench/npm.
bench-client: build deps-bench
	@bench/client.sh

# Failed requests while nginx (binary upgrade), a Node cluster (rolling restart)
# and ferry serve (SIGUSR2) restart 10 times in a row under wrk -c64 (about 1
# minute; RESTARTS, PAUSE, SIDES: see the script's header).
bench-restart: build deps-bench
	@bench/restart.sh

# Two backends behind Debian's haproxy 2.6, each restarted in turn (SIGTERM,
# start) under wrk through haproxy: client-visible errors per backend kind
# (about 2 minutes; DURATION, SIDES: see the script's header).
bench-haproxy: build deps-bench
	@bench/haproxy_rolling.sh

# More than one loop: ferry serve --workers 2 against nginx with 2 workers,
# p99 next to a CPU-heavy handler (ferry and a Node cluster), TLS handshakes
# with the workers as threads or processes, restarts under load (about 6
# minutes; see docs/benchmarks.md).
bench-cores: build deps-bench
	@bench/cores.sh

# HTTPS: ferry serve against nginx (1 worker, the same certificates, made at run
# time): CPU per keep-alive request and per handshake (ECDSA and RSA), memory per
# idle TLS connection; ferry fetch against curl and Node's https.Agent, and
# resumption with ferry bench -M 1 (about 6 minutes; see docs/benchmarks.md).
bench-tls: build deps-bench
	@bench/tls.sh

# The frozen 0.1.0 header (tests/abi) stays byte for byte as released.
# Reliability runs (docs/reliability.md), bounded in time. soak: SOAK_SECONDS of
# mixed load on the release ferry, SOAK_ASAN_SECONDS more on the ASan one, then
# the slowloris run. faults: the misbehaving server, then wire faults in network
# namespaces (root; SKIP without).
SOAK_SECONDS      ?= 60
SOAK_ASAN_SECONDS ?= 20
FAULTS_N          ?= 200
soak: build-tests
	@$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON -DFERRY_WERROR=$(WERROR) >/dev/null
	@$(CMAKE) --build build-asan -j $(JOBS) --target ferry_cli
	@SOAK_SECONDS=$(SOAK_SECONDS) tests/reliability/soak.sh build/ferry build/reliability/loadgen
	@SOAK_SECONDS=$(SOAK_ASAN_SECONDS) SOAK_ASAN=1 ASAN_OPTIONS=detect_leaks=1 \
	  tests/reliability/soak.sh build-asan/ferry build/reliability/loadgen
	@tests/reliability/slowloris.sh build/ferry build/reliability/loadgen

faults: deps-faults build-tests
	@FAULTS_N=$(FAULTS_N) tests/reliability/faults.sh build/ferry build/reliability

format:
	@clang-format -i $$(git ls-files '*.c' '*.h' ':!tests/abi/ferry_v0_1_0.h')

clean:
	rm -rf build build-asan build-fuzz build-bench
