#!/usr/bin/env bash
# Builds libtorch_ext and the GoogleTest suites (stress test included) under a
# sanitizer and runs them; any report fails. Only what ctest runs is built:
# not the benchmarks, the examples or the programs that pytest runs.
# Usage: sanitize.sh asan|tsan [ctest regex]: the tests the regex names, or all.
# asan: AddressSanitizer with LeakSanitizer, and UndefinedBehaviorSanitizer.
# tsan: ThreadSanitizer.
# libtorch itself is not instrumented: only our library and tests are. No
# suppression is needed.
set -euo pipefail
kind=$1
cd "$(dirname "$0")/.."

case $kind in
asan)
  # vptr is off: UBSan's dynamic-type check needs the typeinfo of torch's
  # polymorphic classes, and libtorch does not export it (c10::DynamicType).
  flags="-fsanitize=address,undefined -fno-sanitize=vptr -fno-sanitize-recover=undefined"
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # The fuzzers run the cases of `make test` (fuzz_cases.h): at 5 times as
  # many they took half of this step's time. `make fuzz` runs more.
  export TORCH_EXT_FUZZ_CASES=${TORCH_EXT_FUZZ_CASES:-2000}
  # Its tests run up to five times slower than in `make test`, and the
  # fuzzers' longer in proportion to their cases.
  timeout_scale=$((5 * (TORCH_EXT_FUZZ_CASES > 2000 ? TORCH_EXT_FUZZ_CASES : 2000) / 2000))
  ;;
tsan)
  flags="-fsanitize=thread"
  export TSAN_OPTIONS=halt_on_error=1
  # torch's kernels run on libgomp's thread pool, which is not instrumented:
  # TSan cannot see its barriers and reports their handoffs as races.
  export OMP_NUM_THREADS=1
  # TSan slows threads down most.
  timeout_scale=10
  ;;
*)
  echo "usage: $0 asan|tsan" >&2
  exit 2
  ;;
esac

build=build/$kind
# Line tables only (-g1), as in `make test`: enough for the reports' stacks.
cmake -S . -B "$build" -DPython3_EXECUTABLE="${PYTHON:?}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
  -DCMAKE_CXX_FLAGS="$flags -fno-omit-frame-pointer" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" \
  -DTORCH_EXT_BUILD_EXAMPLES=OFF -DTORCH_EXT_BUILD_BENCHMARKS=OFF \
  -DTORCH_EXT_BUILD_TEST_HELPERS=OFF -DTORCH_EXT_INSTALL=OFF \
  -DTORCH_EXT_TEST_TIMEOUT_SCALE="$timeout_scale"
cmake --build "$build" -j "${JOBS:-2}"
ctest --test-dir "$build" --output-on-failure -j "${JOBS:-2}" ${2:+-R "$2"}
