# The two commands of the README's Quick start, and a few more for developers.
#   make run    install missing Debian packages, build, start gencached in the foreground
#   make test   build and run the whole test suite through CTest
#   make install   install under PREFIX (default /usr/local; DESTDIR is honoured)
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
PREFIX ?= /usr/local

.PHONY: all deps build run test test-asan test-clang test-tsan fuzz bench clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The prefix is configured, not only given to cmake --install: GNUInstallDirs picks the library
# directory from it (lib/<multiarch> under /usr, as Debian expects) and the library looks for its
# data files there.
.PHONY: install
install: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	cmake --build $(BUILD) -j $(JOBS)
	cmake --install $(BUILD)

run: build
	$(BUILD)/bin/gencached --listen 127.0.0.1:8787 --data-dir ./gencache-data

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The suite again under AddressSanitizer and UndefinedBehaviorSanitizer.
test-asan: deps
	cmake -S . -B build-asan -DGENCACHE_SANITIZE=ON -DGENCACHE_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

# The library's own tests (unit and fuzz replay) under clang's ASan+UBSan, which catches undefined
# behaviour gcc's does not (arithmetic on a null pointer, for one). The integration tests stay
# with the gcc run: they load the library into an uninstrumented interpreter.
test-clang: deps
	cmake -S . -B build-clang -DCMAKE_C_COMPILER=clang -DGENCACHE_SANITIZE=ON -DGENCACHE_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-clang -j $(JOBS)
	cd build-clang && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS) -E '^integration\.'

# Every libFuzzer target for a bounded time (20 s or 200,000 inputs each, fixed seed) on top of
# the corpus replay that `make test` runs.
fuzz: deps
	scripts/fuzz.sh 20 200000

# The threaded tests under ThreadSanitizer.
test-tsan: deps
	cmake -S . -B build-tsan -DGENCACHE_TSAN=ON -DGENCACHE_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && ctest --output-on-failure -L threads

# Every benchmark of bench/ with a short setting, then one table of the headline figures (under
# 10 minutes; each benchmark's full output is kept in $(BUILD)/bench-logs). See docs/BENCHMARKS.md.
bench: build
	bench/run_all.sh $(BUILD)

clean:
	rm -rf build build-asan build-clang build-tsan build-fuzz
