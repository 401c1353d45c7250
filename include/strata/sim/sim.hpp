/// \file
/// The SIMT simulator: CUDA C++ kernels executed on the CPU, a fiber per CUDA thread.
/// Included by <strata/strata.cuh> in translation units that are not compiled by nvcc.
#pragma once

#include "strata/sim/counters.hpp"
#include "strata/sim/cuda_host.hpp"
#include "strata/sim/emulated_ptx.hpp"
#include "strata/sim/hopper_sync.hpp"
#include "strata/sim/launch.hpp"
#include "strata/sim/options.hpp"
#include "strata/sim/runtime.hpp"
#include "strata/sim/tma.hpp"
#include "strata/sim/wgmma.hpp"
#include "strata/sim/traffic.hpp"
