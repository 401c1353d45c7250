// The output-gate policy's kernels (Gated Attention / ExoFormer's gate,
// strata/variants/output_gate.cuh): the forward epilogue and the backward preprocess change; the
// dQ and dK/dV kernels run the vanilla hooks but are distinct instantiations that the API ships.
#include <strata/attention/flash_bwd.cuh>
#include <strata/attention/flash_fwd.cuh>
#include <strata/variants/output_gate.cuh>

namespace sa = strata::attention;
namespace sv = strata::variants;

#define STRATA_GATE(T, D)                                                                      \
  template __global__ void sa::flash_fwd_kernel<T, D, sv::OutputGate>(const sa::FlashFwdParams, \
                                                                      const sv::OutputGate);    \
  template __global__ void sa::flash_bwd_preprocess_kernel<T, D, sv::OutputGate>(              \
      const sa::FlashBwdParams, const sv::OutputGate);                                         \
  template __global__ void sa::flash_bwd_dq_kernel<T, D, sv::OutputGate>(                      \
      const sa::FlashBwdParams, const sv::OutputGate);                                         \
  template __global__ void sa::flash_bwd_dkdv_kernel<T, D, sv::OutputGate>(                    \
      const sa::FlashBwdParams, const sv::OutputGate);
STRATA_GATE(__nv_bfloat16, 64)
STRATA_GATE(__nv_bfloat16, 96)
STRATA_GATE(__nv_bfloat16, 128)
STRATA_GATE(__half, 64)
STRATA_GATE(__half, 96)
STRATA_GATE(__half, 128)
