// A kernel the ptxas gate must fail: setmaxnreg without a register cap at entry (no
// __launch_bounds__ minimum, no -maxrregcount), which ptxas ignores with advisory C7508.
// strata-archs: sm_90a
#include <strata/strata.cuh>

extern "C" __global__ void strata_probe_setmaxnreg_no_cap() {
  strata::arch::setmaxnreg_inc<240>();
}
