// Decode over a paged KV cache: one new token per sequence against caches of `context` tokens in
// 16-token pages (a shuffled block table), bf16, 32 query over 8 KV heads of d = 128 (Llama-3-8B's
// attention), the split count planned for an H100's 132 SMs (plan_paged_attention). Counters:
// the cache bytes a step must read (cost::paged_attention_bytes, plus split_merge_bytes) as a
// rate, and that rate as a fraction of an H100 SXM's 3.35 TB/s of HBM bandwidth. One source, two
// executors (bench_common.hpp): the host build times the SIMT simulator (`simulator=1`: a
// measure of the simulator, not of a GPU); the nvcc build (strata_bench_decode_gpu) times each
// step with CUDA events after an L2 flush. BM_MeaDecode serves MEA's virtual heads from a cache
// of half the heads (strata/variants/mea_decode.cuh).
#include <strata/api/kv_cache.hpp>
#include <strata/api/mea_decode.hpp>
#include <strata/cost/decode.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "bench_common.hpp"

namespace {

using namespace strata_bench;
namespace api = strata::api;
using bf16 = __nv_bfloat16;

constexpr int kH = 32, kHk = 8, kD = 128, kPage = 16, kSms = 132;
constexpr double kH100HbmBytesPerSecond = 3.35e12;

/// (batch, context). The simulator runs small ones; a GPU batch 1-256 over 512-32k tokens (up
/// to 16 GiB of cache).
void shapes(benchmark::internal::Benchmark* b) {
  if (kSimulator) {
    b->ArgsProduct({{1, 4}, {512}});
  } else {
    for (int batch : {1, 16, 64, 256})
      for (int ctx : {512, 2048, 8192, 32768})
        if (int64_t(batch) * ctx * kHk * kD * 2 * 2 <= (int64_t(16) << 30)) b->Args({batch, ctx});
    b->UseManualTime();
  }
  b->ArgNames({"batch", "context"})->Unit(benchmark::kMicrosecond);
}

/// A decode step's operands: B sequences of `ctx` cached tokens with h_k heads in 16-token
/// pages of a shuffled block table, one new token per sequence with h query heads, and the
/// attention params over them (without splits).
struct DecodeProblem {
  int pages_per_seq, num_pages;
  Buffer<bf16> kc, vc, q, o;
  Buffer<float> lse;
  Buffer<int> table_d, lens_d, cu_d;
  api::PagedAttentionParams p;

  static std::vector<int> shuffled_pages(int n) {
    std::vector<int> t(static_cast<size_t>(n));
    std::iota(t.begin(), t.end(), 0);
    uint64_t seed = 1;  // a fixed shuffle: pages scattered over the cache
    for (size_t i = t.size(); i > 1; --i) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      std::swap(t[i - 1], t[(seed >> 33) % i]);
    }
    return t;
  }
  static std::vector<int> iota_vec(int n) {
    std::vector<int> v(static_cast<size_t>(n));
    std::iota(v.begin(), v.end(), 0);
    return v;
  }

  DecodeProblem(int B, int ctx, int h, int h_k)
      : pages_per_seq((ctx + kPage - 1) / kPage),
        num_pages(B * pages_per_seq),
        kc(pattern(size_t(num_pages) * kPage * h_k * kD, 7, 0.02f)),
        vc(pattern(size_t(num_pages) * kPage * h_k * kD, 5, 0.1f)),
        q(pattern(size_t(B) * h * kD, 13, 0.01f)),
        o(zeros<bf16>(size_t(B) * h * kD)),
        lse(zeros<float>(size_t(B) * h)),
        table_d(shuffled_pages(num_pages)),
        lens_d(std::vector<int>(static_cast<size_t>(B), ctx)),
        cu_d(iota_vec(B + 1)) {
    api::KvCache& c = p.cache;
    c.dtype = strata::attention::Dtype::kBf16, c.h_k = h_k, c.d = kD, c.page_size = kPage;
    c.num_pages = num_pages, c.indexing = api::CacheIndexing::kBlockTable, c.b = B;
    c.k = strata::attention::nhd_cache(kc.get(), kPage, h_k, kD);
    c.v = strata::attention::nhd_cache(vc.get(), kPage, h_k, kD);
    c.cache_seqlens = lens_d.get(), c.block_table = table_d.get();
    c.block_table_stride = c.max_pages = pages_per_seq;
    p.q = q.get(), p.o = o.get(), p.lse = lse.get();
    p.q_row_stride = p.o_row_stride = int64_t(h) * kD, p.q_head_stride = p.o_head_stride = kD;
    p.cu_seqlens_q = cu_d.get(), p.total_q = B, p.max_seqlen_q = 1, p.h = h;
    p.softmax_scale = 1.f / std::sqrt(float(kD));
  }
};

/// The rate counters of a step that must move `bytes`.
void rate_counters(benchmark::State& state, double seconds, double bytes, int splits) {
  const double rate = seconds > 0 ? bytes * double(state.iterations()) / seconds : 0;
  state.counters["GB/s"] = rate * 1e-9;
  state.counters["H100_HBM_%"] = rate / kH100HbmBytesPerSecond * 100.0;
  state.counters["splits"] = splits;
  state.counters["simulator"] = kSimulator;
}

void BM_PagedDecode(benchmark::State& state) {
  const int B = int(state.range(0)), ctx = int(state.range(1));
  DecodeProblem pr(B, ctx, kH, kHk);
  api::PagedAttentionShape shape{B, B, 1, ctx, kH, kHk, kD};
  api::PagedAttentionPlan plan;
  if (!api::plan_paged_attention(shape, kSms, &plan).ok()) state.SkipWithError("plan failed");
  Buffer<float> work(zeros<float>(plan.workspace_bytes / 4 + 4));
  api::PagedAttentionParams& p = pr.p;
  p.num_splits = plan.num_splits, p.workspace = work.get();
  p.workspace_bytes = plan.workspace_bytes;
  const double seconds = time_iterations(state, [&] { return api::paged_attention(p, plan); });
  rate_counters(state, seconds,
                double(B) * double(strata::cost::paged_attention_bytes(1, ctx, kH, kHk, kD)) +
                    double(strata::cost::split_merge_bytes(B, kH, kD, plan.num_splits)),
                plan.num_splits);
}
BENCHMARK(BM_PagedDecode)->Apply(shapes);

/// MEA decode with virtual heads, the paper's setting of a 50% smaller cache: 32 query and 32
/// composite heads rebuilt in the tile from H_c = 16 cached component heads, GroupNorm on K', V'
/// (site 0, with RoPE of each cached key) or on O (site 1). The bytes are
/// cost::mea_paged_attention_bytes (half of the vanilla MHA cache's); `compose_MAC/key` is the
/// composition's work per cached key (cost::mea_decode_compose_flops).
void BM_MeaDecode(benchmark::State& state) {
  constexpr int kMeaH = 32, kMeaHkv = 32, kMeaHc = 16;
  const int B = int(state.range(0)), ctx = int(state.range(1));
  const bool kv_site = state.range(2) == 0;
  DecodeProblem pr(B, ctx, kMeaH, kMeaHc);
  api::PagedAttentionShape shape{B, B, 1, ctx, kMeaH, kMeaHc, kD, kMeaHkv};
  api::PagedAttentionPlan plan;
  if (!api::plan_mea_paged_attention(shape, kSms, &plan).ok()) state.SkipWithError("plan failed");
  Buffer<float> work(zeros<float>(plan.workspace_bytes / 4 + 4));
  std::vector<float> a(size_t(kMeaHc) * kMeaHkv);
  for (size_t i = 0; i < a.size(); ++i)
    a[i] = strata::core::head_compose_init(kMeaHc, int(i) / kMeaHkv, int(i) % kMeaHkv);
  Buffer<float> a_d(a), ones(std::vector<float>(size_t(kMeaH) * kD, 1.f)),
      zero(zeros<float>(size_t(kMeaH) * kD));
  api::MeaPagedAttentionParams mp;
  mp.attn = pr.p;
  mp.attn.num_splits = plan.num_splits, mp.attn.workspace = work.get();
  mp.attn.workspace_bytes = plan.workspace_bytes;
  mp.h_kv = kMeaHkv;
  mp.options.site = kv_site ? strata::core::NormSite::kKeyValue : strata::core::NormSite::kOutput;
  mp.w.a_k = mp.w.a_v = a_d.get();
  mp.w.gamma_k = mp.w.gamma_v = mp.w.gamma_o = ones.get();
  mp.w.beta_k = mp.w.beta_v = mp.w.beta_o = zero.get();
  const double seconds = time_iterations(state, [&] { return api::mea_paged_attention(mp, plan); });
  rate_counters(state, seconds,
                double(B) * double(strata::cost::mea_paged_attention_bytes(
                                1, ctx, kMeaH, kMeaHkv, kMeaHc, kD, kv_site, plan.num_splits)) +
                    double(strata::cost::split_merge_bytes(B, kMeaH, kD, plan.num_splits)),
                plan.num_splits);
  state.counters["compose_MAC/key"] =
      double(strata::cost::mea_decode_compose_flops(kMeaH, kMeaHkv, kMeaHc, kD));
}
/// (batch, context, site): the simulator runs one small step per site.
void mea_shapes(benchmark::internal::Benchmark* b) {
  if (kSimulator) {
    b->ArgsProduct({{1}, {256}, {0, 1}});
  } else {
    for (int batch : {1, 16, 64})
      for (int ctx : {512, 2048, 8192, 32768})
        for (int site : {0, 1}) b->Args({batch, ctx, site});
    b->UseManualTime();
  }
  b->ArgNames({"batch", "context", "site"})->Unit(benchmark::kMicrosecond);
}
BENCHMARK(BM_MeaDecode)->Apply(mea_shapes);

}  // namespace

int main(int argc, char** argv) {
  return strata_bench::run_main(argc, argv, "strata_bench_decode");
}
