/// \file
/// The option vocabulary of the methods, shared by core, cost and (later) the public API: the
/// granularity of a mixing coefficient, of the output gate, and the site of MEA's head GroupNorm.
/// Plain C++ (no CUDA header), so that host-only users such as strata/cost can include it.
#pragma once

#include "strata/config.hpp"

namespace strata::core {

/// Granularity of a mixing coefficient lambda (ExoFormer's `residual_mode`; ResFormer's lambda is
/// scalar or per KV head).
enum class MixGranularity { kElementwise, kHeadwise, kScalar };

/// Offset of the coefficient of (head, i) in a lambda stored as [H,d], [H] or [] (one value).
STRATA_HOST_DEVICE int lambda_offset(MixGranularity g, int head, int i, int head_dim) {
  return g == MixGranularity::kElementwise ? head * head_dim + i
         : g == MixGranularity::kHeadwise  ? head
                                           : 0;
}

/// Number of coefficients of a lambda of granularity g for `heads` heads of `head_dim`.
STRATA_HOST_DEVICE int lambda_count(MixGranularity g, int heads, int head_dim) {
  return g == MixGranularity::kElementwise ? heads * head_dim
         : g == MixGranularity::kHeadwise  ? heads
                                           : 1;
}

/// Granularity of the sigmoid output gate (Gated Attention, SPEC §5a): one logit per head and
/// dimension, or one per head broadcast over d.
enum class GateKind { kElementwise, kHeadwise };

/// Where MEA applies its head GroupNorm (SPEC §7.5): on the composed K' and V' (reading A, the
/// default) or on each head's attention output before W_O (reading B).
enum class NormSite { kKeyValue, kOutput };

}  // namespace strata::core
