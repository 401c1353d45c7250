/// \file
/// One 16-byte access of a uint4, the width nvcc gives a uint4 load or store (ld / st .v4.u32, in
/// any state space). On the GPU it is a plain dereference. In the simulator it goes through a
/// 16-byte vector type, so that g++ also makes it one access: a uint4 assembled from smaller
/// values may otherwise be moved as four 4-byte words, which a traffic build counts as four
/// requests (with bank conflicts that the GPU's one request does not have). A store into dynamic
/// shared memory is a generic-proxy write the simulator checks and stamps (sim::detail::
/// generic_store16): not into an operand a wgmma or TMA load still owns, and read by the async
/// proxy only after the writer's fence.proxy.async.
#pragma once

#include <vector_types.h>  // uint4

#include <cstdint>

#include "strata/config.hpp"
#if STRATA_SIM
#include "strata/sim/runtime.hpp"
#endif

namespace strata::arch {

#if STRATA_SIM
namespace detail {
using Vec16 = uint32_t __attribute__((vector_size(16), aligned(16)));
}  // namespace detail
STRATA_HOST_DEVICE uint4 load16(const void* p) {
  const detail::Vec16 v = *static_cast<const detail::Vec16*>(p);
  return uint4{v[0], v[1], v[2], v[3]};
}
STRATA_HOST_DEVICE void store16(void* p, const uint4& x STRATA_SITE_DECL) {
  *static_cast<detail::Vec16*>(p) = detail::Vec16{x.x, x.y, x.z, x.w};
  // after the store: a call before it made g++ read x again (x may alias shared memory), an
  // access the traffic build counted
  sim::detail::on_store16(p, strata_site_);
}
#else
/// The 16 bytes at p (16-byte aligned).
STRATA_HOST_DEVICE uint4 load16(const void* p) {
  return *static_cast<const uint4*>(p);
}
/// Stores x to the 16 bytes at p (16-byte aligned).
STRATA_HOST_DEVICE void store16(void* p, const uint4& x) {
  *static_cast<uint4*>(p) = x;
}
#endif

}  // namespace strata::arch
