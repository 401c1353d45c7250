// Helpers of the core tests: seeded inputs rounded to a storage type, tolerances derived from the
// storage type's unit roundoff, and a central finite-difference gradient of an fp32 function.
#pragma once

#include <strata/core/numeric.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace core_test {

/// The storage types every core function is tested with.
using StorageTypes = ::testing::Types<float, __half, __nv_bfloat16>;

/// Deterministic normal(0, 1) samples (own generator: identical on every standard library).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  double uniform() {  // (0, 1)
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return (double((s_ * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) * 0x1p-53;
  }
  double normal() {
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t s_;
};

/// `n` values mean + spread * N(0,1), rounded to storage type T; returned as the exact fp64
/// values the storage holds, so the reference sees what a kernel loads.
template <class T>
std::vector<double> stored_values(Rng& rng, int n, double spread = 1.0, double mean = 0.0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v)
    x = double(
        strata::core::to_float(strata::core::from_float<T>(float(mean + spread * rng.normal()))));
  return v;
}

template <int N>
void to_regs(const std::vector<double>& v, float (&r)[N], int offset = 0) {
  for (int i = 0; i < N; ++i) r[i] = float(v[size_t(offset + i)]);
}

/// What a kernel stores: the fp32 result rounded to T, read back.
template <class T>
double stored(float x) {
  return double(strata::core::to_float(strata::core::from_float<T>(x)));
}

/// Absolute rounding error of T's subnormal range (fp16's smallest step is 2^-24).
template <class T>
inline constexpr double kSubnormalHalfStep = std::is_same_v<T, __half> ? 0x1p-25 : 1e-30;

/// Bound on |result_T - exact| for a result computed in fp32 from `terms` rounded operations whose
/// magnitudes are at most `magnitude` (taken as at least |exact|), then stored as T: one rounding
/// of the result to T plus the fp32 compute error (a few ulps per term, as for a dot product of
/// length `terms`).
template <class T>
double tolerance(double exact, int terms, double magnitude) {
  return double(strata::core::kUnitRoundoff<T>) * std::fabs(exact) +
         4.0 * terms * 0x1p-24 * std::max(magnitude, std::fabs(exact)) + kSubnormalHalfStep<T>;
}

inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

/// Central differences of the scalar f at x (fp32 inputs): returns df/dx_i for every i.
inline std::vector<double> fd_gradient(const std::function<double(const std::vector<float>&)>& f,
                                       std::vector<float> x, float h) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const float x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (double(x0 + h) - double(x0 - h));
  }
  return g;
}

/// Expects analytic ~= fd within rel * max|fd| + abs (fp32 finite differences are noisy).
inline void expect_gradient(const std::vector<double>& analytic, const std::vector<double>& fd,
                            const std::string& what, double rel = 3e-3, double abs_tol = 1e-4) {
  ASSERT_EQ(analytic.size(), fd.size()) << what;
  const double scale = std::max(max_abs(fd), 1e-3);
  for (size_t i = 0; i < fd.size(); ++i)
    EXPECT_NEAR(analytic[i], fd[i], rel * scale + abs_tol) << what << " element " << i;
}

}  // namespace core_test
