# The README's commands. Each one installs what it needs and is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := test

TORCH_VERSION := 2.13.0
VENV := .venv
BUILD := build/cpp
JOBS ?= 2
# A python that already imports torch, or else a local venv with the pinned
# CPU wheel.
PYTHON ?= $(shell python3 -c 'import torch' >/dev/null 2>&1 && command -v python3 || echo $(CURDIR)/$(VENV)/bin/python)
export PYTHON

CSRC := $(shell find torch_ext/csrc include -name '*.cpp' -o -name '*.h')
PY_EXT_STAMP := build/.python-extension
CPP_STAMP := build/.cpp-configured

.PHONY: test demo deps python cpp clean

deps: build/.deps
build/.deps: tools/install_deps.sh
	bash tools/install_deps.sh $(TORCH_VERSION)
	@mkdir -p build && touch $@

# One build of the C++ library, in $(BUILD): the tests, the examples, the
# benchmarks and the Python module (torch_ext._C) all link it. Line tables
# only (-g1): enough for backtraces, and a third faster to compile than full
# debug info of torch's templates.
$(CPP_STAMP): build/.deps CMakeLists.txt Makefile
	cmake -S . -B $(BUILD) -DPython3_EXECUTABLE=$(PYTHON) -DTORCH_EXT_BUILD_PYTHON=ON \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG"
	@touch $@

cpp: $(CPP_STAMP)
	cmake --build $(BUILD) -j $(JOBS)

# An editable install of what $(BUILD) built: setup.py only brings it up to date.
python: $(PY_EXT_STAMP)
$(PY_EXT_STAMP): $(CPP_STAMP) setup.py $(CSRC)
	TORCH_EXT_CPP_BUILD=$(CURDIR)/$(BUILD) CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) $(PYTHON) -m pip install -q --no-build-isolation --no-deps -e .
	@touch $@

test: cpp python
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	TORCH_EXT_CPP_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) -m pytest test -q --durations=25

demo: cpp
	$(BUILD)/examples/async_checkpoint_demo --mib 256 --steps 30 --interval 10 --stop-at 25 --out $(BUILD)/demo_checkpoints

# The C++ tests under ASan+LSan+UBSan, then TSan (build/asan, build/tsan).
.PHONY: sanitize sanitize-asan sanitize-tsan fuzz
sanitize: sanitize-asan sanitize-tsan
sanitize-asan sanitize-tsan: sanitize-%: build/.deps
	JOBS=$(JOBS) bash tools/sanitize.sh $*

# The fuzzers alone under ASan, FUZZ_CASES cases each from FUZZ_SEED, with
# timeouts in proportion.
FUZZ_CASES ?= 20000
FUZZ_SEED ?= 1
fuzz: build/.deps
	JOBS=$(JOBS) TORCH_EXT_FUZZ_CASES=$(FUZZ_CASES) TORCH_EXT_FUZZ_SEED=$(FUZZ_SEED) bash tools/sanitize.sh asan Fuzz

clean:
	rm -rf build torch_ext/_C.so torch_ext/lib/*.so *.egg-info

# Timed rounds, then docs/benchmarks.md and its plots. CI runs the
# benchmarks only in smoke mode, from test/test_benchmarks.py.
.PHONY: bench
bench: cpp python
	$(PYTHON) tools/bench_report.py --cpp-bench $(BUILD)/bench/cpp/future_utils_bench \
		--checkpoint-bench $(BUILD)/bench/cpp/checkpoint_bench \
		--safetensors-bench $(BUILD)/bench/cpp/safetensors_bench --dcp --consolidate \
		--dcp-scale-bench $(BUILD)/bench/cpp/dcp_scale_bench --out docs
