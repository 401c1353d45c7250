// Traffic of the inference kernels, counted by the simulator's traffic build against strata/cost:
// the KV-cache append reads each slot once and moves each stored row once (exactly the minimum);
// decode attention (vanilla and MEA's component-head cache) reads the cache once.
#include <strata/api/kv_cache.hpp>
#include <strata/api/mea_decode.hpp>
#include <strata/cost/decode.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common.hpp"

static_assert(strata::sim::traffic::kEnabled, "tests/traffic must be compiled as a traffic build");

namespace {

namespace traffic = strata::sim::traffic;

template <class T>
void watch(std::vector<T>& v) {
  traffic::watch(v.data(), v.size() * sizeof(T));
}

/// Appends `total` tokens (every third one padding, slot -1) to a paged cache of 16-token pages,
/// K in NHD and V in HND pages, and compares the bytes moved with cost::kv_append_bytes.
enum class AppendKind { kVanilla, kResFormerScalar, kResFormerHeadwise, kSVFormer };

template <int D>
void check_append(int total, int h_k, AppendKind kind = AppendKind::kVanilla) {
  strata_test::SimGuard guard;
  traffic::clear();
  const int page = 16, pages = total / page + 2;
  std::vector<uint16_t> kc(size_t(pages) * page * h_k * D), vc(kc.size());
  std::vector<uint16_t> kn(size_t(total) * h_k * D, 1), vn(kn.size(), 2);
  std::vector<int64_t> slots(static_cast<size_t>(total));
  int64_t stored = 0;
  for (int t = 0; t < total; ++t) {
    slots[size_t(t)] = t % 3 == 2 ? -1 : int64_t(pages) * page - 1 - t;  // reversed slots
    stored += slots[size_t(t)] >= 0;
  }
  strata::api::KvAppendParams p;
  strata::api::KvCache& c = p.cache;
  c.h_k = h_k, c.d = D, c.page_size = page, c.num_pages = pages;
  c.k = strata::attention::nhd_cache(kc.data(), page, h_k, D);
  c.v = strata::attention::hnd_cache(vc.data(), page, h_k, D);
  p.k_new = kn.data(), p.v_new = vn.data();
  p.k_new_row_stride = p.v_new_row_stride = int64_t(h_k) * D;
  p.k_new_head_stride = p.v_new_head_stride = D;
  p.total_new = total, p.slot_mapping = slots.data();
  std::vector<uint16_t> v0(kn.size(), 3);
  std::vector<float> ls(size_t(h_k), 0.5f), lf(size_t(h_k), 0.25f);
  const bool headwise = kind == AppendKind::kResFormerHeadwise;
  if (kind == AppendKind::kResFormerScalar || headwise) {
    p.v_first_new = v0.data(), p.v_first_new_row_stride = int64_t(h_k) * D;
    p.v_first_new_head_stride = D, p.lambda_self = ls.data(), p.lambda_first = lf.data();
    p.granularity =
        headwise ? strata::core::MixGranularity::kHeadwise : strata::core::MixGranularity::kScalar;
  }
  if (kind == AppendKind::kSVFormer) p.store_v = false;
  for (auto* v : {&kc, &vc, &kn, &vn, &v0}) watch(*v);
  watch(slots), watch(ls), watch(lf);
  strata::sim::reset_counters();
  ASSERT_TRUE(strata::api::kv_append(p).ok());
  const strata::sim::Counters n = strata::sim::total_counters();
  const int64_t moved = int64_t(n.global_load_bytes + n.global_store_bytes);
  int64_t minimum = strata::cost::kv_append_bytes(total, stored, h_k, D);
  if (kind == AppendKind::kResFormerScalar || headwise)
    minimum += strata::cost::value_residual_append_extra_bytes(stored, h_k, D, headwise);
  if (kind == AppendKind::kSVFormer)
    minimum -= strata::cost::svformer_append_saved_bytes(stored, h_k, D);
  EXPECT_EQ(moved, minimum) << "D = " << D << ", h_k = " << h_k << ", " << total << " tokens";
  traffic::clear();
}

/// MEA's decode instead of vanilla attention: the cache holds h_c component heads, the tiles
/// compose h_kv composite heads for the h query heads (site KeyValue or Output).
struct MeaSpec {
  bool on = false;
  bool kv_site = true;
  int h = 8, h_kv = 4, h_c = 2;
};

/// Decode steps (one new token per sequence, GQA 4) over a paged cache (block table, 16-token
/// pages, shuffled): bytes moved against cost::paged_attention_bytes (MEA:
/// mea_paged_attention_bytes), unsplit and with 4 splits (whose fp32 partials and merge,
/// cost::split_merge_bytes, are part of the minimum then). The page indices and lengths the
/// kernels read are counted as overhead.
template <int D>
void check_decode(int splits, const MeaSpec& mea = {}) {
  strata_test::SimGuard guard;
  traffic::clear();
  const int h = mea.on ? mea.h : 8, h_k = mea.on ? mea.h_c : 2, page = 16;
  const std::vector<int> lens = {100, 700, 1500, 64};
  const int B = int(lens.size());
  std::vector<int> seqlens = lens, table, cu = {0};
  int pages = 0;
  for (int n : lens) pages += (n + page - 1) / page;
  const int max_pages = (1500 + page - 1) / page;
  table.assign(size_t(B) * max_pages, 0);
  int next = pages - 1;
  for (int s = 0; s < B; ++s) {
    for (int j = 0; j < (lens[size_t(s)] + page - 1) / page; ++j)
      table[size_t(s) * max_pages + size_t(j)] = next--;  // pages in reverse order
    cu.push_back(s + 1);
  }
  std::vector<uint16_t> kc(size_t(pages) * page * h_k * D, 0x3c00), vc(kc.size(), 0x3c00);
  std::vector<uint16_t> q(size_t(B) * h * D, 0x3c00), o(q.size());
  std::vector<float> lse(size_t(B) * h);
  strata::api::MeaPagedAttentionParams mp;
  strata::api::PagedAttentionParams& p = mp.attn;
  strata::api::KvCache& c = p.cache;
  c.dtype = strata::attention::Dtype::kFp16, c.h_k = h_k, c.d = D, c.page_size = page;
  c.num_pages = pages, c.b = B, c.indexing = strata::api::CacheIndexing::kBlockTable;
  c.k = strata::attention::nhd_cache(kc.data(), page, h_k, D);
  c.v = strata::attention::hnd_cache(vc.data(), page, h_k, D);
  c.cache_seqlens = seqlens.data(), c.block_table = table.data(), c.max_pages = max_pages;
  c.block_table_stride = max_pages;
  p.q = q.data(), p.q_row_stride = h * D, p.q_head_stride = D;
  p.o = o.data(), p.o_row_stride = h * D, p.o_head_stride = D, p.lse = lse.data();
  p.cu_seqlens_q = cu.data(), p.total_q = B, p.max_seqlen_q = 1, p.h = h;
  p.softmax_scale = 0.125f, p.num_splits = splits;
  std::vector<float> work(strata::api::workspace_bytes(p) / 4 + 1);
  p.workspace = work.data(), p.workspace_bytes = work.size() * sizeof(float);
  // MEA's parameters: A^K, A^V, and the site's GroupNorm gains
  std::vector<float> a(size_t(2) * mea.h_c * mea.h_kv, 0.5f);
  std::vector<float> gains(size_t(4) * std::max(mea.h_kv, mea.h) * D, 1.f);
  mp.h_kv = mea.h_kv;
  mp.options.site =
      mea.kv_site ? strata::core::NormSite::kKeyValue : strata::core::NormSite::kOutput;
  mp.w.a_k = a.data(), mp.w.a_v = a.data() + a.size() / 2;
  const size_t g = gains.size() / 4;
  mp.w.gamma_k = mp.w.gamma_o = gains.data(), mp.w.beta_k = mp.w.beta_o = gains.data() + g;
  mp.w.gamma_v = gains.data() + 2 * g, mp.w.beta_v = gains.data() + 3 * g;
  for (auto* v : {&kc, &vc, &q, &o}) watch(*v);
  for (auto* v : {&lse, &work, &a, &gains}) watch(*v);
  for (auto* v : {&seqlens, &table, &cu}) watch(*v);  // page indices count as overhead
  strata::sim::reset_counters();
  ASSERT_TRUE(
      (mea.on ? strata::api::mea_paged_attention(mp) : strata::api::paged_attention(p)).ok());
  const strata::sim::Counters n = strata::sim::total_counters();
  const int64_t moved = int64_t(n.global_load_bytes + n.global_store_bytes);
  int64_t minimum = 0;
  for (int len : lens)
    minimum += mea.on ? strata::cost::mea_paged_attention_bytes(1, len, h, mea.h_kv, mea.h_c, D,
                                                                mea.kv_site, splits)
                      : strata::cost::paged_attention_bytes(1, len, h, h_k, D);
  minimum += strata::cost::split_merge_bytes(B, h, D, splits);
  const double ratio = double(moved) / double(minimum);
  const std::string what = std::string(mea.on ? (mea.kv_site ? "MEA kv " : "MEA output ") : "") +
                           "decode D = " + std::to_string(D) + ", " + std::to_string(splits) +
                           " split(s)";
  if (std::getenv("STRATA_VERBOSE")) std::printf("%s: %.4fx the minimum\n", what.c_str(), ratio);
  EXPECT_GE(ratio, 1.0) << what;
  EXPECT_LE(ratio, 1.05) << what;
  traffic::clear();
}

TEST(DecodeTraffic, DecodeReadsTheCacheOnce) {
  check_decode<64>(1);
  check_decode<128>(1);
  check_decode<64>(4);
}

/// MEA reads each component row of the cache once for all composite heads: 8 query heads over 4
/// composite heads from 2 components (16 keys a tile), and 32 heads from 16 components (2 keys
/// a tile), at both sites, unsplit and with 4 splits.
TEST(DecodeTraffic, MeaDecodeReadsTheComponentCacheOnce) {
  for (bool kv : {true, false}) {
    check_decode<64>(1, {true, kv, 8, 4, 2});
    check_decode<128>(4, {true, kv, 8, 4, 2});
    check_decode<64>(1, {true, kv, 32, 32, 16});
  }
}

/// The standalone merge of attention states (cascade) reads each state's O row and LSE once and
/// writes the merged row and LSE once: exactly the minimum, also in place.
TEST(DecodeTraffic, MergeStatesMovesExactlyTheMinimum) {
  strata_test::SimGuard guard;
  traffic::clear();
  const int total = 6, h = 4, d = 64, n = 3;
  std::vector<std::vector<uint16_t>> o(n, std::vector<uint16_t>(size_t(total) * h * d, 0x3c00));
  std::vector<std::vector<float>> lse(n, std::vector<float>(size_t(total) * h, 0.5f));
  std::vector<uint16_t> out(o[0].size());
  std::vector<float> out_lse(lse[0].size());
  strata::api::MergeStatesParams p;
  p.dtype = strata::attention::Dtype::kFp16, p.total = total, p.h = h, p.d = d, p.num_states = n;
  for (int i = 0; i < n; ++i) {
    p.states[i] = {o[size_t(i)].data(), h * d, d, lse[size_t(i)].data()};
    watch(o[size_t(i)]), watch(lse[size_t(i)]);
  }
  watch(out), watch(out_lse);
  p.o = out.data(), p.o_row_stride = h * d, p.o_head_stride = d, p.lse = out_lse.data();
  const int64_t rows = int64_t(total) * h, minimum = (n + 1) * rows * (int64_t(d) * 2 + 4);
  for (bool in_place : {false, true}) {
    if (in_place) p.o = o[0].data(), p.lse = lse[0].data();
    strata::sim::reset_counters();
    ASSERT_TRUE(strata::api::merge_attention_states(p).ok());
    const strata::sim::Counters c = strata::sim::total_counters();
    EXPECT_EQ(int64_t(c.global_load_bytes + c.global_store_bytes), minimum)
        << (in_place ? "in place" : "out of place");
  }
  traffic::clear();
}

TEST(DecodeTraffic, KvAppendMovesExactlyTheMinimum) {
  check_append<64>(100, 8);
  check_append<96>(37, 2);
  check_append<128>(64, 1);
}

TEST(DecodeTraffic, VariantAppendsMoveExactlyTheirMinimum) {
  // ResFormer reads layer 0's V row and the lambdas once per stored token; SVFormer skips V
  for (AppendKind k :
       {AppendKind::kResFormerScalar, AppendKind::kResFormerHeadwise, AppendKind::kSVFormer}) {
    check_append<64>(100, 8, k);
    check_append<96>(37, 3, k);
    check_append<128>(64, 1, k);
  }
}

}  // namespace
