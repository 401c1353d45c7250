// strata/core functions compiled for the device: each must build for sm_80/sm_90a within budget.
#include <strata/strata.cuh>

namespace core_probe {
/// One softmax row per thread, streamed one score at a time: output and log-sum-exp.
__global__ void online_softmax_rows(const float* scores, const float* values, float* out,
                                    float* lse, int rows, int n) {
  const int r = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (r >= rows) return;
  strata::core::OnlineSoftmax st;
  float acc = 0.f;
  for (int j = 0; j < n; ++j) {
    float p;
    acc *= st.update(scores[size_t(r) * n + j] * strata::core::kLog2e, p);
    acc += p * values[j];
  }
  out[r] = acc * st.inv_sum();
  lse[r] = st.lse();
}
}  // namespace core_probe

// The token-local probes of strata/core (row of 64 over 8 lanes), bf16 storage.
#include "../../core/core_device_kernels.cuh"

template __global__ void core_device::qk_norm_rope<__nv_bfloat16>(const __nv_bfloat16*,
                                                                  const __nv_bfloat16*,
                                                                  __nv_bfloat16*, int, int, float,
                                                                  float);
template __global__ void core_device::depth_mix<__nv_bfloat16>(const __nv_bfloat16*,
                                                               const __nv_bfloat16* const*,
                                                               const __nv_bfloat16* const*, int,
                                                               __nv_bfloat16*, int, int, int);
template __global__ void core_device::depth_mix_backward<__nv_bfloat16>(
    const __nv_bfloat16*, const __nv_bfloat16* const*, const __nv_bfloat16* const*, int,
    const __nv_bfloat16*, float*, float* const*, float* const*, int, int, int);
template __global__ void core_device::anchor_mix_norm_gate<__nv_bfloat16>(
    const __nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*, const float*, const float*,
    const float*, const float*, const float*, __nv_bfloat16*, int, int, float, float);
template __global__ void core_device::compose_group_norm<__nv_bfloat16, 8>(
    const __nv_bfloat16*, const float*, const float*, const float*, __nv_bfloat16*, int, int, int,
    float);
template __global__ void core_device::norm_gate_backward<__nv_bfloat16>(
    const __nv_bfloat16*, const float*, const __nv_bfloat16*, const __nv_bfloat16*, float*, float*,
    float*, float*, float*, float*, float*, int, float);
