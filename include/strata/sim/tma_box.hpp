/// \file
/// The data movement of an emulated TMA copy: one box of a tiled tensor map between global
/// memory and a dense, optionally swizzled shared-memory buffer. Pure functions over Strata's
/// own tensor-map encoding (arch/tensor_map.hpp); the scheduling and checks are in sim/tma.hpp.
///
/// The box is stored densely, dimension 0 fastest, and each byte offset goes through the swizzle
/// (tma::swizzle_offset: 16-byte chunks permuted within 32/64/128-byte spans). A load fills
/// out-of-bounds elements with zeros (or NaN for a map encoded with oob_nan); a store skips them.
#pragma once

#include <cstdint>
#include <cstring>

#include "strata/arch/tensor_map.hpp"
#include "strata/sim/sanitizers.hpp"

namespace strata::sim::detail {

/// Box coordinates of one TMA copy (dimension 0 first).
struct TmaCoords {
  int32_t c[5] = {};
};

/// Calls `f(smem_byte_offset, global_pointer_or_null, element_bytes)` for every element of the
/// box at `at`, in the box's dense order; the global pointer is null for out-of-bounds elements.
template <class F>
STRATA_SIM_NO_TRAFFIC inline void for_each_box_element(const tma::SimEncoding& m,
                                                       const TmaCoords& at, F&& f) {
  const int e = tma::element_bytes(tma::DataType(m.dtype));
  const auto swz = tma::Swizzle(m.swizzle);
  uint32_t box[5] = {1, 1, 1, 1, 1};
  for (int i = 0; i < m.rank; ++i) box[i] = m.box_dim[i];
  uint64_t off = 0;
  for (uint32_t j4 = 0; j4 < box[4]; ++j4)
    for (uint32_t j3 = 0; j3 < box[3]; ++j3)
      for (uint32_t j2 = 0; j2 < box[2]; ++j2)
        for (uint32_t j1 = 0; j1 < box[1]; ++j1)
          for (uint32_t j0 = 0; j0 < box[0]; ++j0, off += uint64_t(e)) {
            const uint32_t j[5] = {j0, j1, j2, j3, j4};
            const unsigned char* g = static_cast<const unsigned char*>(m.global_address);
            bool in = true;
            for (int i = 0; i < m.rank && in; ++i) {
              const int64_t x = int64_t(at.c[i]) + int64_t(j[i]);
              if (x < 0 || x > int64_t(m.global_dim_m1[i])) {
                in = false;
              } else {
                g += uint64_t(x) * (i == 0 ? uint64_t(e) : m.global_stride[i - 1]);
              }
            }
            f(tma::swizzle_offset(uint32_t(off), swz), in ? g : nullptr, e);
          }
}

/// Copies the box at `at` from global memory into `dst` (a TMA load landing).
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void tma_box_load(unsigned char* dst,
                                                                  const tma::SimEncoding& m,
                                                                  const TmaCoords& at) {
  const auto dt = tma::DataType(m.dtype);
  // the canonical NaN of each float type (what the hardware's OOB NaN fill writes)
  const uint32_t nan = dt == tma::DataType::kF32   ? 0x7fc00000u
                       : dt == tma::DataType::kF16 ? 0x7e00u
                                                   : 0x7fc0u;
  for_each_box_element(m, at, [&](uint32_t off, const unsigned char* g, int e) {
    if (g)
      std::memcpy(dst + off, g, size_t(e));
    else if (m.oob_nan)
      std::memcpy(dst + off, &nan, size_t(e));
    else
      std::memset(dst + off, 0, size_t(e));
  });
}

/// Writes the in-bounds elements of the box at `at` from `src` to global memory (a TMA store).
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void tma_box_store(const unsigned char* src,
                                                                   const tma::SimEncoding& m,
                                                                   const TmaCoords& at) {
  for_each_box_element(m, at, [&](uint32_t off, const unsigned char* g, int e) {
    if (g) std::memcpy(const_cast<unsigned char*>(g), src + off, size_t(e));
  });
}

/// FNV-1a of `n` bytes: the fingerprint of a TMA store's shared source, taken at issue and
/// compared when the store reads it.
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline uint64_t fingerprint(const unsigned char* p,
                                                                     size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace strata::sim::detail
