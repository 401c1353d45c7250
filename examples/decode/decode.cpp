// Serving every method through a paged KV cache: each method's L-layer stack (the same stacks
// examples/layer_stack trains; MEA with virtual heads, its cache holding the component heads) is
// generated token by token — a prompt chunk of 5 tokens per sequence, then one token per step —
// through api::DecodeStack (per layer: the token-local pass, kv_append of what the paper caches,
// attention over the cache) with a block table of 16-token pages in shuffled order, and with
// split-KV on. Every layer's outputs of every step are checked against the fp64 reference of the
// whole-sequence stack (FlashAttention's rule), and the cache each method filled is measured
// against the cost model's bytes per token.
//
// The generation loop — cache allocation, per-step slot mapping, positions and lengths, the
// DecodeStack over the step's rows — is decode_stack() in tests/decode/decode_driver.hpp
// (shared with the tests): copy it into an engine. Runs in the CPU SIMT simulator.
//
// Exit code 0 only if every method passes.
#include <strata/cost/depth.hpp>
#include <strata/cost/exoformer.hpp>
#include <strata/cost/gated.hpp>
#include <strata/cost/mea.hpp>
#include <strata/cost/value_residual.hpp>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "decode_driver.hpp"
#include "depth_check.hpp"
#include "exoformer_check.hpp"
#include "mea_check.hpp"
#include "output_gate_check.hpp"
#include "value_residual_check.hpp"

namespace {

using namespace kernel_test;
namespace api = strata::api;
namespace cost = strata::cost;
using bf16 = __nv_bfloat16;

constexpr int kLayers = 4, kHeads = 4, kKvHeads = 2, kHeadDim = 64;
const std::vector<int> kLens = {1, 9, 40};  // generated lengths: prompt 5, then 1 per step

Case attention_case() {
  Case c;
  c.lens_q = kLens;
  c.h = kHeads, c.h_k = kKvHeads, c.d = kHeadDim, c.causal = true, c.seed = 2027;
  return c;
}

struct Row {
  std::string method;
  int64_t model_bytes = 0;  // the cost model's cache bytes per token
  std::function<Verdict(int64_t* stored)> run;
};

}  // namespace

int main() {
  const DecodeSchedule sch{5, 1, CacheIndexing::kBlockTable, 16, false, 2, 7};
  cost::ModelShape m;
  m.num_layers = kLayers, m.hidden = kHeads * kHeadDim, m.num_heads = kHeads;
  m.num_kv_heads = kKvHeads, m.head_dim = kHeadDim, m.causal = true;
  const Case ac = attention_case();

  std::vector<Row> rows;
  {
    GateCase gc;
    gc.attn = ac, gc.layers = kLayers;
    rows.push_back({"Gated Attention, elementwise", cost::gated_kv_cache_bytes_per_token(m, 2),
                    [gc, sch](int64_t* stored) {
                      int64_t total = 0;  // one layer at a time: the check runs per layer
                      const Verdict v = run_gated<bf16, kHeadDim>(
                          gc,
                          [&](const strata::attention::FlashFwdParams& a, const api::GateArgs& g) {
                            int64_t s = 0;
                            std::string e = decode_gated<bf16>(a, g, sch, {}, &s);
                            total += s;
                            return e;
                          });
                      *stored = total;
                      return v;
                    }});
  }
  for (auto kind : {ValueResidualKind::kResFormer, ValueResidualKind::kSVFormer}) {
    StackCase sc;
    sc.attn = ac, sc.layers = kLayers, sc.kind = kind;
    const bool res = kind == ValueResidualKind::kResFormer;
    rows.push_back({res ? "ResFormer (V' at append)" : "SVFormer (layer 0's V)",
                    res ? cost::resformer_kv_cache_bytes_per_token(m, 2)
                        : cost::svformer_kv_cache_bytes_per_token(m, 2),
                    [sc, sch](int64_t* stored) {
                      return run_stack<bf16, kHeadDim>(sc, [&](const api::ValueResidualStack& st) {
                        return decode_value_residual<bf16>(st, sch, {}, stored);
                      });
                    }});
  }
  {
    DepthCase dc;
    dc.attn = ac, dc.layers = kLayers, dc.stride = 2, dc.recent_window = 1;
    rows.push_back({"Depth-Attention (k^, v^ cached)", cost::depth_kv_cache_bytes_per_token(m, 2),
                    [dc, sch](int64_t* stored) {
                      return run_depth<bf16, kHeadDim>(dc, [&](const api::DepthStack& st) {
                        return decode_depth<bf16>(st, sch, {}, stored);
                      });
                    }});
  }
  {
    ExoCase ec;
    ec.attn = ac, ec.layers = kLayers;
    ec.attn.h_k = kHeads;  // ExoFormer is MHA
    cost::ModelShape mha = m;
    mha.num_kv_heads = kHeads;
    rows.push_back({"ExoFormer (MHA, k~, v~ cached)",
                    cost::exoformer_kv_cache_bytes_per_token(mha, 2), [ec, sch](int64_t* stored) {
                      return run_exoformer<bf16, kHeadDim>(ec, [&](const api::ExoStack& st) {
                        return decode_exo<bf16>(st, sch, {}, stored);
                      });
                    }});
  }

  for (bool out : {false, true}) {
    // MEA with virtual heads: the cache holds H_c = 1 component head per layer for the 2
    // composite heads the tiles rebuild (half a vanilla cache)
    MeaCase mc;
    mc.attn = ac, mc.layers = kLayers, mc.h_c = 1, mc.output_site = out;
    rows.push_back({out ? "MEA, GN on O (H_c = 1 cached)" : "MEA, GN on K', V' (H_c = 1 cached)",
                    cost::mea_kv_cache_bytes_per_token(m, 1, 2), [mc, sch](int64_t* stored) {
                      return run_mea<bf16, kHeadDim>(mc, [&](const api::MeaStack& st) {
                        return decode_mea<bf16>(st, sch, {}, stored);
                      });
                    }});
  }

  int tokens = 0;
  for (int n : kLens) tokens += n;
  std::printf(
      "Strata decode: L = %d layers, bf16, H = %d query / %d KV heads, d = %d, %zu sequences of"
      "\n%d tokens in all, generated after a 5-token prompt, block table of 16-token pages, "
      "%d key splits\n\n",
      kLayers, kHeads, kKvHeads, kHeadDim, kLens.size(), tokens, sch.num_splits);
  std::printf("%-34s %10s %16s %16s\n", "method", "worst", "cache B/token", "cost model");
  bool all = true;
  for (const Row& r : rows) {
    int64_t stored = 0;
    const Verdict v = r.run(&stored);
    const bool ok = v.pass() && stored == r.model_bytes * tokens;
    all = all && ok;
    std::printf("%-34s %10.3f %16lld %16lld  %s%s\n", r.method.c_str(), v.worst,
                static_cast<long long>(stored / tokens), static_cast<long long>(r.model_bytes),
                ok ? "ok" : "FAIL ", ok ? "" : (v.status + v.where).c_str());
  }
  std::printf(
      "\nworst: the largest error of any layer's O or LSE over every step, as a fraction of\n"
      "FlashAttention's bound (2x the same-dtype naive stack's error against fp64; 1 is the "
      "limit).\n%s\n",
      all ? "all methods pass" : "some methods FAILED");
  return all ? 0 : 1;
}
