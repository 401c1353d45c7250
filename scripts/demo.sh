#!/usr/bin/env bash
# Builds and runs the flagship example, examples/layer_stack: every method's layer
# stack forward and backward in the CPU SIMT simulator, checked against the fp64 reference, with
# its costs (FLOPs, extra FLOPs over vanilla, KV-cache bytes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install_deps.sh

if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DSTRATA_BUILD_TESTS=OFF -DSTRATA_BUILD_BENCHMARKS=OFF -DSTRATA_BUILD_EXAMPLES=ON
cmake --build build --target strata_layer_stack -j2
./build/examples/strata_layer_stack
