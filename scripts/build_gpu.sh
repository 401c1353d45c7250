#!/usr/bin/env bash
# Builds the binaries scripts/gpu_check.sh runs on a GPU, with nvcc and without a GPU (here, or on
# the GPU machine with all its cores):
#   layer_stack_gpu   every method's stack forward and backward on the GPU against fp64
#                     (examples/layer_stack, buffers in managed memory)
#   bench_flash_gpu   the flash forward/backward benchmarks (CUDA events, L2 flushed)
#   bench_decode_gpu  the paged decode benchmarks
#   bench_variants_gpu  the fused variants (ResFormer, Gated Attention, MEA) beside vanilla
#   flash_check_gpu   the flash forward and backward against fp64 through the dispatch and, on
#                     an H100, the sm_90a kernels explicitly (tests/kernels/flash_check.cpp)
# into OUT (default build-gpu/), with Google Benchmark's shared library beside them (rpath
# $ORIGIN), so that the folder runs on a machine without it; well under 60 MB.
#
# Usage: scripts/build_gpu.sh [--arch 80|90|80,90] [--out DIR] [-j N]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
archs=80,90
out="$repo/build-gpu"
jobs=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) archs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -j) jobs=$2; shift 2 ;;
    *) echo "build_gpu: unknown argument $1" >&2; exit 64 ;;
  esac
done
command -v nvcc >/dev/null || { echo "build_gpu: nvcc is not on the PATH" >&2; exit 2; }

# sm_90 builds the sm_90a target (wgmma-capable SASS for an H100); others their plain sm_XY.
gencode=()
IFS=, read -ra list <<<"$archs"
for a in "${list[@]}"; do
  if [ "$a" = 90 ]; then gencode+=("-gencode=arch=compute_90a,code=sm_90a")
  else gencode+=("-gencode=arch=compute_${a},code=sm_${a}"); fi
done

mkdir -p "$out"
common=(-std=c++20 -O3 "${gencode[@]}" -I"$repo/include" -Xlinker -rpath -Xlinker '$ORIGIN')
log() { echo "build_gpu: $*"; }

pids=()
build() {  # name, then nvcc arguments
  local name=$1; shift
  ( start=$(date +%s)
    nvcc "${common[@]}" -o "$out/$name" "$@"
    log "$name built in $(( $(date +%s) - start )) s" ) &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
}
build layer_stack_gpu -x cu -I"$repo/tests/variants" "$repo/examples/layer_stack/layer_stack.cpp"
build bench_flash_gpu "$repo/benchmarks/bench_flash_gpu.cu" -lbenchmark -lpthread
build bench_variants_gpu "$repo/benchmarks/bench_variants_gpu.cu" -lbenchmark -lpthread
build bench_decode_gpu "$repo/benchmarks/bench_decode_gpu.cu" -lbenchmark -lpthread
build flash_check_gpu -x cu -I"$repo/tests/kernels" "$repo/tests/kernels/flash_check.cpp"
for p in "${pids[@]}"; do wait "$p"; done

# Google Benchmark's shared library travels with the binaries.
lib=$(ldd "$out/bench_flash_gpu" | awk '/libbenchmark/ {print $3; exit}')
# (ldd finds the bundle's own copy through $ORIGIN when an earlier build left one there.)
if [ -n "$lib" ] && [ -f "$lib" ] && [ "$(cd "$(dirname "$lib")" && pwd -P)" != "$(cd "$out" && pwd -P)" ]; then
  cp -L "$lib" "$out/"
fi
du -sh "$out" | sed 's/^/build_gpu: bundle /'
