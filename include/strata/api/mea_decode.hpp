/// \file
/// MEA's attention over its component-head cache (strata/variants/mea_decode.cuh): validation, the
/// plan of a batch shape and the launchers. The cache holds H_c component heads (cache.h_k = H_c):
/// K_c and V_c at the KeyValue site, RoPE(K_c) and V_c at the Output site (append them with
/// kv_append); each step composes the H_kv composite heads inside the tile.
#pragma once

#include <cmath>
#include <string>

#include "strata/api/kv_cache.hpp"
#include "strata/api/mea.hpp"
#include "strata/variants/mea_decode.cuh"

namespace strata::api {

/// The GroupNorm and HLC parameters of one MEA layer, fp32.
struct MeaWeights {
  const float* a_k = nullptr;  ///< A^K, A^V [h_c, h_kv] row-major
  const float* a_v = nullptr;
  const float* gamma_k = nullptr;  ///< site KeyValue: GN affines of K', V' [h_kv, d]
  const float* beta_k = nullptr;
  const float* gamma_v = nullptr;
  const float* beta_v = nullptr;
  const float* gamma_o = nullptr;  ///< site Output: GN affine of the attention output [h, d]
  const float* beta_o = nullptr;
};

/// Attention of new tokens over an MEA cache.
struct MeaPagedAttentionParams {
  /// The attention: attn.cache holds cache.h_k = H_c component heads (<= kMeaMaxComponentHeads);
  /// attn.h query heads; attn.o receives the layer's output — O at the KeyValue site, GN_o(O) at
  /// the Output site; attn.lse the attention's LSE. attn.gate must be null (MEA has none).
  PagedAttentionParams attn;
  int h_kv = 0;  ///< composite heads (attn.h % h_kv == 0, <= kMeaMaxCompositeHeads)
  /// The site, the GroupNorm eps and, at the KeyValue site, RoPE of the composed keys at their
  /// cache positions (the Output site's cache holds keys already rotated at append)
  MeaOptions options;
  MeaWeights w;
};

namespace detail {
inline variants::MeaPagedArgs mea_paged_args(const MeaPagedAttentionParams& p) {
  const bool kv = p.options.site == core::NormSite::kKeyValue;
  variants::MeaPagedArgs m;
  m.h_kv = p.h_kv, m.a_k = p.w.a_k, m.a_v = p.w.a_v, m.kv_norm = kv;
  if (kv) {
    m.gamma_k = p.w.gamma_k, m.beta_k = p.w.beta_k, m.gamma_v = p.w.gamma_v;
    m.beta_v = p.w.beta_v;
  } else {
    m.gamma_o = p.w.gamma_o, m.beta_o = p.w.beta_o;
  }
  m.rope = kv && p.options.rope, m.rope_theta = p.options.rope_theta, m.eps = p.options.gn_eps;
  return m;
}
}  // namespace detail

/// Every field; Ok means the launcher will run it. Nothing is launched.
inline Status validate(const MeaPagedAttentionParams& p) {
  const core::NormSite site = p.options.site;
  if (site != core::NormSite::kKeyValue && site != core::NormSite::kOutput)
    return Status::InvalidArgument("options.site: not a NormSite value");
  const int h_c = p.attn.cache.h_k;
  if (h_c < 1 || h_c > variants::kMeaMaxComponentHeads)
    return Status::InvalidArgument("attn.cache.h_k = " + std::to_string(h_c) +
                                   ": the component heads H_c must be in [1, "
                                   "kMeaMaxComponentHeads = " +
                                   std::to_string(variants::kMeaMaxComponentHeads) + "]");
  if (p.h_kv < 1 || p.h_kv > variants::kMeaMaxCompositeHeads)
    return Status::InvalidArgument("h_kv = " + std::to_string(p.h_kv) +
                                   ": the composite heads must be in [1, "
                                   "kMeaMaxCompositeHeads = " +
                                   std::to_string(variants::kMeaMaxCompositeHeads) + "]");
  if (p.attn.gate) return Status::InvalidArgument("attn.gate: MEA has no output gate");
  if (Status s = detail::validate_paged(p.attn, p.h_kv, "h_kv", p.attn.h); !s.ok())
    return Status(s.code(), std::string("attn: ") + s.message());
  if (!(p.options.gn_eps > 0.f) || !std::isfinite(p.options.gn_eps))
    return Status::InvalidArgument("options.gn_eps must be finite and > 0");
  const bool kv = site == core::NormSite::kKeyValue;
  if (kv && p.options.rope &&
      (!(p.options.rope_theta > 1.f) || !std::isfinite(p.options.rope_theta)))
    return Status::InvalidArgument("options.rope_theta must be finite and > 1");
  const MeaWeights& w = p.w;
  if (Status s = detail::mea_check_ptrs({{w.a_k, "w.a_k"}, {w.a_v, "w.a_v"}}, 4); !s.ok()) return s;
  if (Status s = kv ? detail::mea_check_ptrs({{w.gamma_k, "w.gamma_k"},
                                              {w.beta_k, "w.beta_k"},
                                              {w.gamma_v, "w.gamma_v"},
                                              {w.beta_v, "w.beta_v"}},
                                             4)
                    : detail::mea_check_ptrs({{w.gamma_o, "w.gamma_o"}, {w.beta_o, "w.beta_o"}}, 4);
      !s.ok())
    return s;
  const size_t smem =
      variants::mea_decode_smem_bytes(p.attn.cache.d, h_c, p.h_kv, kv, sizeof(uint16_t));
  if (smem > max_dynamic_smem_bytes())
    return Status::InvalidArgument(
        "h_kv = " + std::to_string(p.h_kv) + ", d = " + std::to_string(p.attn.cache.d) + ": " +
        std::to_string(smem) + " bytes of shared memory, more than this device's " +
        std::to_string(max_dynamic_smem_bytes()));
  return Status::Ok();
}

/// Plans an MEA shape (shape.h_kv: composite heads; shape.h_k: the cached component heads H_c)
/// for a GPU of `num_sms` SMs: FlashAttention-2's split rule (paged_attention_num_splits) over
/// the kernel's grid, sequences x 64-row tiles of (token, query head) rows. Every block of a
/// split reads the layer's parameters once (A^K, A^V and, at the KeyValue site, 4 h_kv d gains:
/// 64 KiB at h_kv = 32, d = 128), so a split gets at least mea_min_keys_per_split keys: enough
/// that those reads stay within 5% of its cache reads (the KeyValue site's, the larger).
inline int mea_min_keys_per_split(int h_kv, int h_c, int d) {
  const int64_t params = 4 * (2 * int64_t(h_c) * h_kv + 4 * int64_t(h_kv) * d);
  const int64_t per_key = 2 * 2 * int64_t(h_c) * d;  // K and V component rows, 16-bit
  const int64_t keys = (20 * params + per_key - 1) / per_key;
  return int(keys > 64 ? keys : 64);
}
inline Status plan_mea_paged_attention(const PagedAttentionShape& shape, int num_sms,
                                       PagedAttentionPlan* plan, int max_splits = 128) {
  if (!plan) return Status::InvalidArgument("plan is null");
  if (shape.h_kv < 1 || shape.h_kv > variants::kMeaMaxCompositeHeads)
    return Status::InvalidArgument("shape.h_kv = " + std::to_string(shape.h_kv) +
                                   ": the composite heads must be in [1, 32]");
  if (shape.h_k < 1 || shape.h_k > variants::kMeaMaxComponentHeads)
    return Status::InvalidArgument("shape.h_k = " + std::to_string(shape.h_k) +
                                   ": the component heads must be in [1, 32]");
  const int64_t blocks = int64_t(shape.b) * ((int64_t(shape.max_seqlen_q) * shape.h + 63) / 64);
  const int keys = mea_min_keys_per_split(shape.h_kv, shape.h_k, shape.d > 0 ? shape.d : 1);
  const int tiles = int((int64_t(shape.max_seqlen_k) + keys - 1) / keys);
  return detail::plan_paged_shape(shape, num_sms, plan, max_splits, blocks, tiles);
}

/// Checks that a run fits an MEA plan (check_plan's fields and the plan's h_kv).
inline Status check_plan(const MeaPagedAttentionParams& p, const PagedAttentionPlan& plan) {
  if (plan.shape.h_kv != p.h_kv)
    return Status::InvalidArgument("h_kv = " + std::to_string(p.h_kv) + ": not the plan's " +
                                   std::to_string(plan.shape.h_kv) +
                                   (plan.shape.h_kv ? "" : " (not an MEA plan)"));
  return detail::check_plan_shape(p.attn, plan);
}

namespace detail {
STRATA_EXECUTOR_BEGIN
template <class T, int D>
Status launch_mea_paged(const MeaPagedAttentionParams& p, cudaStream_t stream) {
  const variants::MeaPagedArgs m = mea_paged_args(p);
  const size_t smem =
      variants::mea_decode_smem_bytes(D, p.attn.cache.h_k, p.h_kv, m.kv_norm, sizeof(T));
  if (Status s =
          launch(variants::mea_paged_attention_kernel<T, D>, variants::mea_decode_grid(p.attn),
                 dim3(variants::MeaPagedTraits<D>::kThreads), smem, stream, p.attn, m);
      !s.ok() || p.attn.num_splits == 1)
    return s;
  return launch(variants::mea_paged_merge_kernel<T, D>,
                dim3(unsigned(p.attn.total_q), unsigned(p.attn.h)), dim3(D), 0, stream, p.attn, m);
}
STRATA_EXECUTOR_END
}  // namespace detail

STRATA_EXECUTOR_BEGIN
/// Attention of the new tokens over an MEA cache (validated first): o (GN_o(O) at the Output
/// site) and lse, through fp32 partials and a merge when attn.num_splits > 1. The cache must
/// already hold the new tokens' component rows.
inline Status mea_paged_attention(const MeaPagedAttentionParams& p, cudaStream_t stream = 0) {
  if (Status s = validate(p); !s.ok()) return s;
  if (p.attn.total_q == 0) return Status::Ok();
  return detail::with_dtype_and_head_dim(p.attn.cache.dtype, p.attn.cache.d, [&]<class T, int D>() {
    return detail::launch_mea_paged<T, D>(p, stream);
  });
}

/// Under a plan (check_plan, then mea_paged_attention): the plan's grid for every layer.
inline Status mea_paged_attention(const MeaPagedAttentionParams& p, const PagedAttentionPlan& plan,
                                  cudaStream_t stream = 0) {
  if (Status s = check_plan(p, plan); !s.ok()) return s;
  return mea_paged_attention(p, stream);
}
STRATA_EXECUTOR_END

}  // namespace strata::api
