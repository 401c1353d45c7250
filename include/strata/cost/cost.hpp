/// \file
/// Umbrella header of strata::cost: the analytic FLOP, byte, KV-cache and parameter model of each
/// attention method (SPEC sections 1c/1d, 2c/2d, 3c/3d, 4c/4d, 5c/5d, 6 and 7.8). Host C++ only,
/// no CUDA include, header-only, constexpr.
#pragma once

#include "strata/cost/attention.hpp"
#include "strata/cost/decode.hpp"
#include "strata/cost/depth.hpp"
#include "strata/cost/exoformer.hpp"
#include "strata/cost/gated.hpp"
#include "strata/cost/mea.hpp"
#include "strata/cost/model.hpp"
#include "strata/cost/papers.hpp"
#include "strata/cost/traffic.hpp"
#include "strata/cost/value_residual.hpp"
