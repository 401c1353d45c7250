// The KV-cache descriptor (three indexing modes, NHD / HND pages, separate K and V) and the append
// kernel in the simulator: every new row lands bitwise at its slot, nothing else is written, and
// every bad field is a Status naming it with the cache untouched.
#include <strata/api/kv_cache.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <ostream>
#include <string>
#include <vector>

#include "../common/refusal.hpp"
#include "common.hpp"

namespace {

using strata::api::CacheIndexing;
using strata::api::CacheTensor;
using strata::api::KvAppendParams;
using strata::api::KvCache;
using strata::attention::cache_offset;
using strata::attention::Dtype;

constexpr uint16_t kPoison = 0xFFFF;  // NaN in bf16 and fp16

enum class Layout { kNHD, kHND };

CacheTensor tensor(std::vector<uint16_t>& buf, Layout l, int page_size, int h_k, int d) {
  return l == Layout::kNHD ? strata::attention::nhd_cache(buf.data(), page_size, h_k, d)
                           : strata::attention::hnd_cache(buf.data(), page_size, h_k, d);
}

TEST(KvCache, IndexingModesAddressTheSameSlots) {
  const int page = 16;
  const std::vector<int> lens = {0, 17, 40, 16};
  // physical pages in a shuffled order: sequence 1 owns 5, 2; sequence 2 owns 0, 7, 3; 3 owns 6
  const std::vector<std::vector<int>> pages = {{}, {5, 2}, {0, 7, 3}, {6}};
  std::vector<int> table(4 * 3, -1), indptr = {0}, indices, last;
  for (int s = 0; s < 4; ++s) {
    for (size_t j = 0; j < pages[size_t(s)].size(); ++j)
      table[size_t(s) * 3 + j] = pages[size_t(s)][j];
    indices.insert(indices.end(), pages[size_t(s)].begin(), pages[size_t(s)].end());
    indptr.push_back(int(indices.size()));
    last.push_back(
        lens[size_t(s)] == 0 ? 0 : lens[size_t(s)] - (int(pages[size_t(s)].size()) - 1) * page);
  }
  KvCache bt;
  bt.page_size = page, bt.num_pages = 8, bt.b = 4, bt.indexing = CacheIndexing::kBlockTable;
  bt.cache_seqlens = lens.data(), bt.block_table = table.data(), bt.block_table_stride = 3;
  bt.max_pages = 3;
  KvCache pl = bt;
  pl.indexing = CacheIndexing::kPageList;
  pl.indptr = indptr.data(), pl.indices = indices.data(), pl.last_page_len = last.data();
  for (int s = 0; s < 4; ++s) {
    ASSERT_EQ(bt.seqlen(s), lens[size_t(s)]);
    ASSERT_EQ(pl.seqlen(s), lens[size_t(s)]);
    for (int pos = 0; pos < lens[size_t(s)]; ++pos) {
      const int64_t want = int64_t(pages[size_t(s)][size_t(pos / page)]) * page + pos % page;
      EXPECT_EQ(bt.slot(s, pos), want) << "block table, sequence " << s << " position " << pos;
      EXPECT_EQ(pl.slot(s, pos), want) << "page list, sequence " << s << " position " << pos;
    }
  }
  // contiguous slots of 64 tokens, sequence s in slot batch_idx[s] (or s)
  const std::vector<int> batch_idx = {2, 0, 3, 1};
  KvCache ct = bt;
  ct.indexing = CacheIndexing::kContiguous, ct.page_size = 64, ct.num_pages = 4;
  for (const int* idx : {batch_idx.data(), static_cast<const int*>(nullptr)}) {
    ct.cache_batch_idx = idx;
    for (int s = 0; s < 4; ++s)
      for (int pos = 0; pos < lens[size_t(s)]; ++pos)
        EXPECT_EQ(ct.slot(s, pos), int64_t(idx ? idx[s] : s) * 64 + pos);
  }
}

TEST(KvCache, NhdAndHndOffsets) {
  std::vector<uint16_t> buf(1);
  const CacheTensor n = tensor(buf, Layout::kNHD, 16, 4, 64),
                    h = tensor(buf, Layout::kHND, 16, 4, 64);
  // slot 37 = page 2, offset 5; head 3
  EXPECT_EQ(cache_offset(n, 16, 37, 3), 2 * 16 * 4 * 64 + 5 * 4 * 64 + 3 * 64);
  EXPECT_EQ(cache_offset(h, 16, 37, 3), 2 * 16 * 4 * 64 + 3 * 16 * 64 + 5 * 64);
}

/// An append problem over poisoned caches, new rows with padded strides and a shuffled slot
/// mapping (every fifth token skipped with slot -1).
struct AppendProblem {
  std::vector<uint16_t> k_cache, v_cache, k_new, v_new;
  std::vector<int64_t> slots;
  KvAppendParams p;

  AppendProblem(int page_size, Layout kl, Layout vl, int d, Dtype dtype, int h_k, int total_new,
                uint64_t seed) {
    strata_test::Rng rng(seed);
    const int num_pages = (total_new * 3 / 2 + page_size - 1) / page_size + 1;
    const size_t cache_elems = size_t(num_pages) * size_t(page_size) * size_t(h_k) * size_t(d);
    k_cache.assign(cache_elems, kPoison);
    v_cache.assign(cache_elems, kPoison);
    const int64_t row = int64_t(h_k) * d + 8;  // padded rows: strides are honoured
    k_new.resize(size_t(total_new) * size_t(row));
    v_new.resize(k_new.size());
    for (auto* x : {&k_new, &v_new})
      for (uint16_t& e : *x) e = uint16_t(rng.next_u32() & 0x7FFF);  // finite, never the poison
    std::vector<int64_t> all(size_t(num_pages) * size_t(page_size));
    std::iota(all.begin(), all.end(), 0);
    for (size_t i = all.size(); i > 1; --i) std::swap(all[i - 1], all[rng.next_u32() % i]);
    slots.assign(all.begin(), all.begin() + total_new);
    for (int t = 4; t < total_new; t += 5) slots[size_t(t)] = -1;
    KvCache& c = p.cache;
    c.dtype = dtype, c.h_k = h_k, c.d = d, c.page_size = page_size, c.num_pages = num_pages;
    c.k = tensor(k_cache, kl, page_size, h_k, d);
    c.v = tensor(v_cache, vl, page_size, h_k, d);
    p.k_new = k_new.data(), p.v_new = v_new.data();
    p.k_new_row_stride = p.v_new_row_stride = row;
    p.k_new_head_stride = p.v_new_head_stride = d;
    p.total_new = total_new;
    p.slot_mapping = slots.data(), p.slot_mapping_host = slots.data();
  }

  /// The caches an exact append produces.
  void expected(std::vector<uint16_t>& k, std::vector<uint16_t>& v) const {
    k = v = std::vector<uint16_t>(k_cache.size(), kPoison);
    const KvCache& c = p.cache;
    for (int t = 0; t < p.total_new; ++t) {
      if (slots[size_t(t)] < 0 || slots[size_t(t)] >= c.slots()) continue;
      for (int h = 0; h < c.h_k; ++h)
        for (int e = 0; e < c.d; ++e) {
          const size_t src =
              size_t(t) * size_t(p.k_new_row_stride) + size_t(h) * size_t(c.d) + size_t(e);
          k[size_t(cache_offset(c.k, c.page_size, slots[size_t(t)], h) + e)] = k_new[src];
          v[size_t(cache_offset(c.v, c.page_size, slots[size_t(t)], h) + e)] = v_new[src];
        }
    }
  }
};

struct AppendCase {
  int page_size;
  Layout k, v;
  int d;
  Dtype dtype;
  int h_k, total_new;
};

void PrintTo(const AppendCase& c, std::ostream* os) {
  *os << "page " << c.page_size << ", K " << (c.k == Layout::kNHD ? "NHD" : "HND") << ", V "
      << (c.v == Layout::kNHD ? "NHD" : "HND") << ", d " << c.d << ", "
      << (c.dtype == Dtype::kBf16 ? "bf16" : "fp16") << ", h_k " << c.h_k << ", " << c.total_new
      << " new tokens";
}

class KvAppend : public ::testing::TestWithParam<AppendCase> {};

TEST_P(KvAppend, EveryRowLandsBitwiseAtItsSlotAndNothingElseIsWritten) {
  const AppendCase c = GetParam();
  strata_test::SimGuard guard;
  for (const strata::sim::Schedule& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    AppendProblem a(c.page_size, c.k, c.v, c.d, c.dtype, c.h_k, c.total_new, 7);
    const strata::Status st = strata::api::kv_append(a.p);
    ASSERT_TRUE(st.ok()) << st.message();
    std::vector<uint16_t> k, v;
    a.expected(k, v);
    ASSERT_TRUE(k == a.k_cache) << "K cache, schedule " << s.to_string();
    ASSERT_TRUE(v == a.v_cache) << "V cache, schedule " << s.to_string();
  }
}

INSTANTIATE_TEST_SUITE_P(
    PagesLayoutsDims, KvAppend,
    ::testing::Values(AppendCase{1, Layout::kNHD, Layout::kHND, 64, Dtype::kBf16, 1, 5},
                      AppendCase{16, Layout::kNHD, Layout::kNHD, 128, Dtype::kBf16, 8, 37},
                      AppendCase{16, Layout::kHND, Layout::kNHD, 96, Dtype::kFp16, 2, 20},
                      AppendCase{64, Layout::kHND, Layout::kHND, 128, Dtype::kFp16, 4, 70},
                      AppendCase{256, Layout::kNHD, Layout::kHND, 64, Dtype::kBf16, 2, 300},
                      AppendCase{1, Layout::kHND, Layout::kHND, 96, Dtype::kBf16, 3, 1}));

TEST(KvAppendGuard, SlotsPastTheCacheAreSkippedWithoutAHostCopy) {
  AppendProblem a(16, Layout::kNHD, Layout::kHND, 64, Dtype::kBf16, 2, 12, 3);
  a.slots[2] = a.p.cache.slots();
  a.slots[7] = a.p.cache.slots() + 1000;
  a.p.slot_mapping_host = nullptr;
  ASSERT_TRUE(strata::api::kv_append(a.p).ok());
  std::vector<uint16_t> k, v;
  a.expected(k, v);  // skips the same slots
  EXPECT_TRUE(k == a.k_cache);
  EXPECT_TRUE(v == a.v_cache);
}

TEST(KvAppendGuard, EmptyAppendReadsNothing) {
  AppendProblem a(16, Layout::kNHD, Layout::kNHD, 64, Dtype::kBf16, 2, 4, 5);
  a.p.total_new = 0;
  a.p.k_new = a.p.v_new = nullptr;
  a.p.slot_mapping = a.p.slot_mapping_host = nullptr;
  ASSERT_TRUE(strata::api::kv_append(a.p).ok());
  EXPECT_TRUE(
      std::all_of(a.k_cache.begin(), a.k_cache.end(), [](uint16_t x) { return x == kPoison; }));
}

/// Bits of x rounded to the dtype (bf16 or fp16).
uint16_t bits(float x, Dtype dt) {
  uint16_t b;
  if (dt == Dtype::kBf16) {
    const __nv_bfloat16 y = strata::core::from_float<__nv_bfloat16>(x);
    std::memcpy(&b, &y, 2);
  } else {
    const __half y = strata::core::from_float<__half>(x);
    std::memcpy(&b, &y, 2);
  }
  return b;
}
float value(uint16_t b, Dtype dt) {
  if (dt == Dtype::kBf16) {
    __nv_bfloat16 y;
    std::memcpy(static_cast<void*>(&y), &b, 2);
    return strata::core::to_float(y);
  }
  __half y;
  std::memcpy(static_cast<void*>(&y), &b, 2);
  return strata::core::to_float(y);
}

TEST(KvAppendVariants, ResFormerStoresVPrimeAndSVFormerStoresNoV) {
  // 40 KV heads: more than a warp's lanes, the lambdas are read per chunk instead of shuffled
  for (Dtype dt : {Dtype::kBf16, Dtype::kFp16})
    for (auto g : {strata::core::MixGranularity::kScalar, strata::core::MixGranularity::kHeadwise})
      for (int h_k : {3, 40}) {
        AppendProblem a(16, Layout::kNHD, Layout::kHND, 64, dt, h_k, 21, 13);
        strata_test::Rng rng(5);
        auto normal = [&] { return float(int(rng.next_u32() % 2001) - 1000) / 400.f; };
        std::vector<uint16_t> v_first(a.v_new.size());
        for (auto* x : {&a.k_new, &a.v_new, &v_first})
          for (uint16_t& e : *x) e = bits(normal(), dt);  // finite in both dtypes
        std::vector<float> ls, lf;
        for (int h = 0; h < h_k; ++h)
          ls.push_back(0.5f - 0.375f * float(h % 5)), lf.push_back(0.25f + 0.125f * float(h % 7));
        a.p.v_first_new = v_first.data();
        a.p.v_first_new_row_stride = a.p.v_new_row_stride, a.p.v_first_new_head_stride = 64;
        a.p.lambda_self = ls.data(), a.p.lambda_first = lf.data(), a.p.granularity = g;
        ASSERT_TRUE(strata::api::kv_append(a.p).ok());
        std::vector<uint16_t> k, v;
        a.expected(k, v);
        EXPECT_TRUE(k == a.k_cache);
        const KvCache& c = a.p.cache;
        int wrong = 0;
        for (int t = 0; t < a.p.total_new; ++t)
          for (int h = 0; t < a.p.total_new && a.slots[size_t(t)] >= 0 && h < c.h_k; ++h)
            for (int e = 0; e < c.d; ++e) {
              const size_t src = size_t(t) * size_t(a.p.v_new_row_stride) + size_t(h * c.d + e);
              const int lh = g == strata::core::MixGranularity::kHeadwise ? h : 0;
              const float want = ls[size_t(lh)] * value(a.v_new[src], dt) +
                                 lf[size_t(lh)] * value(v_first[src], dt);  // fp32, one rounding
              const int64_t at = cache_offset(c.v, c.page_size, a.slots[size_t(t)], h) + e;
              v[size_t(at)] = bits(want, dt);
            }
        for (size_t i = 0; i < v.size(); ++i) wrong += v[i] != a.v_cache[i];
        EXPECT_EQ(wrong, 0) << "V' elements differing from the fp32 mix rounded once";

        // SVFormer l >= 1: K only; V (and v_new) untouched
        AppendProblem b(16, Layout::kHND, Layout::kNHD, 64, dt, h_k, 21, 14);
        b.p.store_v = false;
        b.p.v_new = nullptr;
        ASSERT_TRUE(strata::api::kv_append(b.p).ok());
        b.expected(k, v);
        EXPECT_TRUE(k == b.k_cache);
        EXPECT_TRUE(std::all_of(b.v_cache.begin(), b.v_cache.end(),
                                [](uint16_t x) { return x == kPoison; }));
      }
}

TEST(KvAppendValidation, EveryBadFieldIsNamedAndNothingIsWritten) {
  struct Bad {
    const char* needle;
    void (*spoil)(AppendProblem&);
  };
  const Bad cases[] = {
      {"d = 80", [](AppendProblem& a) { a.p.cache.d = 80; }},
      {"dtype", [](AppendProblem& a) { a.p.cache.dtype = Dtype(7); }},
      {"h_k = 0", [](AppendProblem& a) { a.p.cache.h_k = 0; }},
      {"h_k = 70000: must be in [1, 65535]", [](AppendProblem& a) { a.p.cache.h_k = 70000; }},
      {"indexing", [](AppendProblem& a) { a.p.cache.indexing = CacheIndexing(9); }},
      {"page_size = 0", [](AppendProblem& a) { a.p.cache.page_size = 0; }},
      {"page_size = 512", [](AppendProblem& a) { a.p.cache.page_size = 512; }},
      {"num_pages = 0", [](AppendProblem& a) { a.p.cache.num_pages = 0; }},
      {"cache.k.data is null", [](AppendProblem& a) { a.p.cache.k.data = nullptr; }},
      {"cache.v.data is not 16-byte aligned",
       [](AppendProblem& a) { a.p.cache.v.data = a.v_cache.data() + 1; }},
      {"k.row_stride = 4", [](AppendProblem& a) { a.p.cache.k.row_stride = 4; }},
      {"v.head_stride = -64", [](AppendProblem& a) { a.p.cache.v.head_stride = -64; }},
      {"overlap the rows", [](AppendProblem& a) { a.p.cache.k.head_stride = 32; }},
      {"pages overlap", [](AppendProblem& a) { a.p.cache.v.page_stride -= 8; }},
      {"same storage", [](AppendProblem& a) { a.p.cache.v = a.p.cache.k; }},
      {"total_new is negative", [](AppendProblem& a) { a.p.total_new = -1; }},
      {"k_new is null", [](AppendProblem& a) { a.p.k_new = nullptr; }},
      {"v_new_row_stride = 12", [](AppendProblem& a) { a.p.v_new_row_stride = 12; }},
      {"k_new strides (64, 64) overlap rows or heads",
       [](AppendProblem& a) { a.p.k_new_row_stride = 64; }},
      {"slot_mapping is null", [](AppendProblem& a) { a.p.slot_mapping = nullptr; }},
      {"slot_mapping[3] = ", [](AppendProblem& a) { a.slots[3] = a.p.cache.slots(); }},
      {"the slot of an earlier new token", [](AppendProblem& a) { a.slots[5] = a.slots[0]; }},
      {"v_first_new: set while store_v is false",
       [](AppendProblem& a) { a.p.store_v = false, a.p.v_first_new = a.k_new.data(); }},
      {"v_first_new_head_stride = 3",
       [](AppendProblem& a) {
         a.p.v_first_new = a.k_new.data(), a.p.v_first_new_row_stride = 136,
         a.p.v_first_new_head_stride = 3;
       }},
      {"granularity: ResFormer's lambda",
       [](AppendProblem& a) {
         static const float l[1] = {0.5f};
         a.p.v_first_new = a.k_new.data(), a.p.v_first_new_row_stride = 136;
         a.p.v_first_new_head_stride = 64, a.p.lambda_self = a.p.lambda_first = l;
         a.p.granularity = strata::core::MixGranularity::kElementwise;
       }},
      {"lambda_first is null",
       [](AppendProblem& a) {
         static const float l[1] = {0.5f};
         a.p.v_first_new = a.k_new.data(), a.p.v_first_new_row_stride = 136;
         a.p.v_first_new_head_stride = 64, a.p.lambda_self = l;
       }},
  };
  for (const Bad& b : cases) {
    AppendProblem a(16, Layout::kNHD, Layout::kHND, 64, Dtype::kBf16, 2, 9, 11);
    b.spoil(a);
    EXPECT_TRUE(strata_test::refused(strata::api::kv_append(a.p), b.needle));
    EXPECT_TRUE(
        std::all_of(a.k_cache.begin(), a.k_cache.end(), [](uint16_t x) { return x == kPoison; }) &&
        std::all_of(a.v_cache.begin(), a.v_cache.end(), [](uint16_t x) { return x == kPoison; }))
        << b.needle << ": the cache was written";
  }
}

}  // namespace
