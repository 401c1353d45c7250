// The decode-stack tests' shared cases: the schedules every method is decoded with, the
// sequences they decode, and MEA's cases (test_decode_stack.cpp, test_decode_stack_mea.cpp).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "../variants/mea_check.hpp"
#include "decode_driver.hpp"

namespace decode_stack_test {

using namespace kernel_test;
namespace api = strata::api;

/// The schedules every method is decoded with.
inline std::vector<DecodeSchedule> schedules() {
  return {
      {1, 1, CacheIndexing::kBlockTable, 16, false, 1, 1},          // token by token
      {1, 3, CacheIndexing::kPageList, 1, true, 1, 2, 0, 4, true},  // chunks of 3, SGLang's
                                                                    // page 1, layer by layer
      {5, 16, CacheIndexing::kBlockTable, 64, true, 3, 3},  // prefill 5, chunks of 16, splits
      {2, 3, CacheIndexing::kContiguous, 0, false, 2, 4},   // contiguous slots, splits
  };
}

inline Case decode_case(std::vector<int> lens, int h, int h_k, int d, uint64_t seed) {
  Case c;
  c.lens_q = std::move(lens), c.h = h, c.h_k = h_k, c.d = d, c.causal = true, c.seed = seed;
  return c;
}

/// Sequences of 1, 0 (an empty one), 7 and 23 tokens: steps mix sequences still decoding with
/// finished ones.
inline const std::vector<int> kLens = {1, 0, 7, 23};

inline MeaCase mea_case(std::vector<int> lens, int h, int h_kv, int h_c, int d, bool output_site,
                        uint64_t seed, int layers = 2) {
  MeaCase mc;
  mc.attn = decode_case(std::move(lens), h, h_kv, d, seed);
  mc.h_c = h_c, mc.layers = layers, mc.output_site = output_site;
  return mc;
}

inline Verdict decode_mea_verdict(const MeaCase& mc, const DecodeSchedule& sch, bool bf16 = true) {
  const auto run = [&]<class U, int D>(const Case&) {
    return run_mea<U, D>(mc, [&](const api::MeaStack& st) { return decode_mea<U>(st, sch); });
  };
  return bf16 ? with_head_dim<__nv_bfloat16>(mc.attn, run) : with_head_dim<__half>(mc.attn, run);
}

}  // namespace decode_stack_test
