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

CSRC := $(wildcard torch_ext/csrc/*/*.cpp torch_ext/csrc/*/*.h include/torch_ext/*.h)
PY_EXT_STAMP := build/.python-extension
CPP_STAMP := build/.cpp-configured

.PHONY: test demo deps python cpp clean

deps: build/.deps
build/.deps: tools/install_deps.sh
	bash tools/install_deps.sh $(TORCH_VERSION)
	@mkdir -p build && touch $@

python: $(PY_EXT_STAMP)
$(PY_EXT_STAMP): build/.deps setup.py $(CSRC)
	$(PYTHON) -m pip install -q --no-build-isolation --no-deps -e .
	@touch $@

$(CPP_STAMP): build/.deps CMakeLists.txt
	cmake -S . -B $(BUILD) -DPython3_EXECUTABLE=$(PYTHON) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	@touch $@

cpp: $(CPP_STAMP)
	cmake --build $(BUILD) -j $(JOBS)

test: python cpp
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	TORCH_EXT_CPP_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) -m pytest test -q

demo: cpp
	$(BUILD)/examples/async_checkpoint_demo --mib 256 --steps 30 --interval 10 --stop-at 25 --out $(BUILD)/demo_checkpoints

# The C++ tests under ASan+LSan+UBSan, then TSan (build/asan, build/tsan).
.PHONY: sanitize sanitize-asan sanitize-tsan
sanitize: sanitize-asan sanitize-tsan
sanitize-asan sanitize-tsan: sanitize-%: build/.deps
	JOBS=$(JOBS) bash tools/sanitize.sh $*

clean:
	rm -rf build torch_ext/_C.so torch_ext/lib/*.so *.egg-info

# Timed rounds, then docs/benchmarks.md and its plots. CI runs the
# benchmarks only in smoke mode, from test/test_benchmarks.py.
.PHONY: bench
bench: python cpp
	$(PYTHON) tools/bench_report.py --cpp-bench $(BUILD)/bench/cpp/future_utils_bench \
		--checkpoint-bench $(BUILD)/bench/cpp/checkpoint_bench --out docs
