// The flash-attention core's benchmarks, written for GPU users: FLOPs by FlashAttention's
// convention (strata/cost: 4·B·T²·H·d forward, halved when causal) as a rate counter. This
// machine kind has no GPU: the binary is built by the host compiler and every number is a CPU
// timing of the SIMT simulator, labelled `simulator=1` — a measure of the simulator, not of the
// kernel's speed on a GPU. (The CUDA-event / L2-flush timing of a GPU build comes with the nvcc
// benchmark target.)
#include <strata/api/flash.hpp>
#include <strata/cost/attention.hpp>

#include <benchmark/benchmark.h>

#include <vector>

namespace {

namespace att = strata::attention;
using bf16 = __nv_bfloat16;

/// Forward, bf16, batch 1, 4 query heads over 2 KV heads: args (seqlen, head dim, causal).
void BM_FlashForward(benchmark::State& state) {
  const int T = int(state.range(0)), d = int(state.range(1)), h = 4, h_k = 2;
  const bool causal = state.range(2) != 0;
  std::vector<bf16> q(size_t(T) * h * d), k(size_t(T) * h_k * d), v(k.size()), o(q.size());
  for (size_t i = 0; i < q.size(); ++i)
    q[i] = strata::core::from_float<bf16>(float(i % 13) * 0.01f);
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = strata::core::from_float<bf16>(float(i % 7) * 0.02f);
    v[i] = strata::core::from_float<bf16>(float(i % 5) * 0.1f);
  }
  std::vector<float> lse(size_t(T) * h);
  att::FlashFwdParams p;
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.o = o.data(), p.lse = lse.data();
  p.dtype = att::Dtype::kBf16;
  p.b = 1, p.h = h, p.h_k = h_k, p.d = d, p.seqlen_q = p.seqlen_k = p.total_q = T;
  p.q_row_stride = p.o_row_stride = int64_t(h) * d, p.q_head_stride = p.o_head_stride = d;
  p.k_row_stride = p.v_row_stride = int64_t(h_k) * d, p.k_head_stride = p.v_head_stride = d;
  p.softmax_scale = 1.f / std::sqrt(float(d));
  p.is_causal = causal;
  for (auto _ : state)
    if (!strata::api::flash_fwd(p).ok()) state.SkipWithError("flash_fwd failed");
  const double flops = strata::cost::attention_forward_flops(1, T, h, d, causal);
  state.counters["FLOP/s"] =
      benchmark::Counter(flops * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["simulator"] = 1;
}
BENCHMARK(BM_FlashForward)
    ->ArgsProduct({{128, 512}, {64, 128}, {0, 1}})
    ->ArgNames({"seqlen", "d", "causal"})
    ->Unit(benchmark::kMillisecond);

/// Backward (preprocess, dQ, dK/dV) after one forward, same shapes; FLOPs by FlashAttention's
/// convention (2.5 x the forward), although this deterministic backward issues 7 matrix
/// products per tile pair where FlashAttention-2 issues 5 (dQ recomputes S and dP instead of
/// accumulating atomically).
void BM_FlashBackward(benchmark::State& state) {
  const int T = int(state.range(0)), d = int(state.range(1)), h = 4, h_k = 2;
  const bool causal = state.range(2) != 0;
  std::vector<bf16> q(size_t(T) * h * d), k(size_t(T) * h_k * d), v(k.size()), o(q.size()),
      dout(q.size()), dq(q.size()), dk(k.size()), dv(k.size());
  for (size_t i = 0; i < q.size(); ++i) {
    q[i] = strata::core::from_float<bf16>(float(i % 13) * 0.01f);
    dout[i] = strata::core::from_float<bf16>(float(i % 11) * 0.03f - 0.1f);
  }
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = strata::core::from_float<bf16>(float(i % 7) * 0.02f);
    v[i] = strata::core::from_float<bf16>(float(i % 5) * 0.1f);
  }
  std::vector<float> lse(size_t(T) * h), dsum(size_t(T) * h);
  att::FlashBwdParams p;
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.o = o.data(), p.lse = lse.data();
  p.dout = dout.data(), p.dq = dq.data(), p.dk = dk.data(), p.dv = dv.data(), p.dsum = dsum.data();
  p.dtype = att::Dtype::kBf16;
  p.b = 1, p.h = h, p.h_k = h_k, p.d = d, p.seqlen_q = p.seqlen_k = p.total_q = p.total_k = T;
  p.q_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = int64_t(h) * d;
  p.q_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = d;
  p.k_row_stride = p.v_row_stride = p.dk_row_stride = p.dv_row_stride = int64_t(h_k) * d;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = d;
  p.softmax_scale = 1.f / std::sqrt(float(d));
  p.is_causal = causal;
  if (!strata::api::flash_fwd(p).ok()) state.SkipWithError("flash_fwd failed");
  for (auto _ : state)
    if (!strata::api::flash_bwd(p).ok()) state.SkipWithError("flash_bwd failed");
  const double flops = strata::cost::attention_backward_flops(1, T, h, d, causal);
  state.counters["FLOP/s"] =
      benchmark::Counter(flops * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["simulator"] = 1;
}
BENCHMARK(BM_FlashBackward)
    ->ArgsProduct({{128, 512}, {64, 128}, {0, 1}})
    ->ArgNames({"seqlen", "d", "causal"})
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
