/// \file
/// Strata: fused attention kernels for cross-layer and cross-head attention variants.
///
/// Include this header from .cu files compiled by nvcc (the GPU executor) or from C++ files
/// compiled by g++/clang (the SIMT simulator executes the same kernels on the CPU; link
/// strata::sim).
#pragma once

#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/sim.hpp"
#endif
#include "strata/arch/arch.hpp"
#include "strata/core/core.hpp"
#include "strata/launch.hpp"
#include "strata/status.hpp"
