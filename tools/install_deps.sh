#!/usr/bin/env bash
# Installs what the build and the tests need and this machine lacks:
# torch (the pinned CPU wheel, into ./.venv unless $PYTHON already imports it),
# the Python test tools (pytest-timeout bounds every test; matplotlib: the
# benchmarks' smoke test draws the plots; zstandard: upstream DCP's ZStandard
# extension in the tests; safetensors, huggingface_hub and transformers: the
# safetensors tests read and write beside them; tqdm: the command line's
# progress bar), and GoogleTest, Google
# Benchmark, ISA-L, zstd and nlohmann/json from Debian.
set -euo pipefail
torch_version=$1
cd "$(dirname "$0")/.."

if [[ ! -x ${PYTHON:?} ]] && ! command -v "$PYTHON" >/dev/null; then
  python3 -m venv .venv
fi
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  "$PYTHON" -m pip install -q "torch==${torch_version}"
fi
missing=()
# Import names, which pip takes as package names too.
for module in pytest pytest_timeout hypothesis numpy ninja matplotlib zstandard safetensors huggingface_hub transformers tqdm; do
  "$PYTHON" -c "import $module" 2>/dev/null || missing+=("$module")
done
if ((${#missing[@]})); then
  "$PYTHON" -m pip install -q "${missing[@]}"
fi

if [[ ! -f /usr/include/gtest/gtest.h || ! -f /usr/include/benchmark/benchmark.h || ! -f /usr/include/isa-l/crc.h ||
      ! -f /usr/include/zstd.h || ! -f /usr/include/nlohmann/json.hpp ]]; then
  sudo=""
  [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq libgtest-dev libbenchmark-dev libisal-dev libzstd-dev nlohmann-json3-dev
fi
