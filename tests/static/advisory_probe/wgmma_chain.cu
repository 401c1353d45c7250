// A kernel the ptxas gate must pass: a chain of four wgmmas over K with the fences, one commit
// and one wait, as the Hopper kernels issue them; its SASS has four HGMMA and no HMMA.
// strata-archs: sm_90a
#include <strata/strata.cuh>

#include <cstdint>

extern "C" __global__ void __launch_bounds__(128, 1)
    strata_probe_wgmma_chain(uint64_t da, uint64_t db, float* out) {
  namespace arch = strata::arch;
  arch::WgmmaAcc<128> d;
  for (int i = 0; i < 64; ++i) d.r[i] = 0.f;
  arch::wgmma_fence_operand(d);
  arch::wgmma_fence();
  for (int s = 0; s < 4; ++s) arch::wgmma_ss<128, __nv_bfloat16>(d, da + 2 * s, db + 2 * s, s > 0);
  arch::wgmma_commit();
  arch::wgmma_wait<0>();
  arch::wgmma_fence_operand(d);
  for (int i = 0; i < 64; ++i) out[threadIdx.x * 64 + i] = d.r[i];
}
