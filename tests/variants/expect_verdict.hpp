// The variant tests' assertion on a stack's verdict (gtest; the example uses Verdict alone).
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "../sim/common.hpp"
#include "variant_check.hpp"

namespace kernel_test {

/// Prints the verdict with STRATA_VERBOSE set, and expects it to pass.
inline void expect_verdict(const Verdict& v, const std::string& what) {
  if (std::getenv("STRATA_VERBOSE"))
    std::printf("%s: worst %.3f at %s\n", what.c_str(), v.worst, v.where.c_str());
  EXPECT_TRUE(v.pass()) << what << ": worst ratio " << v.worst << " at " << v.where << " "
                        << v.status;
}

/// Runs `run` (a stack's forward and backward) on a simulated sm_90 device and expects every
/// attention launch to have taken the sm_90a kernels: wgmma work, and no mma.sync (the sm_80
/// kernels' instruction; the variants' token-local passes use neither).
template <class Run>
void expect_sm90_kernels(Run run, const std::string& what) {
  strata_test::SimGuard guard;
  strata::sim::options().device_arch = 90;
  strata::sim::reset_counters();
  run();
  const strata::sim::Counters ctr = strata::sim::total_counters();
  EXPECT_GT(ctr.wgmma_collectives, 0u) << what;
  EXPECT_EQ(ctr.mma, 0u) << what << ": an attention launch ran the sm_80 kernels";
}

}  // namespace kernel_test
