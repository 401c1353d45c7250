/// \file
/// strata/core: the per-token math of every method, host+device, fp32 compute on bf16 / fp16 /
/// fp32 storage, forward and backward (DESIGN.md §2; the formulas are SPEC.md's).
#pragma once

#include "strata/core/anchor_mix.hpp"
#include "strata/core/depth_softmax.hpp"
#include "strata/core/gate.hpp"
#include "strata/core/group_norm.hpp"
#include "strata/core/head_compose.hpp"
#include "strata/core/numeric.hpp"
#include "strata/core/online_softmax.hpp"
#include "strata/core/options.hpp"
#include "strata/core/rmsnorm.hpp"
#include "strata/core/rope.hpp"
#include "strata/core/value_residual.hpp"
