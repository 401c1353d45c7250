// MEA served step by step through api::DecodeStack (its component-head cache, the tile's
// composition, both sites, every schedule and thread schedule, its plan), and every method under
// one CUDA-graph plan. The decode tests' sanitizer build (label sanitizer) runs this file: MEA's
// own decode kernel, and each method's decode path once at d = 64.
#include <strata/api/decode.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../variants/depth_check.hpp"
#include "../variants/expect_verdict.hpp"
#include "../variants/mea_check.hpp"
#include "../variants/output_gate_check.hpp"
#include "../variants/value_residual_check.hpp"
#include "decode_driver.hpp"
#include "decode_stack_cases.hpp"

namespace {

using namespace decode_stack_test;

/// MEA: the cache holds the H_c component heads (virtual heads: H_c < H_kv), the tiles compose
/// the H_kv composite heads — GroupNorm and RoPE of each cached key at the KeyValue site, the
/// Output site's GroupNorm after the merge — for both sites under every schedule, GQA 2.
TEST(DecodeStack, MeaEveryScheduleMatchesTheFullForward) {
  for (const DecodeSchedule& sch : schedules())
    for (bool out : {false, true}) {
      const MeaCase mc = mea_case(kLens, 8, 4, 2, 64, out, 51 + uint64_t(out));
      expect_verdict(decode_mea_verdict(mc, sch, !out),
                     "decode " + mc.describe() + " " + sch.describe());
    }
}

/// MEA's tile shapes: H_c = 3 components for 6 heads (8 keys a tile, d = 128, no GQA); 24
/// composite heads from 20 components (2 keys a tile, d = 96); 96 query heads over 32 composite
/// heads (a token's rows span two 64-row blocks, each composing only its heads' keys); no RoPE.
TEST(DecodeStack, MeaTileShapes) {
  const DecodeSchedule token{1, 1, CacheIndexing::kBlockTable, 16, false, 1, 7};
  const DecodeSchedule split{3, 5, CacheIndexing::kPageList, 16, true, 2, 8};
  const std::vector<int> lens = {9, 1, 14};
  for (bool out : {false, true}) {
    MeaCase a = mea_case(lens, 6, 6, 3, 128, out, 61);
    expect_verdict(decode_mea_verdict(a, split), "decode " + a.describe());
    MeaCase b = mea_case(lens, 24, 24, 20, 96, out, 62, 1);
    expect_verdict(decode_mea_verdict(b, token, false), "decode " + b.describe());
    MeaCase c = mea_case({5, 2}, 96, 32, 8, 64, out, 63, 1);
    expect_verdict(decode_mea_verdict(c, split), "decode " + c.describe());
    MeaCase d = mea_case(lens, 4, 2, 2, 64, out, 64);
    d.rope = false;
    expect_verdict(decode_mea_verdict(d, token), "decode " + d.describe());
  }
}

/// The same MEA step sequence through contiguous slots and through block tables and page lists
/// of 1-, 16- and 64-token pages in shuffled order, NHD and HND: bitwise the same outputs.
TEST(DecodeStack, MeaPagedAndContiguousCachesAreBitwiseIdentical) {
  for (bool out : {false, true}) {
    const MeaCase mc = mea_case(kLens, 8, 4, 2, 64, out, 71);
    const auto outputs = [&](const DecodeSchedule& sch) {
      std::vector<std::vector<uint16_t>> got;
      const Verdict v = run_mea<__nv_bfloat16, 64>(mc, [&](const api::MeaStack& st) {
        std::string e = decode_mea<__nv_bfloat16>(st, sch);
        for (const api::MeaLayerParams& y : st.layers) {
          const auto* o = static_cast<const uint16_t*>(out ? y.out : y.attn.o);
          got.emplace_back(o, o + size_t(y.attn.total_q) * size_t(y.attn.h) * 64);
        }
        return e;
      });
      EXPECT_TRUE(v.pass()) << sch.describe();
      return got;
    };
    const auto first = outputs({2, 3, CacheIndexing::kContiguous, 0, false, 1, 1});
    for (int page : {1, 16, 64})
      for (CacheIndexing m : {CacheIndexing::kBlockTable, CacheIndexing::kPageList})
        EXPECT_EQ(outputs({2, 3, m, page, page == 16, 1, uint64_t(page) + 5}), first)
            << "page " << page << " mode " << int(m) << (out ? " output site" : " kv site");
  }
}

/// Every thread schedule of the simulator on a split, chunked MEA batch at both sites (the
/// composition's half-warp shuffles, the tile's barriers and the merge's GroupNorm sums).
TEST(DecodeStack, MeaAllThreadSchedules) {
  strata_test::SimGuard guard;
  for (const strata::sim::Schedule& sched : strata_test::all_schedules()) {
    strata::sim::set_schedule(sched);
    for (bool out : {false, true}) {
      const MeaCase mc = mea_case({6, 1}, 4, 2, 3, 64, out, 81, 1);
      expect_verdict(decode_mea_verdict(mc, {2, 4, CacheIndexing::kBlockTable, 16, true, 3, 9}),
                     "schedule " + sched.to_string() + " " + mc.describe());
    }
  }
}

/// MEA's plan: the grid is sequences x 64-row tiles of (token, query head) rows, with
/// mea_decode_keys_per_tile keys a tile, and the run must be MEA's; the attention's own checks
/// (component heads, the gate) on a prepared step.
TEST(DecodeStack, MeaPlanAndAttentionChecks) {
  namespace api = strata::api;
  api::PagedAttentionShape shape{4, 4, 1, 4096, 32, 16, 128, 32};  // H_c 16 -> 2 keys a tile
  api::PagedAttentionPlan plan;
  ASSERT_TRUE(api::plan_mea_paged_attention(shape, 132, &plan).ok());
  EXPECT_EQ(strata::variants::mea_decode_keys_per_tile(16, 32), 2);
  // a split's parameter reads, 4 (2 16 32 + 4 32 128) = 69,632 bytes, within 5% of its cache
  // reads at 2 2 16 128 = 8,192 bytes a key: at least 170 keys a split, 25 parts of 4096
  EXPECT_EQ(api::mea_min_keys_per_split(32, 16, 128), 170);
  EXPECT_EQ(api::mea_min_keys_per_split(4, 2, 64), 163);  // 4,160 parameter bytes
  EXPECT_EQ(api::mea_min_keys_per_split(1, 8, 128), 64);  // never under the vanilla tile
  EXPECT_EQ(plan.num_splits, api::paged_attention_num_splits(4, 25, 132));
  EXPECT_GT(plan.num_splits, 1);
  EXPECT_EQ(plan.workspace_bytes, size_t(plan.num_splits) * 4 * 32 * (128 + 1) * 4);
  EXPECT_FALSE(api::plan_paged_attention(shape, 132, &plan).ok());  // an MEA shape
  shape.h_kv = 33;
  EXPECT_NE(std::string(api::plan_mea_paged_attention(shape, 132, &plan).message())
                .find("shape.h_kv = 33"),
            std::string::npos);
  shape.h_kv = 32, shape.h = 48;
  EXPECT_NE(std::string(api::plan_mea_paged_attention(shape, 132, &plan).message())
                .find("shape.h = 48: must be a multiple of shape.h_kv = 32"),
            std::string::npos);

  std::vector<std::string> got;
  const MeaCase mc = mea_case(kLens, 8, 4, 2, 64, false, 13, 1);
  run_mea<__nv_bfloat16, 64>(mc, [&](const api::MeaStack& st) {
    return decode_mea<__nv_bfloat16>(st, {}, [&](DecodeStack& s) {
      api::MeaPagedAttentionParams p = s.mea_attention_params(0);
      p.attn.cache.h_k = 40;
      got.push_back(api::validate(p).message());
      p = s.mea_attention_params(0);
      p.attn.gate = s.layers[0].q;
      got.push_back(api::validate(p).message());
      s.h_kv = 0;  // the step itself must fail
    });
  });
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NE(got[0].find("attn.cache.h_k = 40: the component heads H_c must be in [1, "),
            std::string::npos)
      << got[0];
  EXPECT_EQ(got[1], "attn.gate: MEA has no output gate");
}

/// CUDA-graph mode: one plan for a padded bucket, its grid and workspace reused by every layer
/// and every step (split-KV on: 150-token caches on 132 SMs), the padding rows never written.
TEST(DecodeStack, GraphModeOnePlanForEveryStepAndLayer) {
  const std::vector<int> lens = {1, 0, 7, 150};
  const DecodeSchedule sch{5, 16, CacheIndexing::kBlockTable, 16, false, 1, 5, 40, 132};
  strata::api::PagedAttentionPlan plan;
  strata::api::PagedAttentionShape shape{4, 40, 16, 150, 8, 2, 64};
  ASSERT_TRUE(strata::api::plan_paged_attention(shape, 132, &plan).ok());
  EXPECT_GT(plan.num_splits, 1);  // the graph's run splits the keys: the merge is exercised
  DepthCase dc;
  dc.attn = decode_case(lens, 8, 2, 64, 17);
  expect_verdict(
      run_depth<__nv_bfloat16, 64>(
          dc, [&](const api::DepthStack& st) { return decode_depth<__nv_bfloat16>(st, sch); }),
      "graph " + dc.describe());
  StackCase sc;
  sc.attn = decode_case(lens, 8, 2, 64, 19);
  sc.layers = 3, sc.kind = api::ValueResidualKind::kSVFormer;
  expect_verdict(run_stack<__half, 64>(sc,
                                       [&](const api::ValueResidualStack& st) {
                                         return decode_value_residual<__half>(st, sch);
                                       }),
                 "graph " + sc.describe());
  for (bool out : {false, true}) {  // MEA under its own plan (plan_mea_paged_attention)
    const MeaCase mc = mea_case(lens, 8, 4, 2, 64, out, 29, 2);
    expect_verdict(decode_mea_verdict(mc, sch), "graph " + mc.describe());
  }
  GateCase gc;
  gc.attn = decode_case(lens, 8, 2, 64, 23);
  gc.layers = 1, gc.kind = strata::core::GateKind::kHeadwise;
  expect_verdict(
      run_gated<__nv_bfloat16, 64>(
          gc, [&](const strata::attention::FlashFwdParams& a,
                  const api::GateArgs& g) { return decode_gated<__nv_bfloat16>(a, g, sch); }),
      "graph " + gc.describe());
}

}  // namespace
