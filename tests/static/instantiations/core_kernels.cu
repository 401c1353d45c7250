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
