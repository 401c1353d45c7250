#!/usr/bin/env bash
# Builds everything and runs the test suite. Extra arguments go to ctest:
#   scripts/test.sh -L sim        scripts/test.sh -R package
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$(date +%s)
report_wall_time() {
  local rc=$?
  echo "test.sh: wall time $(($(date +%s) - start)) s (exit ${rc})"
  exit "${rc}"
}
trap report_wall_time EXIT

bash scripts/install_deps.sh

if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
if command -v nvcc >/dev/null 2>&1; then nvcc_checks=ON; else nvcc_checks=OFF; fi

phase() { echo "test.sh: $1 done at $(($(date +%s) - start)) s"; }
phase "install"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DSTRATA_BUILD_TESTS=ON -DSTRATA_BUILD_EXAMPLES=ON -DSTRATA_BUILD_BENCHMARKS=ON \
  -DSTRATA_ENABLE_NVCC_CHECKS=${nvcc_checks} -DSTRATA_TORCH_CUDA_ARCHS=80
cmake --build build -j2
phase "build"
if command -v ccache >/dev/null 2>&1; then ccache --show-stats || true; fi
# Two tests at a time, one per core: a simulator test runs one worker thread unless
# STRATA_SIM_WORKERS says otherwise, a static gate one nvcc. ctest's label summary at the end
# gives each label's time.
ctest --test-dir build --output-on-failure -j2 "$@"
phase "tests"
