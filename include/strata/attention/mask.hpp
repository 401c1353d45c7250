/// \file
/// Which (query, key) pairs of one sequence attend to each other, host+device: causal with
/// FlashAttention's bottom-right alignment, a sliding window to the left, ragged lengths
/// (tests/oracle/CONTRACT.md, "Token layout and masks"). Kernels ask it per element for tiles that
/// straddle the mask and per tile for the range of key tiles a query tile needs (block skipping).
#pragma once

#include "strata/config.hpp"

namespace strata::attention {

/// The mask of one sequence with `tq` queries and `tk` keys.
struct Mask {
  int tq = 0, tk = 0;
  bool causal = false;
  int window_left = -1;  ///< -1: unlimited

  /// Offset of the bottom-right alignment: query i sees keys up to i + offset when causal.
  STRATA_HOST_DEVICE int offset() const { return tk - tq; }

  /// Query i attends to key j (both local to the sequence; j < tk).
  STRATA_HOST_DEVICE bool connected(int i, int j) const {
    if (j < 0 || j >= tk) return false;
    if (causal && j > i + offset()) return false;
    if (window_left >= 0 && j < i + offset() - window_left) return false;
    return true;
  }

  /// Keys [key_begin, key_end) that any query of [q0, q1) may attend to (empty when begin >= end).
  STRATA_HOST_DEVICE int key_begin(int q0) const {
    const int b = window_left >= 0 ? q0 + offset() - window_left : 0;
    return b > 0 ? b : 0;
  }
  STRATA_HOST_DEVICE int key_end(int q1) const {
    const int e = causal ? q1 - 1 + offset() + 1 : tk;
    return e < tk ? e : tk;
  }

  /// Queries [query_begin, query_end) that any key of [k0, k1) may be attended by (the backward's
  /// block skipping over query tiles; empty when begin >= end).
  STRATA_HOST_DEVICE int query_begin(int k0) const {
    const int b = causal ? k0 - offset() : 0;
    return b > 0 ? b : 0;
  }
  STRATA_HOST_DEVICE int query_end(int k1) const {
    const int e = window_left >= 0 ? k1 - 1 - offset() + window_left + 1 : tq;
    return e < tq ? e : tq;
  }

  /// Every pair of queries [q0, q1) x keys [k0, k1) is connected, so a tile needs no per-element
  /// mask (k1 <= tk assumed by the caller's bounds check).
  STRATA_HOST_DEVICE bool all_connected(int q0, int q1, int k0, int k1) const {
    if (k1 > tk) return false;
    if (causal && k1 - 1 > q0 + offset()) return false;
    if (window_left >= 0 && k0 < q1 - 1 + offset() - window_left) return false;
    return true;
  }
};

}  // namespace strata::attention
