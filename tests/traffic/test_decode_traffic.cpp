// Traffic of the inference kernels, counted by the simulator's traffic build against strata/cost:
// the KV-cache append reads each slot once and moves each stored row once (exactly the minimum).
#include <strata/api/kv_cache.hpp>
#include <strata/cost/decode.hpp>

#include <gtest/gtest.h>

#include <cstdint>
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
template <int D>
void check_append(int total, int h_k) {
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
  for (auto* v : {&kc, &vc, &kn, &vn}) watch(*v);
  watch(slots);
  strata::sim::reset_counters();
  ASSERT_TRUE(strata::api::kv_append(p).ok());
  const strata::sim::Counters n = strata::sim::total_counters();
  const int64_t moved = int64_t(n.global_load_bytes + n.global_store_bytes);
  const int64_t minimum = strata::cost::kv_append_bytes(total, stored, h_k, D);
  EXPECT_EQ(moved, minimum) << "D = " << D << ", h_k = " << h_k << ", " << total << " tokens";
  traffic::clear();
}

TEST(DecodeTraffic, KvAppendMovesExactlyTheMinimum) {
  check_append<64>(100, 8);
  check_append<96>(37, 2);
  check_append<128>(64, 1);
}

}  // namespace
