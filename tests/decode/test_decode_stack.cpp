// Every method served step by step through api::DecodeStack with paged caches — token by
// token, in chunks of 3 and 16, after a prefill chunk, with and without split-KV, through every
// indexing mode — gives each layer's O and LSE of the whole-sequence stack within
// FlashAttention's rule of the fp64 reference (the variant checks' stacks, decoded instead of run
// by their training helpers). The cache holds what each paper caches; the checks read only O
// and LSE.
#include <strata/api/decode.hpp>
#include <strata/cost/depth.hpp>
#include <strata/cost/exoformer.hpp>
#include <strata/cost/gated.hpp>
#include <strata/cost/mea.hpp>
#include <strata/cost/value_residual.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../variants/depth_check.hpp"
#include "../variants/exoformer_check.hpp"
#include "../variants/expect_verdict.hpp"
#include "../variants/mea_check.hpp"
#include "../variants/output_gate_check.hpp"
#include "../variants/value_residual_check.hpp"
#include "decode_driver.hpp"
#include "decode_stack_cases.hpp"

namespace {

using namespace decode_stack_test;

TEST(DecodeStack, DepthAttentionEveryScheduleMatchesTheFullForward) {
  for (const DecodeSchedule& sch : schedules())
    for (int g : {1, 4}) {
      DepthCase dc;
      dc.attn = decode_case(kLens, 2 * g, 2, 64, 11 + uint64_t(g));
      dc.layers = 4, dc.stride = 2, dc.recent_window = 1;
      const std::string what = "decode " + dc.describe() + " " + sch.describe();
      expect_verdict(with_head_dim<__nv_bfloat16>(dc.attn,
                                                  [&]<class U, int D>(const Case&) {
                                                    return run_depth<U, D>(
                                                        dc, [&](const api::DepthStack& st) {
                                                          return decode_depth<U>(st, sch);
                                                        });
                                                  }),
                     what);
    }
}

TEST(DecodeStack, ResFormerAndSVFormerEveryScheduleMatchTheFullForward) {
  for (const DecodeSchedule& sch : schedules())
    for (auto kind : {api::ValueResidualKind::kResFormer, api::ValueResidualKind::kSVFormer}) {
      StackCase sc;
      sc.attn = decode_case(kLens, 8, 2, 64, 21);
      sc.layers = 3, sc.kind = kind, sc.granularity = MixGranularity::kHeadwise;
      const std::string what = "decode " + sc.describe() + " " + sch.describe();
      expect_verdict(with_head_dim<__half>(sc.attn,
                                           [&]<class U, int D>(const Case&) {
                                             return run_stack<U, D>(
                                                 sc, [&](const api::ValueResidualStack& st) {
                                                   return decode_value_residual<U>(st, sch);
                                                 });
                                           }),
                     what);
    }
}

TEST(DecodeStack, ExoFormerEveryScheduleMatchesTheFullForward) {
  for (const DecodeSchedule& sch : schedules()) {
    ExoCase ec;
    ec.attn = decode_case(kLens, 4, 4, 64, 31);
    ec.layers = 3;
    const std::string what = "decode " + ec.describe() + " " + sch.describe();
    expect_verdict(with_head_dim<__nv_bfloat16>(ec.attn,
                                                [&]<class U, int D>(const Case&) {
                                                  return run_exoformer<U, D>(
                                                      ec, [&](const api::ExoStack& st) {
                                                        return decode_exo<U>(st, sch);
                                                      });
                                                }),
                   what);
  }
}

TEST(DecodeStack, GatedAttentionEveryScheduleMatchesTheFullForward) {
  for (const DecodeSchedule& sch : schedules())
    for (auto kind : {strata::core::GateKind::kElementwise, strata::core::GateKind::kHeadwise}) {
      GateCase gc;
      gc.attn = decode_case(kLens, 8, 2, 64, 41);
      gc.layers = 1, gc.kind = kind;
      const std::string what = "decode " + gc.describe() + " " + sch.describe();
      expect_verdict(
          with_head_dim<__nv_bfloat16>(gc.attn,
                                       [&]<class U, int D>(const Case&) {
                                         return run_gated<U, D>(
                                             gc, [&](const strata::attention::FlashFwdParams& a,
                                                     const api::GateArgs& g) {
                                               return decode_gated<U>(a, g, sch);
                                             });
                                       }),
          what);
    }
}

/// The cache of each method holds what the cost model (strata/cost) says — the papers' claims:
/// Depth-Attention, ResFormer, ExoFormer and Gated Attention the size of a vanilla cache,
/// SVFormer (L + 1) / 2L of it — counted as the elements the decode wrote.
TEST(DecodeStack, CacheBytesPerTokenAreTheCostModels) {
  namespace cost = strata::cost;
  int tokens = 0;
  for (int n : kLens) tokens += n;
  const auto shape = [](int layers, int h, int h_k) {
    cost::ModelShape m;
    m.num_layers = layers, m.num_heads = h, m.num_kv_heads = h_k, m.head_dim = 64;
    m.hidden = h * 64;
    return m;
  };
  const DecodeSchedule sch{2, 3, CacheIndexing::kBlockTable, 16, false, 1, 1};
  int64_t stored = -1;
  DepthCase dc;
  dc.attn = decode_case(kLens, 8, 2, 64, 3);
  run_depth<__nv_bfloat16, 64>(dc, [&](const api::DepthStack& st) {
    return decode_depth<__nv_bfloat16>(st, sch, {}, &stored);
  });
  EXPECT_EQ(stored, tokens * cost::depth_kv_cache_bytes_per_token(shape(4, 8, 2), 2));
  for (auto kind : {api::ValueResidualKind::kResFormer, api::ValueResidualKind::kSVFormer}) {
    StackCase sc;
    sc.attn = decode_case(kLens, 8, 2, 64, 7);
    sc.layers = 3, sc.kind = kind;
    run_stack<__half, 64>(sc, [&](const api::ValueResidualStack& st) {
      return decode_value_residual<__half>(st, sch, {}, &stored);
    });
    const cost::ModelShape m = shape(3, 8, 2);
    EXPECT_EQ(stored, tokens * (kind == api::ValueResidualKind::kSVFormer
                                    ? cost::svformer_kv_cache_bytes_per_token(m, 2)
                                    : cost::resformer_kv_cache_bytes_per_token(m, 2)));
  }
  ExoCase ec;
  ec.attn = decode_case(kLens, 4, 4, 64, 5);
  ec.layers = 3;
  run_exoformer<__nv_bfloat16, 64>(
      ec, [&](const api::ExoStack& st) { return decode_exo<__nv_bfloat16>(st, sch, {}, &stored); });
  EXPECT_EQ(stored, tokens * cost::exoformer_kv_cache_bytes_per_token(shape(3, 4, 4), 2));
  GateCase gc;
  gc.attn = decode_case(kLens, 8, 2, 64, 9);
  gc.layers = 1;
  run_gated<__nv_bfloat16, 64>(
      gc, [&](const strata::attention::FlashFwdParams& a, const api::GateArgs& g) {
        return decode_gated<__nv_bfloat16>(a, g, sch, {}, &stored);
      });
  EXPECT_EQ(stored, tokens * cost::gated_kv_cache_bytes_per_token(shape(1, 8, 2), 2));
  // MEA's virtual heads: H_c = 2 component heads cached for H_kv = 4 composite heads, half of a
  // vanilla cache (SPEC 4c)
  for (bool out : {false, true}) {
    const MeaCase mc = mea_case(kLens, 8, 4, 2, 64, out, 13, 3);
    run_mea<__nv_bfloat16, 64>(mc, [&](const api::MeaStack& st) {
      return decode_mea<__nv_bfloat16>(st, sch, {}, &stored);
    });
    const cost::ModelShape m = shape(3, 8, 4);
    EXPECT_EQ(stored, tokens * cost::mea_kv_cache_bytes_per_token(m, 2, 2));
    EXPECT_EQ(2 * cost::mea_kv_cache_bytes_per_token(m, 2, 2),
              cost::gated_kv_cache_bytes_per_token(m, 2));
  }
}

/// A spoiled first step: the message names the field and nothing is written.
struct Bad {
  const char* needle;
  Spoil spoil;
};

void expect_invalid(const std::string& got, const char* needle) {
  EXPECT_EQ(got.rfind("invalid: ", 0), 0u) << needle << ": " << got;
  EXPECT_NE(got.find(needle), std::string::npos) << "wanted \"" << needle << "\", got: " << got;
}

TEST(DecodeStackValidation, EveryBadFieldIsNamedAndNothingIsWritten) {
  using L = DecodeStack;
  static const int64_t far_slot[64] = {1 << 30};
  const Bad depth[] = {
      {"method: not a DecodeMethod value", [](L& s) { s.method = DecodeMethod(9); }},
      {"layers is empty", [](L& s) { s.layers.clear(); }},
      {"layers[2].sources: must be strictly ascending",
       [](L& s) {
         s.layers[2].sources = {1, 0};
       }},
      {"more than kMaxSources", [](L& s) { s.layers[3].sources = {0, 1, 2, 0, 1, 2, 0, 1, 2}; }},
      {"layers[1].sources: must be strictly ascending earlier layers (got 1)",
       [](L& s) { s.layers[1].sources = {1}; }},
      {"positions is null", [](L& s) { s.positions = nullptr; }},
      {"layers[1].gamma_q / gamma_k is null", [](L& s) { s.layers[1].gamma_k = nullptr; }},
      {"layers[0].q_attn / k_attn / v_attn is null", [](L& s) { s.layers[0].v_attn = nullptr; }},
      {"layers[1].k is null", [](L& s) { s.layers[1].k = nullptr; }},
      {"layers[1].k_attn / v_attn: shared with source layer 0",
       [](L& s) { s.layers[1].k_attn = s.layers[0].k_attn; }},
      {"layers[0].append: slot_mapping[0] = 1073741824: beyond the cache",
       [](L& s) { s.slot_mapping_host = far_slot; }},
      {"layers[0].append: cache.k.data is null", [](L& s) { s.layers[0].k_cache.data = nullptr; }},
      {"layers[0].attention: h = 3", [](L& s) { s.h = 3; }},
      {"layers[0].attention: workspace", [](L& s) { s.num_splits = 2; }},
      {"layers[0].attention: window_left = -2", [](L& s) { s.window_left = -2; }},
      {"layers[0].attention: cache.block_table is null",
       [](L& s) { s.cache.block_table = nullptr; }},
      {"layers[3].attention: lse is null", [](L& s) { s.layers[3].lse = nullptr; }},
      {"layers[0].attention (plan): total_q / max_seqlen_q: not the plan's",
       [](L& s) {
         static strata::api::PagedAttentionPlan p;
         p.shape = {s.cache.b, s.total_q + 1, s.max_seqlen_q, 64, s.h, s.cache.h_k, s.cache.d};
         s.plan = &p;
       }},
  };
  DepthCase dc;
  dc.attn = decode_case(kLens, 8, 2, 64, 3);
  dc.layers = 4, dc.stride = 2, dc.recent_window = 1;
  run_depth<__nv_bfloat16, 64>(dc, [&](const api::DepthStack& st) {
    for (const Bad& b : depth)
      expect_invalid(decode_depth<__nv_bfloat16>(st, {}, b.spoil), b.needle);
    return std::string();
  });

  const Bad exo[] = {
      {"anchors.k: gamma is null", [](L& s) { s.anchors.gamma[1] = nullptr; }},
      {"anchors.g is null", [](L& s) { s.anchors.anchor[3].ptr = nullptr; }},
      {"layers[2].mix.v: lambda1 / lambda2 is null",
       [](L& s) { s.layers[2].mix.lambda2[2] = nullptr; }},
      {"layers[1].mix.s is null (dynamic)", [](L& s) { s.layers[1].mix.s = nullptr; }},
      {"layers[1].mix.gamma_q / gamma_k is null", [](L& s) { s.layers[1].mix.gamma_q = nullptr; }},
      {"overwrites anchors.q",
       [](L& s) { s.layers[0].g_attn = const_cast<void*>(s.anchors.anchor[0].ptr); }},
      {"layers[0].q_attn / k_attn / v_attn / g_attn is null",
       [](L& s) { s.layers[0].g_attn = nullptr; }},
      {"layers[1].g is null", [](L& s) { s.layers[1].g = nullptr; }},
      {"exo.granularity", [](L& s) { s.exo.granularity = strata::core::MixGranularity(7); }},
  };
  ExoCase ec;
  ec.attn = decode_case(kLens, 4, 4, 64, 5);
  ec.layers = 3;
  run_exoformer<__nv_bfloat16, 64>(ec, [&](const api::ExoStack& st) {
    for (const Bad& b : exo) expect_invalid(decode_exo<__nv_bfloat16>(st, {}, b.spoil), b.needle);
    return std::string();
  });

  const Bad res[] = {
      {"layers[1].lambda_self / lambda_first is null (ResFormer)",
       [](L& s) { s.layers[1].lambda_first = nullptr; }},
      {"layers[1].append: granularity",
       [](L& s) { s.granularity = strata::core::MixGranularity::kElementwise; }},
      {"layers[0].append: v_new is null", [](L& s) { s.layers[0].v = nullptr; }},
  };
  StackCase sc;
  sc.attn = decode_case(kLens, 8, 2, 64, 7);
  sc.layers = 3;
  run_stack<__half, 64>(sc, [&](const api::ValueResidualStack& st) {
    for (const Bad& b : res)
      expect_invalid(decode_value_residual<__half>(st, {}, b.spoil), b.needle);
    return std::string();
  });
  sc.kind = api::ValueResidualKind::kSVFormer;
  run_stack<__half, 64>(sc, [&](const api::ValueResidualStack& st) {
    // layer 0's V cache is what layers >= 1 read
    expect_invalid(
        decode_value_residual<__half>(st, {}, [](L& s) { s.layers[0].v_cache.data = nullptr; }),
        "layers[0].append: cache.v.data is null");
    return std::string();
  });

  static strata::api::PagedAttentionPlan vanilla_plan, mea_plan;
  const Bad mea_kv[] = {
      {"layers[0].attention: h_kv = 0: the composite heads", [](L& s) { s.h_kv = 0; }},
      {"layers[0].attention: h_kv = 33: the composite heads", [](L& s) { s.h_kv = 33; }},
      {"layers[0].attention: attn: h = 8: must be in [1, 65535] and a multiple of h_kv = 3",
       [](L& s) { s.h_kv = 3; }},
      {"layers[1].attention: w.gamma_k is null", [](L& s) { s.layers[1].mea.gamma_k = nullptr; }},
      {"layers[0].attention: w.a_v is null", [](L& s) { s.layers[0].mea.a_v = nullptr; }},
      {"layers[0].attention: w.beta_v is not 4-byte aligned",
       [](L& s) {
         s.layers[0].mea.beta_v = reinterpret_cast<const float*>(
             reinterpret_cast<const char*>(s.layers[0].mea.beta_v) + 2);
       }},
      {"mea.site: not a NormSite value", [](L& s) { s.mea.site = strata::core::NormSite(7); }},
      {"mea.gn_eps must be finite and > 0", [](L& s) { s.mea.gn_eps = 0.f; }},
      {"mea.rope_theta must be finite and > 1", [](L& s) { s.mea.rope_theta = 1.f; }},
      {"layers[1].q_attn is null (the RoPE pass's step buffers)",
       [](L& s) { s.layers[1].q_attn = nullptr; }},
      {"positions is null: RoPE rotates", [](L& s) { s.positions = nullptr; }},
      {"layers[0].q_attn / k_attn: shared with q / k / v",
       [](L& s) { s.layers[0].q_attn = const_cast<void*>(s.layers[0].q); }},
      {"layers[0].append: k_new is null", [](L& s) { s.layers[0].k = nullptr; }},
      {"layers[0].attention (plan): h_kv = 4: not the plan's 0 (not an MEA plan)",
       [](L& s) {
         vanilla_plan.shape = {s.cache.b, s.total_q, s.max_seqlen_q, 64, s.h, s.cache.h_k, 64};
         s.plan = &vanilla_plan;
       }},
  };
  const Bad mea_out[] = {
      {"layers[1].attention: w.gamma_o is null", [](L& s) { s.layers[1].mea.gamma_o = nullptr; }},
      {"layers[0].q_attn / k_attn is null", [](L& s) { s.layers[0].k_attn = nullptr; }},
  };
  for (bool out : {false, true}) {
    const MeaCase mc = mea_case(kLens, 8, 4, 2, 64, out, 13, 3);
    run_mea<__nv_bfloat16, 64>(mc, [&](const api::MeaStack& st) {
      for (const Bad& b : out ? std::vector<Bad>(std::begin(mea_out), std::end(mea_out))
                              : std::vector<Bad>(std::begin(mea_kv), std::end(mea_kv)))
        expect_invalid(decode_mea<__nv_bfloat16>(st, {}, b.spoil), b.needle);
      return std::string();
    });
  }
  // step_layer: the method and the layer index, before anything else
  {
    DecodeStack st;
    st.layers.resize(2);
    const std::string got(st.step_layer(5).message());
    EXPECT_NE(got.find("layer index 5 out of range (2 layers)"), std::string::npos) << got;
    st.method = DecodeMethod(9);
    EXPECT_NE(std::string(st.step_layer(0).message()).find("method: not a DecodeMethod value"),
              std::string::npos);
  }
  // a vanilla stack under an MEA plan
  mea_plan.shape.h_kv = 4;
  DepthCase dp;
  dp.attn = decode_case(kLens, 8, 2, 64, 3);
  run_depth<__nv_bfloat16, 64>(dp, [&](const api::DepthStack& st) {
    expect_invalid(decode_depth<__nv_bfloat16>(st, {}, [](L& s) { s.plan = &mea_plan; }),
                   "layers[0].attention (plan): plan: an MEA plan");
    return std::string();
  });

  GateCase gc;
  gc.attn = decode_case(kLens, 8, 2, 64, 9);
  gc.layers = 1;
  run_gated<__nv_bfloat16, 64>(gc, [&](const strata::attention::FlashFwdParams& a,
                                       const api::GateArgs& g) {
    expect_invalid(decode_gated<__nv_bfloat16>(
                       a, g, {}, [](L& s) { s.gate_kind = strata::core::GateKind(5); }),
                   "gate_kind: not a GateKind value");
    expect_invalid(decode_gated<__nv_bfloat16>(a, g, {}, [](L& s) { s.layers[0].g = nullptr; }),
                   "layers[0].g (the gate logits) is null");
    expect_invalid(decode_gated<__nv_bfloat16>(a, g, {},
                                               [](L& s) {
                                                 s.gate_kind = strata::core::GateKind::kHeadwise;
                                                 s.layers[0].g =
                                                     static_cast<const char*>(s.layers[0].g) + 1;
                                               }),
                   "layers[0].attention: gate is misaligned");
    return std::string();
  });
}

}  // namespace
