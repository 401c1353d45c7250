// Helpers shared by the simulator tests: schedules, random data, fp64 references.
#pragma once

#include <strata/strata.cuh>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace strata_test {

/// The five schedules every kernel-zoo test runs under.
inline std::vector<strata::sim::Schedule> all_schedules() {
  using strata::sim::Schedule;
  return {Schedule::Forward(), Schedule::Reverse(), Schedule::Random(1), Schedule::Random(2),
          Schedule::Random(3)};
}

/// Restores the simulator's schedule and worker count when a test ends.
struct SimGuard {
  strata::sim::Options saved = strata::sim::options();
  ~SimGuard() { strata::sim::options() = saved; }
};

/// Deterministic uniform values in [-1, 1).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next_u32() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(s >> 32);
  }
  float uniform() { return float(next_u32() >> 8) / float(1 << 24) * 2.f - 1.f; }
};

inline double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::fabs(double(a[i]) - b[i]);
    if (std::isnan(e)) return INFINITY;
    d = std::max(d, e);
  }
  return d;
}

/// True if `msg` names `file_basename:line` (the simulator reports the kernel's source line).
inline bool names_line(const std::string& msg, const char* file_basename, int line) {
  return msg.find(std::string(file_basename) + ":" + std::to_string(line)) != std::string::npos;
}

/// A test run under each of all_schedules() (parameter 0..4), restoring the options after.
class ScheduleTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { strata::sim::set_schedule(all_schedules()[size_t(GetParam())]); }
  SimGuard guard_;
};

/// `s` is a kernel fault whose message contains `needle` and, for line > 0, names
/// `file_basename:line` (the kernel's line the simulator reports).
inline void expect_kernel_fault(const strata::Status& s, const char* needle,
                                const char* file_basename, int line) {
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), strata::StatusCode::kKernelFault);
  const std::string m = s.message();
  EXPECT_NE(m.find(needle), std::string::npos) << m;
  if (line > 0) {
    EXPECT_TRUE(names_line(m, file_basename, line)) << m;
  }
}

}  // namespace strata_test
