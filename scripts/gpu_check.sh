#!/usr/bin/env bash
# The one-command GPU check, for the day a GPU is at hand (no network; at most about 8 minutes with
# the bundle, each step under its own timeout; a build on the GPU machine adds up to 7):
#   1. binaries: the bundle scripts/build_gpu.sh left in build-gpu/ (built here, carried over),
#      or, without one, the same build on this machine with all its cores;
#   2. correctness on the GPU: every method's stack forward and backward against fp64
#      (layer_stack_gpu: Depth-Attention, ResFormer/SVFormer, ExoFormer, MEA, Gated Attention),
#      and the flash forward and backward through the dispatch and, on an H100, the sm_90a kernels
#      (flash_check_gpu);
#   3. compute-sanitizer memcheck and racecheck on the same small stacks (every kernel family
#      they launch: token-local passes, flash forward, backward preprocess, dQ, dK/dV);
#   4. benchmarks: Strata's flash forward and backward (deterministic and fast mode) at 1k-16k
#      tokens, d = 64/96/128, causal and not (bench_flash_gpu); the fused variants beside vanilla
#      at the same shapes (bench_variants_gpu); the paged decode step (bench_decode_gpu, batch
#      1-256 over 512-32k cached tokens, and MEA's virtual-head decode); then PyTorch's
#      scaled_dot_product_attention through its flash and cuDNN backends at the flash shapes, and
#      at the decode shapes over a contiguous cache, in the same run (scripts/sdpa_baseline.py);
#   5. the tables of TFLOP/s and ratios, printed last, and JSON in the output folder.
# Without a GPU it refuses at once (exit 2) and runs nothing. A failed step does not stop the
# later ones; the exit status is non-zero if any failed.
#
# Usage: scripts/gpu_check.sh [--bundle DIR] [--out DIR]
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bundle="$repo/build-gpu"
out="${OUT:-$repo/gpu_check_out}"
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) bundle=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 64 ;;
  esac
done

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no GPU here (nvidia-smi is missing or lists no device); nothing was run." >&2
  echo "gpu_check: without a GPU, ctest runs every kernel in the simulator." >&2
  exit 2
fi

mkdir -p "$out"
t0=$(date +%s)
failed=()
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
phase() { echo; echo "== gpu_check [$(( $(date +%s) - t0 )) s] $*"; }
step() {  # name, timeout in seconds, command...
  local name=$1 limit=$2; shift 2
  if timeout "$limit" "$@"; then echo "gpu_check: $name: ok"
  else echo "gpu_check: $name: FAILED (exit $?)"; failed+=("$name"); fi
}

phase "GPU: $gpu (sm_$cc); $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1) driver; nvcc $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
nvidia-smi --query-gpu=clocks.max.sm,clocks.max.mem,power.limit,memory.total --format=csv,noheader |
  sed 's/^/gpu_check: max SM clock, max memory clock, power limit, memory: /'
usable() {  # the bundle's binaries exist and load here (a bundle built on another system may not)
  [ -x "$bundle/layer_stack_gpu" ] && [ -x "$bundle/bench_flash_gpu" ] &&
    [ -x "$bundle/flash_check_gpu" ] &&
    [ -x "$bundle/bench_variants_gpu" ] && [ -x "$bundle/bench_decode_gpu" ] &&
    "$bundle/bench_variants_gpu" --benchmark_list_tests=true >/dev/null 2>&1 &&
    { ! command -v cuobjdump >/dev/null 2>&1 ||  # and hold SASS for this GPU (sm_90a for sm_90)
      cuobjdump --list-elf "$bundle/bench_flash_gpu" 2>/dev/null | grep -q "sm_${cc}"; }
}
if ! usable; then
  phase "no usable bundle in $bundle: building for sm_$cc with $(nproc) cores"
  bundle="$out/bin"
  step build 420 bash "$repo/scripts/build_gpu.sh" --arch "$cc" --out "$bundle"
fi

phase "correctness: every method's stack against fp64 on the GPU"
step correctness 45 "$bundle/layer_stack_gpu"
phase "correctness: the flash forward against fp64 (the sm_90a kernel on an H100)"
step flash-check 60 "$bundle/flash_check_gpu"

if command -v compute-sanitizer >/dev/null 2>&1; then
  phase "compute-sanitizer memcheck"
  step memcheck 70 compute-sanitizer --tool memcheck --error-exitcode 9 "$bundle/layer_stack_gpu"
  phase "compute-sanitizer racecheck"
  step racecheck 80 compute-sanitizer --tool racecheck --error-exitcode 9 "$bundle/layer_stack_gpu"
  phase "compute-sanitizer memcheck and racecheck of the flash forward (sm_90a on an H100)"
  step flash-memcheck 90 compute-sanitizer --tool memcheck --error-exitcode 9 "$bundle/flash_check_gpu" --quick
  step flash-racecheck 120 compute-sanitizer --tool racecheck --error-exitcode 9 "$bundle/flash_check_gpu" --quick
else
  echo "gpu_check: compute-sanitizer is not installed: sanitizer steps skipped"
  failed+=("sanitizer-missing")
fi

phase "Strata flash benchmarks (bench_flash_gpu)"
step strata-bench 120 "$bundle/bench_flash_gpu" \
  --benchmark_filter='seqlen:(1024|2048|4096|8192|16384)/' --benchmark_min_time=0.05 \
  --benchmark_out="$out/strata_flash.json" --benchmark_out_format=json

phase "Strata's fused variants beside vanilla (bench_variants_gpu)"
step variants-bench 60 "$bundle/bench_variants_gpu" --benchmark_min_time=0.05 \
  --benchmark_out="$out/strata_variants.json" --benchmark_out_format=json

phase "Strata's paged decode (bench_decode_gpu)"
# (the 32k-token contexts at batch 1 and 16 only: filling a 16 GiB cache on the host takes longer
# than timing its step; MEA's decode, still on the CUDA cores, at its small shapes only: its
# 64 x 8k step takes 0.12 s, and the whole list ran past this step's limit on an H200, cutting
# the JSON the baseline's shapes are read from)
step decode-bench 120 "$bundle/bench_decode_gpu" --benchmark_min_time=0.02 \
  --benchmark_filter='BM_PagedDecode/batch:[0-9]+/context:(512|2048|8192)/|BM_PagedDecode/batch:(1|16)/context:32768/|BM_MeaDecode/batch:(1|16)/context:(512|2048)/' \
  --benchmark_out="$out/strata_decode.json" --benchmark_out_format=json
# The decode shapes bench_decode_gpu ran, for the baseline's contiguous-cache rows.
decode_shapes=$(python3 -c '
import json, re, sys
try: names = [b["name"] for b in json.load(open(sys.argv[1]))["benchmarks"]]
except Exception: names = []
print(",".join(sorted({"%s:%s" % m.groups() for n in names for m in [re.match(r"BM_PagedDecode/batch:(\d+)/context:(\d+)", n)] if m})))
' "$out/strata_decode.json")

phase "PyTorch SDPA baselines (flash, cuDNN; decode also memory-efficient)"
step sdpa 120 python3 "$repo/scripts/sdpa_baseline.py" --decode "$decode_shapes" --out "$out/sdpa.json"

phase "report"
python3 "$repo/scripts/gpu_report.py" --strata "$out/strata_flash.json" --sdpa "$out/sdpa.json" \
  --variants "$out/strata_variants.json" --decode "$out/strata_decode.json" \
  --gpu "$gpu" --out "$out/gpu_check.json" || failed+=("report")
echo
echo "gpu_check: $(( $(date +%s) - t0 )) s; JSON in $out"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "gpu_check: failed steps: ${failed[*]}"
  exit 1
fi
echo "gpu_check: every step passed"
