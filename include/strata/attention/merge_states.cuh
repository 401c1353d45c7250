/// \file
/// Merging partial attention results by their LSE (FlashInfer's merge_state / merge_states): the
/// attention of the same queries over disjoint sets of keys — a shared prefix and each sequence's
/// own suffix (cascade attention), or a cache and new tokens — combines exactly into the attention
/// over their union:
///   LSE = log sum_i e^lse_i,   O = sum_i e^(lse_i - LSE) O_i
/// per (token, head) row, in fp32, one rounding to T. A state without keys for a row (lse = -inf)
/// contributes nothing; a row without keys anywhere gets O = 0, LSE = -inf. The states are what
/// paged_attention (or flash_fwd) writes: O [total, h, d] in T, LSE [h, total] fp32, natural log.
#pragma once

#include <cstdint>

#include "strata/attention/paged_attention.cuh"

namespace strata::attention {

/// Most states one merge combines.
inline constexpr int kMaxMergeStates = 8;

/// One partial attention result over a subset of the keys.
struct AttentionState {
  const void* o = nullptr;  ///< [total, h, d] (T)
  int64_t o_row_stride = 0, o_head_stride = 0;
  const float* lse = nullptr;  ///< [h, total] fp32, natural log (-inf: no keys)
};

/// The merge of num_states states of the same total rows.
struct MergeStatesParams {
  Dtype dtype = Dtype::kBf16;
  int total = 0, h = 0, d = 0;
  int num_states = 0;
  AttentionState states[kMaxMergeStates];
  /// [total, h, d] (T), written; may be states[i].o itself (each element is read by the thread
  /// that writes it: an in-place merge)
  void* o = nullptr;
  int64_t o_row_stride = 0, o_head_stride = 0;
  float* lse = nullptr;  ///< [h, total] fp32, written, or null; may be a state's lse
};

STRATA_EXECUTOR_BEGIN

/// Block (token, head), D threads.
template <class T, int D>
__global__ void __launch_bounds__(D) merge_states_kernel(const MergeStatesParams p) {
  const int64_t token = blockIdx.x;
  const int head = int(blockIdx.y), e = int(threadIdx.x);
  __shared__ float lse_s[kMaxMergeStates];
  float lse;
  const float o = merge_by_lse<D>(
      p.num_states, [&](int i) { return p.states[i].lse[int64_t(head) * p.total + token]; },
      [&](int i) {
        const AttentionState& st = p.states[i];
        return core::to_float(static_cast<const T*>(
            st.o)[token * st.o_row_stride + int64_t(head) * st.o_head_stride + e]);
      },
      lse_s, lse);  // the states' LSE were read before its barrier: an in-place lse is safe
  static_cast<T*>(p.o)[token * p.o_row_stride + int64_t(head) * p.o_head_stride + e] =
      core::from_float<T>(o);
  if (e == 0 && p.lse) p.lse[int64_t(head) * p.total + token] = lse;
}

STRATA_EXECUTOR_END
}  // namespace strata::attention
