/// \file
/// Register-to-element maps of the warp-level mma.m16n8k16 fragments (PTX ISA, "Matrix
/// Fragments for mma.m16n8k16 with floating point type"). Kernels take each register's (row,
/// col) from here instead of decoding lane ids by hand (masks, epilogues, stores).
#pragma once

#include "strata/config.hpp"

namespace strata::arch {
STRATA_EXECUTOR_BEGIN

/// Element `i` (0..7, two per 32-bit register, low half first) of lane `lane`'s A fragment
/// (16x16, row-major operand) is A[row][col].
STRATA_HOST_DEVICE void mma_a_coord(int lane, int i, int& row, int& col) {
  row = (lane >> 2) + 8 * ((i >> 1) & 1);
  col = 2 * (lane & 3) + (i & 1) + 8 * (i >> 2);
}
/// Element `i` (0..3) of lane `lane`'s B fragment (16x8, K x N, column operand) is B[row][col].
STRATA_HOST_DEVICE void mma_b_coord(int lane, int i, int& row, int& col) {
  row = 2 * (lane & 3) + (i & 1) + 8 * (i >> 1);
  col = lane >> 2;
}
/// Accumulator `i` (0..3) of lane `lane`'s C/D fragment (16x8, f32) is C[row][col].
STRATA_HOST_DEVICE void mma_c_coord(int lane, int i, int& row, int& col) {
  row = (lane >> 2) + 8 * (i >> 1);
  col = 2 * (lane & 3) + (i & 1);
}

STRATA_EXECUTOR_END
}  // namespace strata::arch
