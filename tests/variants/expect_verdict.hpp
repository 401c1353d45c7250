// The variant tests' assertion on a stack's verdict (gtest; the example uses Verdict alone).
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "variant_check.hpp"

namespace kernel_test {

/// Prints the verdict with STRATA_VERBOSE set, and expects it to pass.
inline void expect_verdict(const Verdict& v, const std::string& what) {
  if (std::getenv("STRATA_VERBOSE"))
    std::printf("%s: worst %.3f at %s\n", what.c_str(), v.worst, v.where.c_str());
  EXPECT_TRUE(v.pass()) << what << ": worst ratio " << v.worst << " at " << v.where << " "
                        << v.status;
}

}  // namespace kernel_test
