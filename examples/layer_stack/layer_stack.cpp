// Strata's flagship example: every implemented method's L-layer stack, forward 0 .. L-1 and
// backward L-1 .. 0 through the public API (the layer-stack helpers of strata/api), executed in
// the CPU SIMT simulator (g++/clang build) or on the GPU (nvcc build, buffers in managed memory:
// tests/kernels/executor_memory.hpp), each output and gradient checked against the fp64 reference
// with FlashAttention's rule, and a table of what it costs: FLOPs by FlashAttention's convention
// (the cost model, strata/cost), the method's extra FLOPs over vanilla attention, and the KV-cache
// bytes per token. The code that drives each stack — buffers, Params, the API calls — is in
// tests/variants/*_check.hpp (shared with the tests): copy it into a trainer.
//
// Exit code 0 only if every method passes.
#include <strata/cost/attention.hpp>
#include <strata/cost/depth.hpp>
#include <strata/cost/exoformer.hpp>
#include <strata/cost/gated.hpp>
#include <strata/cost/mea.hpp>
#include <strata/cost/value_residual.hpp>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "depth_check.hpp"
#include "exoformer_check.hpp"
#include "mea_check.hpp"
#include "output_gate_check.hpp"
#include "value_residual_check.hpp"

namespace {

using namespace kernel_test;
namespace cost = strata::cost;
using bf16 = __nv_bfloat16;

constexpr int kLayers = 4, kHeads = 4, kKvHeads = 2, kHeadDim = 64;
const std::vector<int> kLens = {1, 17, 129, 96};  // one packed (varlen) batch, ragged tiles

Case attention_case() {
  Case c;
  c.lens_q = kLens;
  c.h = kHeads, c.h_k = kKvHeads, c.d = kHeadDim, c.causal = true, c.seed = 2026;
  return c;
}

struct Row {
  std::string method;
  std::function<Verdict()> run;
  double extra_flops = 0;          // over vanilla, whole stack, forward + backward
  int64_t kv_bytes_per_token = 0;  // bf16 cache
  double bytes = 0;                // the method's own memory traffic, whole stack, fwd + bwd
};

/// Vanilla attention: L independent flash layers through api::flash_fwd / flash_bwd.
Verdict run_vanilla() {
  Verdict v;
  for (int l = 0; l < kLayers; ++l) {
    Case c = attention_case();
    c.seed += uint64_t(l);
    const BwdErrors b = run_backward<bf16, kHeadDim>(c);
    const Errors f = run_forward<bf16, kHeadDim>(c);
    if (!b.status.empty() || !f.status.empty()) v.status = b.status + f.status;
    const std::string tag = "layer " + std::to_string(l) + " ";
    const char* names[3] = {"dQ", "dK", "dV"};
    for (int g = 0; g < 3; ++g) {
      const double r = b.kernel[g] / (2 * b.naive[g] + b.atol[g]);
      if (!(r <= v.worst)) v.worst = r, v.where = tag + names[g];
    }
    const double ro = f.o_kernel / (2 * f.o_naive + 1e-5);
    if (!(ro <= v.worst)) v.worst = ro, v.where = tag + "O";
    v.nan = v.nan || b.nan || f.nan || f.lse_inf_mismatch;
  }
  return v;
}

}  // namespace

int main() {
#if STRATA_SIM
  const char* executor = "the CPU SIMT simulator";
#else
  const char* executor = "CUDA device 0";
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr,
                 "strata_layer_stack: no usable CUDA device (build it with g++/clang and "
                 "strata::sim to run it in the simulator)\n");
    return 2;
  }
#endif
  const Case ac = attention_case();
  int64_t tokens = 0;
  std::vector<int32_t> cu = {0};
  for (int n : kLens) cu.push_back(cu.back() + n), tokens += n;

  cost::ModelShape m;
  m.num_layers = kLayers, m.hidden = kHeads * kHeadDim, m.num_heads = kHeads;
  m.num_kv_heads = kKvHeads, m.head_dim = kHeadDim, m.causal = true;
  const int64_t pairs = cost::connected_pairs_varlen(cu, cu, true, -1);
  const double attn_flops =
      kLayers * (cost::attention_forward_flops_exact(pairs, kHeads, kHeadDim) +
                 cost::attention_backward_flops_exact(pairs, kHeads, kHeadDim));
  const auto per_token = [&](int64_t fwd, int64_t bwd) { return double(fwd + bwd) * tokens; };
  const auto moved = [&](const cost::Traffic& t) { return double(t.total(tokens)); };
  const cost::Storage bf = cost::kBf16;
  const double gate_bytes =  // the elementwise gate in the attention's epilogue and preprocess
      kLayers * moved(cost::gated_epilogue_forward_traffic(m, GateKind::kElementwise, bf) +
                      cost::gated_fused_backward_traffic(m, GateKind::kElementwise, bf));

  std::vector<Row> rows;
  rows.push_back({"vanilla attention", run_vanilla, 0.0, cost::kv_cache_bytes_per_token(m, 2)});
  for (MixGranularity g : {MixGranularity::kScalar, MixGranularity::kHeadwise}) {
    const cost::ResLambda rl =
        g == MixGranularity::kScalar ? cost::ResLambda::Scalar : cost::ResLambda::Head;
    StackCase sc;
    sc.attn = ac, sc.layers = kLayers, sc.kind = ValueResidualKind::kResFormer, sc.granularity = g;
    rows.push_back({std::string("ResFormer, lambda ") +
                        (g == MixGranularity::kScalar ? "scalar" : "per KV head"),
                    [sc] { return run_stack<bf16, kHeadDim>(sc); },
                    per_token(cost::resformer_extra_forward_flops_per_token(m),
                              cost::resformer_extra_backward_flops_per_token(m)),
                    cost::resformer_kv_cache_bytes_per_token(m, 2),
                    (kLayers - 1) * moved(cost::resformer_mix_forward_traffic(m, rl, bf) +
                                          cost::resformer_mix_backward_traffic(m, rl, bf))});
  }
  {
    StackCase sc;
    sc.attn = ac, sc.layers = kLayers, sc.kind = ValueResidualKind::kSVFormer;
    rows.push_back({"SVFormer", [sc] { return run_stack<bf16, kHeadDim>(sc); },
                    per_token(cost::svformer_extra_forward_flops_per_token(m),
                              cost::svformer_extra_backward_flops_per_token(m)),
                    cost::svformer_kv_cache_bytes_per_token(m, 2),
                    (kLayers - 1) * moved(cost::svformer_backward_traffic(m, bf))});
  }
  for (GateKind k : {GateKind::kElementwise, GateKind::kHeadwise}) {
    GateCase gc;
    gc.attn = ac, gc.layers = kLayers, gc.kind = k;
    rows.push_back({std::string("Gated Attention, ") +
                        (k == GateKind::kElementwise ? "elementwise" : "headwise"),
                    [gc] { return run_gated<bf16, kHeadDim>(gc); },
                    per_token(cost::gated_extra_forward_flops_per_token(m, k),
                              cost::gated_extra_backward_flops_per_token(m, k)),
                    cost::gated_kv_cache_bytes_per_token(m, 2),
                    kLayers * moved(cost::gated_epilogue_forward_traffic(m, k, bf) +
                                    cost::gated_fused_backward_traffic(m, k, bf))});
  }
  {
    GateCase gc;
    gc.attn = ac, gc.layers = kLayers, gc.kind = GateKind::kElementwise, gc.qk_norm_rope = true;
    rows.push_back(
        {"Gated, QK-norm + RoPE (Qwen3)", [gc] { return run_gated<bf16, kHeadDim>(gc); },
         per_token(cost::gated_extra_forward_flops_per_token(m, GateKind::kElementwise),
                   cost::gated_extra_backward_flops_per_token(m, GateKind::kElementwise)),
         cost::gated_kv_cache_bytes_per_token(m, 2),
         gate_bytes + kLayers * moved(cost::qk_norm_rope_forward_traffic(m, true, bf) +
                                      cost::qk_norm_rope_backward_traffic(m, true, bf))});
  }
  {
    DepthCase dc;
    dc.attn = ac, dc.layers = kLayers, dc.stride = 2, dc.recent_window = 1;
    double extra = 0, bytes = 0;
    for (int l = 0; l < kLayers; ++l) {
      const int64_t n = cost::depth_num_sources(l, 2, 1);
      extra += per_token(cost::depth_extra_forward_flops_layer(m, n),
                         cost::depth_extra_backward_flops_layer(m, n));
      bool is_source = false;  // a later layer reads this one
      for (int j = l + 1; j < kLayers; ++j)
        for (int s : ref::depth_sources(kLayers, 2, 1)[size_t(j)]) is_source |= s == l;
      bytes += moved(cost::depth_fused_forward_traffic(m, n, true, bf) +
                     cost::depth_fused_backward_traffic(m, n, true, is_source, bf));
    }
    rows.push_back({"Depth-Attention (stride 2, rec. 1)",
                    [dc] { return run_depth<bf16, kHeadDim>(dc); }, extra,
                    cost::depth_kv_cache_bytes_per_token(m, 2), bytes});
  }
  for (bool dynamic : {true, false}) {
    ExoCase ec;
    ec.attn = ac, ec.layers = kLayers, ec.dynamic = dynamic;
    ec.granularity = dynamic ? MixGranularity::kElementwise : MixGranularity::kScalar;
    cost::ExoOptions o;
    o.dynamic = dynamic, o.lambda = ec.granularity;
    // over vanilla: Gated Attention's gate (ExoFormer's baseline) plus the anchors and the mix
    const double extra =
        per_token(cost::gated_extra_forward_flops_per_token(m, GateKind::kElementwise),
                  cost::gated_extra_backward_flops_per_token(m, GateKind::kElementwise)) +
        per_token(cost::exoformer_extra_forward_flops_per_token(m, o),
                  cost::exoformer_extra_backward_flops_per_token(m, o));
    double bytes = gate_bytes;
    for (int l = 0; l < kLayers; ++l)
      bytes += moved(cost::exoformer_fused_forward_traffic(m, o, bf) +
                     cost::exoformer_fused_backward_traffic(m, o, l + 1 < kLayers, l == 0, bf));
    rows.push_back({dynamic ? "ExoFormer dynamic, elementwise" : "ExoFormer static, scalar",
                    [ec] { return run_exoformer<bf16, kHeadDim>(ec); }, extra,
                    cost::exoformer_kv_cache_bytes_per_token(m, 2), bytes});
  }
  for (bool output_site : {false, true}) {
    // KeyValue site with the full H_kv component heads; Output site with virtual heads (H_c =
    // H_kv / 2 cached heads, expanded into K', V' before the attention)
    MeaCase mc;
    mc.attn = ac, mc.layers = kLayers, mc.output_site = output_site;
    mc.h_c = output_site ? kKvHeads / 2 : kKvHeads;
    const cost::NormSite site = output_site ? cost::NormSite::kOutput : cost::NormSite::kKeyValue;
    const double bytes =
        kLayers * (output_site ? moved(cost::mea_output_prepass_forward_traffic(m, mc.h_c, bf) +
                                       cost::mea_output_compose_forward_traffic(m, mc.h_c, bf) +
                                       cost::mea_output_epilogue_forward_traffic(m, bf) +
                                       cost::mea_output_fused_backward_traffic(m, mc.h_c, bf))
                               : moved(cost::mea_kv_fused_forward_traffic(m, mc.h_c, bf) +
                                       cost::mea_kv_fused_backward_traffic(m, mc.h_c, bf)));
    rows.push_back({output_site ? "MEA, GN at output, virtual heads" : "MEA, GroupNorm at K', V'",
                    [mc] { return run_mea<bf16, kHeadDim>(mc); },
                    per_token(cost::mea_extra_forward_flops_per_token(m, mc.h_c, site),
                              cost::mea_extra_backward_flops_per_token(m, mc.h_c, site)),
                    cost::mea_kv_cache_bytes_per_token(m, mc.h_c, 2), bytes});
  }

  std::printf(
      "Strata layer stacks: L = %d layers, bf16, H = %d query / %d KV heads, d = %d, causal,\n"
      "one packed batch of %zu sequences (lengths",
      kLayers, kHeads, kKvHeads, kHeadDim, kLens.size());
  for (int n : kLens) std::printf(" %d", n);
  std::printf("), forward and backward in %s.\n", executor);
  std::printf(
      "error: worst max|kernel - fp64| / (2 max|naive bf16 - fp64| + atol) over every\n"
      "output and gradient of every layer (pass: <= 1). FLOPs: attention by FlashAttention's\n"
      "convention (exact causal pairs), forward + backward, %.3g GFLOP per stack for all\n"
      "methods; extra: the method's own FLOPs over vanilla per the cost model (negative:\n"
      "saved); hidden width C = H d = %d for the projections it adds or removes.\n"
      "extra MB: the memory traffic of the method's own work (fused token-local passes, mixing\n"
      "at tile load, gate epilogue), forward + backward, the cost model's minimum\n"
      "(strata/cost; tests/traffic measures the passes at 1.00-1.02x of it).\n\n",
      attn_flops * 1e-9, kHeads * kHeadDim);
  std::printf("%-36s %8s  %-18s %12s %10s %12s %8s\n", "method", "error", "worst at", "extra MFLOP",
              "extra MB", "KV B/token", "time s");
  int failed = 0;
  for (const Row& r : rows) {
    const auto t0 = std::chrono::steady_clock::now();
    const Verdict v = r.run();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const bool ok = v.pass();
    failed += !ok;
    std::printf("%-36s %8.3f  %-18s %12.3f %10.3f %12lld %8.1f%s\n", r.method.c_str(), v.worst,
                v.where.c_str(), r.extra_flops * 1e-6, r.bytes * 1e-6,
                (long long)r.kv_bytes_per_token, secs, ok ? "" : "  FAIL");
    if (!v.status.empty()) std::printf("    status: %s\n", v.status.c_str());
  }
  std::printf("\n%s\n", failed ? "FAILED" : "all methods pass");
  return failed ? 1 : 0;
}
