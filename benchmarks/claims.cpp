// The claims program: each paper's claim about cost beside what Strata computes, from the cost
// model (strata/cost, SPEC's formulas on the papers' configurations) and from the simulator's
// counters (the bytes the cache-append kernel really writes per token, the mma the fused
// attention kernels really issue). It exits non-zero when a computed figure contradicts a claim,
// so that CI (label claims) fails the day a kernel or a formula drifts from what the papers say.
//
// Only claims that a count can decide are judged: FLOP shares, parameter counts, cache bytes and
// tensor-core work. Wall-time claims (Gated Attention's "< 2% latency") need a GPU; their FLOP
// share is printed beside them and marked "not judged".
//
// Usage: strata_claims   (prints a Markdown table; exit 1 on a contradiction)
#include <strata/api/flash.hpp>
#include <strata/api/kv_cache.hpp>
#include <strata/api/output_gate.hpp>
#include <strata/cost/cost.hpp>

#include "watched_tensor.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

static_assert(strata::sim::traffic::kEnabled, "strata_claims must be a traffic build");

namespace {

namespace att = strata::attention;
namespace cost = strata::cost;
namespace papers = strata::cost::papers;
namespace traffic = strata::sim::traffic;
using bf16 = __nv_bfloat16;

template <class T>
using Tensor = strata_bench::WatchedTensor<T>;

int failures = 0;

/// One row of the table; `ok` is the verdict (a contradiction fails the program).
void row(const char* paper, const char* claim, const std::string& config, const std::string& model,
         const std::string& measured, const char* verdict, bool ok) {
  std::printf("| %s | %s | %s | %s | %s | %s |\n", paper, claim, config.c_str(), model.c_str(),
              measured.c_str(), ok ? verdict : "CONTRADICTED");
  if (!ok) ++failures;
}

std::string fmt(const char* f, double x) {
  char b[64];
  std::snprintf(b, sizeof b, f, x);
  return b;
}

std::string shape(const cost::ModelShape& m) {
  char b[96];
  std::snprintf(b, sizeof b, "L %lld, C %lld, H %lld/%lld, d %lld", (long long)m.num_layers,
                (long long)m.hidden, (long long)m.num_heads, (long long)m.num_kv_heads,
                (long long)m.head_dim);
  return b;
}

/// Global bytes per token that strata::api::kv_append writes for one layer: `heads` KV heads of
/// d = m.head_dim, K and (with store_v) V, bf16, for 16 new tokens (measured, traffic build).
double append_bytes_per_token(int heads, int d, bool store_v) {
  constexpr int kTokens = 16;
  const size_t row = size_t(heads) * size_t(d);
  Tensor<bf16> kc(kTokens * row), vc(kTokens * row), kn(kTokens * row, 0.1f), vn(kTokens * row);
  std::vector<int64_t> slots(kTokens);
  for (int t = 0; t < kTokens; ++t) slots[t] = t;
  att::KvAppendParams p;
  p.cache.k = att::nhd_cache(kc.p, kTokens, heads, d);
  p.cache.v = att::nhd_cache(vc.p, kTokens, heads, d);
  p.cache.dtype = att::Dtype::kBf16;
  p.cache.h_k = heads, p.cache.d = d, p.cache.page_size = kTokens, p.cache.num_pages = 1;
  p.cache.b = 1;
  p.k_new = kn.p, p.v_new = vn.p;
  p.k_new_row_stride = p.v_new_row_stride = int64_t(row);
  p.k_new_head_stride = p.v_new_head_stride = d;
  p.total_new = kTokens;
  p.slot_mapping = slots.data();
  p.store_v = store_v;
  strata::sim::reset_counters();
  const strata::Status s = strata::api::kv_append(p);
  if (!s.ok()) {
    std::fprintf(stderr, "strata_claims: kv_append: %s\n", s.message());
    std::exit(2);
  }
  return double(strata::sim::total_counters().global_store_bytes) / kTokens;
}

/// Measured KV-cache bytes per token of a whole model: the sum over layers of what the append
/// kernel writes, with `heads` cached heads per layer: K and V in every layer, or (SVFormer) V in
/// layer 0 only.
double model_cache_bytes(const cost::ModelShape& m, int heads, bool v_every_layer) {
  const double kv = append_bytes_per_token(heads, int(m.head_dim), true);
  const double k_only = append_bytes_per_token(heads, int(m.head_dim), false);
  return v_every_layer ? double(m.num_layers) * kv : kv + double(m.num_layers - 1) * k_only;
}

/// mma.sync the forward issues for one head of 256 tokens, d, with and without an output gate
/// (simulator counters): the fused epilogue must add no tensor-core work.
void gated_mma(int d, uint64_t& vanilla, uint64_t& gated) {
  constexpr int T = 256;
  const size_t n = size_t(T) * size_t(d);
  Tensor<bf16> q(n, -0.05f), k(n, 0.02f), v(n, 0.1f), o(n), g(n, 0.3f), og(n);
  Tensor<float> lse(static_cast<size_t>(T));
  att::FlashFwdParams p;
  p.q = q.p, p.k = k.p, p.v = v.p, p.o = o.p, p.lse = lse.p;
  p.dtype = att::Dtype::kBf16;
  p.b = 1, p.h = 1, p.h_k = 1, p.d = d, p.seqlen_q = p.seqlen_k = p.total_q = T;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = d;
  p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = d;
  p.softmax_scale = 1.f / std::sqrt(float(d));
  p.is_causal = true;
  strata::sim::reset_counters();
  if (!strata::api::flash_fwd(p).ok()) std::exit(2);
  vanilla = strata::sim::total_counters().mma;
  strata::api::GateArgs g_args;
  g_args.gate = g.p;
  g_args.gate_row_stride = d;
  g_args.gate_head_stride = d;
  p.o = og.p;  // the gated output
  strata::sim::reset_counters();
  const strata::Status s = strata::api::gated_forward(p, g_args);
  if (!s.ok()) {
    std::fprintf(stderr, "strata_claims: gated_forward: %s\n", s.message());
    std::exit(2);
  }
  gated = strata::sim::total_counters().mma;
}

}  // namespace

int main() {
  std::printf(
      "Claims of the papers beside Strata's figures: \"model\" from strata/cost (SPEC's formulas "
      "on "
      "the papers' configurations, strata/cost/papers.hpp), \"measured\" from the simulator's "
      "counters (bytes the cache-append kernel writes per token, summed over the layers; mma the "
      "forward kernels issue). bf16 caches.\n\n"
      "| paper | claim | configuration | model | measured | verdict |\n"
      "|---|---|---|---|---|---|\n");

  // Depth-Attention: < 0.01% extra FLOPs; no parameters and no state beyond the KV cache.
  for (const auto& [name, m, stride] :
       {std::tuple{"3B", papers::kDepth3B, papers::kDepth3BStride},
        std::tuple{"410M", papers::kDepth410M, papers::kDepth410MStride}}) {
    const double extra = double(cost::depth_extra_forward_flops_per_token(m, stride, 0, true)),
                 base = cost::forward_flops_per_token_2n(m), share = 100.0 * extra / base;
    const std::string cfg = std::string(name) + ": " + shape(m) + ", sources every " +
                            std::to_string(stride) + " layers";
    // The abstract states the figure for its headline decoders (1.5B and 3B, SPEC 1g); the
    // smaller companion config is printed for comparison, not judged.
    const bool headline = m.num_layers == papers::kDepth3B.num_layers;
    row("Depth-Attention", "< 0.01% extra FLOPs", cfg,
        fmt("%.4f%%", share) + " (" + fmt("%.3g", extra) + " of " + fmt("%.3g", base) +
            " FLOPs/token (2N), softmax included)",
        "-",
        headline       ? "holds"
        : share < 0.01 ? "holds (not the headline model)"
                       : "above 0.01% (not judged: the claim is for the 1.5B/3B models)",
        !headline || share < 0.01);
    row("Depth-Attention", "no parameters added", cfg, std::to_string(cost::depth_extra_params(m)),
        "-", "holds", cost::depth_extra_params(m) == 0);
    const double vanilla_model = double(cost::kv_cache_bytes_per_token(m, 2)),
                 depth_model = double(cost::depth_kv_cache_bytes_per_token(m, 2));
    const double measured = model_cache_bytes(m, int(m.num_kv_heads), true);
    row("Depth-Attention", "no state beyond the standard KV cache", cfg,
        fmt("%.0f B/token", depth_model) + " = vanilla " + fmt("%.0f", vanilla_model),
        fmt("%.0f B/token (v-hat in the V slot)", measured), "holds",
        depth_model == vanilla_model && measured == vanilla_model);
  }

  // ResFormer / SVFormer: the cache unchanged; SVFormer's nearly halved.
  {
    const cost::ModelShape& m = papers::kResFormer82M;
    const std::string cfg = "82M-class: " + shape(m) + " (8 layers as the paper's)";
    const double vanilla = double(cost::kv_cache_bytes_per_token(m, 2));
    const double res = double(cost::resformer_kv_cache_bytes_per_token(m, 2));
    const double measured_v = model_cache_bytes(m, int(m.num_kv_heads), true);
    row("ResFormer", "KV cache unchanged (V' mixed at append)", cfg,
        fmt("%.0f B/token", res) + " = vanilla " + fmt("%.0f", vanilla),
        fmt("%.0f B/token", measured_v), "holds", res == vanilla && measured_v == vanilla);
    const double share = 100.0 * double(cost::resformer_extra_forward_flops_per_token(m)) /
                         cost::forward_flops_per_token_2n(m);
    row("ResFormer", "similar compute", cfg, fmt("%.5f%% extra FLOPs", share), "-", "holds",
        share < 0.1);
    const double frac = cost::svformer_kv_cache_fraction(m);
    const double measured_sv = model_cache_bytes(m, int(m.num_kv_heads), false);
    row("SVFormer", "KV cache reduced by nearly half", cfg, fmt("%.4f of vanilla ((L+1)/2L)", frac),
        fmt("%.4f of vanilla (K every layer, V at layer 0)", measured_sv / measured_v),
        "holds (< 0.6)", frac < 0.6 && std::fabs(measured_sv / measured_v - frac) < 1e-12);
  }

  // MEA virtual heads: H_c = H/2 component heads cached, a 50% KV-cache reduction.
  {
    const cost::ModelShape& m = papers::kMea;
    const int64_t hc = papers::kMeaVirtualComponentHeads;
    const std::string cfg = shape(m) + ", H_c = " + std::to_string(hc);
    const double model = double(cost::mea_kv_cache_bytes_per_token(m, hc, 2)) /
                         double(cost::kv_cache_bytes_per_token(m, 2));
    const double measured =
        model_cache_bytes(m, int(hc), true) / model_cache_bytes(m, int(m.num_kv_heads), true);
    row("MEA", "virtual heads: 50% KV-cache reduction", cfg, fmt("%.4f of vanilla", model),
        fmt("%.4f of vanilla (K_c, V_c appended)", measured), "holds",
        model == 0.5 && measured == 0.5);
  }

  // ExoFormer over its Gated Attention baseline: SPEC 3d's derived ≈ 1.1% at L = 32.
  {
    const cost::ModelShape& m = papers::kExo;
    const double share = 100.0 * double(cost::exoformer_extra_forward_flops_per_token(m)) /
                         cost::forward_flops_per_token(m);
    row("ExoFormer", "small overhead over Gated Attention (SPEC 3d: about 1.1% at L = 32)",
        "train.py: " + shape(m), fmt("%.2f%% extra forward FLOPs", share), "-", "holds (< 2%)",
        share < 2.0);
    const double cache = double(cost::exoformer_kv_cache_bytes_per_token(m, 2)),
                 vanilla = double(cost::kv_cache_bytes_per_token(m, 2));
    row("ExoFormer", "KV cache unchanged", "train.py: " + shape(m), fmt("%.0f B/token", cache), "-",
        "holds", cache == vanilla);
  }

  // Gated Attention: < 2% wall-time overhead (not decidable here); the fused gate adds no mma.
  {
    const cost::ModelShape& m = papers::kExo;
    const double share = 100.0 * double(cost::gated_extra_forward_flops_per_token(m)) /
                         cost::forward_flops_per_token(m);
    row("Gated Attention", "< 2% wall-time overhead", "ExoFormer's baseline: " + shape(m),
        fmt("%.2f%% extra forward FLOPs (the gate GEMM)", share), "needs a GPU", "not judged",
        true);
    uint64_t vanilla = 0, gated = 0;
    gated_mma(int(m.head_dim), vanilla, gated);
    row("Gated Attention", "the gate costs no attention work (fused epilogue)",
        "one head, 256 tokens, causal, d " + std::to_string(m.head_dim), "0 extra mma",
        std::to_string(gated) + " mma vs vanilla " + std::to_string(vanilla), "holds",
        gated == vanilla);
  }

  std::printf("\n%s\n", failures ? "Some claims are contradicted (rows marked CONTRADICTED)."
                                 : "No claim is contradicted.");
  return failures ? 1 : 0;
}
