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

/// Forward, bf16 (Geometry's batch and heads).
void BM_FlashForward(benchmark::State& state) {
  const int T = int(state.range(0)), d = int(state.range(1));
  const auto [B, h, h_k] = geometry(T, d);
  const bool causal = state.range(2) != 0;
  const size_t nq = size_t(B) * T * h * d, nk = size_t(B) * T * h_k * d;
  Buffer<bf16> q(pattern(nq, 13, 0.01f)), k(pattern(nk, 7, 0.02f)), v(pattern(nk, 5, 0.1f)),
      o(zeros<bf16>(nq));
  Buffer<float> lse(zeros<float>(size_t(B) * T * h));
  att::FlashFwdParams p;
  p.q = q.get(), p.k = k.get(), p.v = v.get(), p.o = o.get(), p.lse = lse.get();
  p.dtype = att::Dtype::kBf16;
  p.b = B, p.h = h, p.h_k = h_k, p.d = d, p.seqlen_q = p.seqlen_k = T, p.total_q = B * T;
  p.q_row_stride = p.o_row_stride = int64_t(h) * d, p.q_head_stride = p.o_head_stride = d;
  p.k_row_stride = p.v_row_stride = int64_t(h_k) * d, p.k_head_stride = p.v_head_stride = d;
  p.softmax_scale = 1.f / std::sqrt(float(d));
  p.is_causal = causal;
  time_iterations(state, [&] { return strata::api::flash_fwd(p); });
  const double flops = strata::cost::attention_forward_flops(B, T, h, d, causal);
  state.counters["FLOP/s"] =
      benchmark::Counter(flops * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["simulator"] = kSimulator;
}
BENCHMARK(BM_FlashForward)->Apply(shapes);

/// Backward (preprocess, dQ, dK/dV) after one forward, same shapes; FLOPs by FlashAttention's
/// convention (2.5 x the forward), although this deterministic backward issues 7 matrix
/// products per tile pair where FlashAttention-2 issues 5 (dQ recomputes S and dP instead of
/// accumulating atomically).
void BM_FlashBackward(benchmark::State& state) {
  const int T = int(state.range(0)), d = int(state.range(1));
  const auto [B, h, h_k] = geometry(T, d);
  const bool causal = state.range(2) != 0;
  const size_t nq = size_t(B) * T * h * d, nk = size_t(B) * T * h_k * d;
  Buffer<bf16> q(pattern(nq, 13, 0.01f)), k(pattern(nk, 7, 0.02f)), v(pattern(nk, 5, 0.1f)),
      o(zeros<bf16>(nq)), dout(pattern(nq, 11, 0.03f, -0.1f)), dq(zeros<bf16>(nq)),
      dk(zeros<bf16>(nk)), dv(zeros<bf16>(nk));
  Buffer<float> lse(zeros<float>(size_t(B) * T * h)), dsum(zeros<float>(size_t(B) * T * h));
  att::FlashBwdParams p;
  p.q = q.get(), p.k = k.get(), p.v = v.get(), p.o = o.get(), p.lse = lse.get();
  p.dout = dout.get(), p.dq = dq.get(), p.dk = dk.get(), p.dv = dv.get(), p.dsum = dsum.get();
  p.dtype = att::Dtype::kBf16;
  p.b = B, p.h = h, p.h_k = h_k, p.d = d, p.seqlen_q = p.seqlen_k = T;
  p.total_q = p.total_k = B * T;
  p.q_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = int64_t(h) * d;
  p.q_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = d;
  p.k_row_stride = p.v_row_stride = p.dk_row_stride = p.dv_row_stride = int64_t(h_k) * d;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = d;
  p.softmax_scale = 1.f / std::sqrt(float(d));
  p.is_causal = causal;
  if (!strata::api::flash_fwd(p).ok()) state.SkipWithError("flash_fwd failed");
  time_iterations(state, [&] { return strata::api::flash_bwd(p); });
  const double flops = strata::cost::attention_backward_flops(B, T, h, d, causal);
  state.counters["FLOP/s"] =
      benchmark::Counter(flops * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["simulator"] = kSimulator;
}
BENCHMARK(BM_FlashBackward)->Apply(shapes);

}  // namespace

int main(int argc, char** argv) {
  return strata_bench::run_main(argc, argv, "strata_bench_flash");
}
