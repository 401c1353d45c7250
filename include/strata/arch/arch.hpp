/// \file
/// strata/arch: the only inline PTX of the project. Each op is a small wrapper whose device pass
/// is one asm statement and whose simulator twin lives in strata/sim/emulated_ptx.hpp; golden-PTX
/// tests pin every asm string. sfu.hpp is the exception: plain CUDA math behind counted wrappers.
#pragma once

#include "strata/arch/cp_async.hpp"
#include "strata/arch/fragment.hpp"
#include "strata/arch/ldmatrix.hpp"
#include "strata/arch/mbarrier.hpp"
#include "strata/arch/mma.hpp"
#include "strata/arch/named_barrier.hpp"
#include "strata/arch/sfu.hpp"
#include "strata/arch/sm90.hpp"
#include "strata/arch/smem.hpp"
#include "strata/arch/stmatrix.hpp"
#include "strata/arch/tensor_map.hpp"
#include "strata/arch/tma.hpp"
#include "strata/arch/vec16.hpp"
#include "strata/arch/warp.hpp"
#include "strata/arch/wgmma.hpp"
#include "strata/arch/wgmma_layout.hpp"
