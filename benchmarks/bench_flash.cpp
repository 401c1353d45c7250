// The flash-attention core's benchmarks: forward and backward over sequence lengths and head
// dims, FLOPs by FlashAttention's convention (strata/cost: 4·B·T²·H·d forward, 2.5x that
// backward, halved when causal) as a rate counter. One source, two executors:
//  - built by the host compiler (strata_bench_flash, the only kind this machine can run), every
//    number is a CPU timing of the SIMT simulator, labelled `simulator=1`: a measure of the
//    simulator, not of the kernel's speed on a GPU;
//  - built by nvcc (strata_bench_flash_gpu: -DSTRATA_BUILD_GPU_BENCHMARKS=ON), operands live in
//    device memory, every iteration is timed with CUDA events around the launch, and an L2-sized
//    buffer is overwritten before it so that no iteration reads operands the previous one left in
//    L2 (FlashAttention's benchmarks do the same); `simulator=0`.
#include <strata/api/flash.hpp>
#include <strata/cost/attention.hpp>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"

#include <cmath>
#include <cstdio>
#include <vector>

namespace {

namespace att = strata::attention;
using bf16 = __nv_bfloat16;

using namespace strata_bench;

/// Shapes: (seqlen, head dim, causal). The simulator runs small ones; a GPU the peers' range.
void shapes(benchmark::internal::Benchmark* b) {
  if (kSimulator)
    b->ArgsProduct({{128, 512}, {64, 128}, {0, 1}});
  else
    b->ArgsProduct({{512, 1024, 2048, 4096, 8192, 16384}, {64, 96, 128}, {0, 1}})->UseManualTime();
  b->ArgNames({"seqlen", "d", "causal"})->Unit(benchmark::kMillisecond);
}

/// Batch and heads of a shape: in the simulator one sequence of 4 query heads over 2 KV heads; on
/// a GPU FlashAttention's benchmark shape, 16k tokens per batch (batch = 16384 / T) and hidden
/// 2048 (heads = 2048 / d), MHA, which scripts/sdpa_baseline.py gives PyTorch's SDPA too.
struct Geometry {
  int b, h, h_k;
};
Geometry geometry(int T, int d) {
  if (kSimulator) return {1, 4, 2};
  return {T < 16384 ? 16384 / T : 1, 2048 / d, 2048 / d};
}

/// The operands of a shape (Geometry's batch and heads), bf16, shared by every benchmark of the
/// same size (bench_common.hpp: shared_operand); the forward reads q, k, v and writes o and lse,
/// the backward reads those and dout and writes dq, dk, dv, dsum (and dq_accum in fast mode).
att::FlashBwdParams flash_params(int T, int d, bool causal) {
  const auto [B, h, h_k] = geometry(T, d);
  const size_t nq = size_t(B) * T * h * d, nk = size_t(B) * T * h_k * d;
  const size_t rows = size_t(B) * T * h;
  att::FlashBwdParams p;
  p.q = shared_pattern("q", nq, 13, 0.01f), p.k = shared_pattern("k", nk, 7, 0.02f);
  p.v = shared_pattern("v", nk, 5, 0.1f), p.o = shared_pattern("o", nq, 1, 0.f);
  p.dout = shared_pattern("dout", nq, 11, 0.03f, -0.1f);
  p.dq = shared_pattern("dq", nq, 1, 0.f), p.dk = shared_pattern("dk", nk, 1, 0.f);
  p.dv = shared_pattern("dv", nk, 1, 0.f);
  p.lse = shared_fill("lse", rows), p.dsum = shared_fill("dsum", rows);
  p.dtype = att::Dtype::kBf16;
  p.b = B, p.h = h, p.h_k = h_k, p.d = d, p.seqlen_q = p.seqlen_k = T;
  p.total_q = p.total_k = B * T;
  p.q_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = int64_t(h) * d;
  p.q_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = d;
  p.k_row_stride = p.v_row_stride = p.dk_row_stride = p.dv_row_stride = int64_t(h_k) * d;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = d;
  p.softmax_scale = 1.f / std::sqrt(float(d));
  p.is_causal = causal;
  return p;
}

/// Forward, bf16.
void BM_FlashForward(benchmark::State& state) {
  const int T = int(state.range(0)), d = int(state.range(1));
  const bool causal = state.range(2) != 0;
  const att::FlashBwdParams p = flash_params(T, d, causal);
  time_iterations(state, [&] { return strata::api::flash_fwd(p); });
  report_flops(state, strata::cost::attention_forward_flops(p.b, T, p.h, d, causal));
}
BENCHMARK(BM_FlashForward)->Apply(shapes);

/// Backward (preprocess, dQ, dK/dV) after one forward, same shapes; FLOPs by FlashAttention's
/// convention (2.5 x the forward) in both modes, although the sm_80 deterministic mode issues 7
/// matrix products per tile pair (its dQ kernel recomputes S and dP) and the fast mode 5. The dQ
/// accumulator is what the API asks for on this device: on an sm_90a one, both modes run the
/// sm_90a backward (5 products; dQ slices in the deterministic mode).
void flash_backward(benchmark::State& state, bool deterministic) {
  const int T = int(state.range(0)), d = int(state.range(1));
  const bool causal = state.range(2) != 0;
  att::FlashBwdParams p = flash_params(T, d, causal);
  p.deterministic = deterministic;
  if (const size_t accum = strata::api::flash_bwd_dq_accum_bytes(p); accum > 0) {
    p.dq_accum = shared_fill("dq_accum", accum / 4);
    p.dq_accum_bytes = accum;
  }
  if (!strata::api::flash_fwd(p).ok()) state.SkipWithError("flash_fwd failed");
  time_iterations(state, [&] { return strata::api::flash_bwd(p); });
  report_flops(state, strata::cost::attention_backward_flops(p.b, T, p.h, d, causal));
}

/// The default, deterministic backward.
void BM_FlashBackward(benchmark::State& state) {
  flash_backward(state, true);
}
BENCHMARK(BM_FlashBackward)->Apply(shapes);

/// FlashAttention-2's fast mode (FlashBwdParams::deterministic = false: dQ by fp32 atomics).
void BM_FlashBackwardFast(benchmark::State& state) {
  flash_backward(state, false);
}
BENCHMARK(BM_FlashBackwardFast)->Apply(shapes);

}  // namespace

int main(int argc, char** argv) {
  return strata_bench::run_main(argc, argv, "strata_bench_flash");
}
