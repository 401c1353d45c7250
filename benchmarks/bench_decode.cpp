// Decode over a paged KV cache: one new token per sequence against caches of `context` tokens in
// 16-token pages (a shuffled block table), bf16, 32 query over 8 KV heads of d = 128 (Llama-3-8B's
// attention), the split count planned for an H100's 132 SMs (plan_paged_attention). Counters:
// the cache bytes a step must read (cost::paged_attention_bytes, plus split_merge_bytes) as a
// rate, and that rate as a fraction of an H100 SXM's 3.35 TB/s of HBM bandwidth. One source, two
// executors (bench_common.hpp): the host build times the SIMT simulator (`simulator=1`: a
// measure of the simulator, not of a GPU); the nvcc build (strata_bench_decode_gpu) times each
// step with CUDA events after an L2 flush.
#include <strata/api/kv_cache.hpp>
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

void BM_PagedDecode(benchmark::State& state) {
  const int B = int(state.range(0)), ctx = int(state.range(1));
  const int pages_per_seq = (ctx + kPage - 1) / kPage, num_pages = B * pages_per_seq;
  const size_t cache_elems = size_t(num_pages) * kPage * kHk * kD;
  Buffer<bf16> kc(pattern(cache_elems, 7, 0.02f)), vc(pattern(cache_elems, 5, 0.1f));
  Buffer<bf16> q(pattern(size_t(B) * kH * kD, 13, 0.01f)), o(zeros<bf16>(size_t(B) * kH * kD));
  Buffer<float> lse(zeros<float>(size_t(B) * kH));
  std::vector<int> table(static_cast<size_t>(num_pages)), lens(static_cast<size_t>(B), ctx),
      cu(static_cast<size_t>(B) + 1);
  std::iota(table.begin(), table.end(), 0);
  uint64_t seed = 1;  // a fixed shuffle: pages scattered over the cache
  for (size_t i = table.size(); i > 1; --i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    std::swap(table[i - 1], table[(seed >> 33) % i]);
  }
  std::iota(cu.begin(), cu.end(), 0);
  Buffer<int> table_d(table), lens_d(lens), cu_d(cu);

  api::PagedAttentionShape shape{B, B, 1, ctx, kH, kHk, kD};
  api::PagedAttentionPlan plan;
  if (!api::plan_paged_attention(shape, kSms, &plan).ok()) state.SkipWithError("plan failed");
  Buffer<float> work(zeros<float>(plan.workspace_bytes / 4 + 4));

  api::PagedAttentionParams p;
  api::KvCache& c = p.cache;
  c.dtype = strata::attention::Dtype::kBf16, c.h_k = kHk, c.d = kD, c.page_size = kPage;
  c.num_pages = num_pages, c.indexing = api::CacheIndexing::kBlockTable, c.b = B;
  c.k = strata::attention::nhd_cache(kc.get(), kPage, kHk, kD);
  c.v = strata::attention::nhd_cache(vc.get(), kPage, kHk, kD);
  c.cache_seqlens = lens_d.get(), c.block_table = table_d.get();
  c.block_table_stride = c.max_pages = pages_per_seq;
  p.q = q.get(), p.o = o.get(), p.lse = lse.get();
  p.q_row_stride = p.o_row_stride = int64_t(kH) * kD, p.q_head_stride = p.o_head_stride = kD;
  p.cu_seqlens_q = cu_d.get(), p.total_q = B, p.max_seqlen_q = 1, p.h = kH;
  p.softmax_scale = 1.f / std::sqrt(float(kD));
  p.num_splits = plan.num_splits, p.workspace = work.get(),
  p.workspace_bytes = plan.workspace_bytes;
  const double seconds = time_iterations(state, [&] { return api::paged_attention(p, plan); });

  const double bytes =
      double(B) * double(strata::cost::paged_attention_bytes(1, ctx, kH, kHk, kD)) +
      double(strata::cost::split_merge_bytes(B, kH, kD, plan.num_splits));
  const double rate = seconds > 0 ? bytes * double(state.iterations()) / seconds : 0;
  state.counters["GB/s"] = rate * 1e-9;
  state.counters["H100_HBM_%"] = rate / kH100HbmBytesPerSecond * 100.0;
  state.counters["splits"] = plan.num_splits;
  state.counters["simulator"] = kSimulator;
}
BENCHMARK(BM_PagedDecode)->Apply(shapes);

}  // namespace

int main(int argc, char** argv) {
  return strata_bench::run_main(argc, argv, "strata_bench_decode");
}
