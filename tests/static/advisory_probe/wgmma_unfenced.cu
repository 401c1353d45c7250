// A kernel the ptxas gate must fail: a wgmma whose accumulators are written before and read
// after it with no wgmma.fence / wait_group, for which ptxas injects warpgroup.arrive (C7519)
// and warpgroup.wait (C7517) and serialises the op.
// strata-archs: sm_90a
#include <strata/strata.cuh>

#include <cstdint>

extern "C" __global__ void __launch_bounds__(128, 1)
    strata_probe_wgmma_unfenced(const float* fin, uint64_t da, uint64_t db, float* out) {
  strata::arch::WgmmaAcc<64> d;
  for (int i = 0; i < 32; ++i) d.r[i] = fin[i];
  strata::arch::wgmma_ss<64, __nv_bfloat16>(d, da, db, true);
  for (int i = 0; i < 32; ++i) out[i] = d.r[i];
}
