// A kernel the ptxas gate must pass, whose SASS inventory shows Hopper's synchronisation units:
// mbarrier ops (SYNCS), setmaxnreg (USETMAXREG) with a cap at entry, stmatrix (STSM).
// strata-archs: sm_90a
#include <strata/strata.cuh>

#include <cstdint>

extern "C" __global__ void __launch_bounds__(256, 1) strata_probe_hopper_sync_ops(uint16_t* out) {
  namespace arch = strata::arch;
  __shared__ uint64_t bar;
  __shared__ __align__(16) uint16_t tile[32 * 8];
  if (threadIdx.x == 0) arch::mbarrier_init(&bar, 128);
  __syncthreads();
  if (threadIdx.x < 128) {
    arch::setmaxnreg_dec<40>();
    const uint32_t r[1] = {threadIdx.x};
    arch::stmatrix<1, false>(&tile[8 * (threadIdx.x % 32)], r);
    arch::mbarrier_arrive(&bar);
  } else {
    arch::setmaxnreg_inc<232>();
    arch::mbarrier_wait(&bar, 0);
    out[threadIdx.x] = tile[threadIdx.x % 256];
  }
}
