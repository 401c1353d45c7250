// The API tests' one pattern: spoil one field of a valid problem, call the API, and expect an
// InvalidArgument Status whose message names the field, with every output as it was before the
// call (filled with a sentinel, NaN by default): validation runs before anything is written.
#pragma once

#include <strata/core/numeric.hpp>
#include <strata/status.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

namespace strata_test {

/// One spoiled field of a problem P: text its message must contain, and the change that spoils
/// it.
template <class P>
struct Spoil {
  const char* needle;
  std::function<void(P&)> spoil;
};

/// `s` is InvalidArgument and its message contains `needle`.
inline ::testing::AssertionResult refused(const strata::Status& s, const std::string& needle) {
  if (s.code() != strata::StatusCode::kInvalidArgument)
    return ::testing::AssertionFailure()
           << "wanted InvalidArgument naming \"" << needle << "\", got "
           << (s.ok() ? std::string("Ok") : std::string(s.message()));
  if (std::string(s.message()).find(needle) == std::string::npos)
    return ::testing::AssertionFailure() << "wanted \"" << needle << "\" in: " << s.message();
  return ::testing::AssertionSuccess();
}

/// Every element is still NaN (the sentinel the outputs were filled with): float, bf16 or fp16
/// elements, one buffer or a list of them.
template <class T>
bool all_nan(const std::vector<T>& v) {
  if constexpr (std::is_class_v<T> && !strata::core::kIsStorage<T>) {  // a list of buffers
    for (const auto& b : v)
      if (!all_nan(b)) return false;
  } else {
    for (const T& x : v)
      if (!std::isnan(strata::core::to_float(x))) return false;
  }
  return true;
}
template <class A, class B, class... Rest>
bool all_nan(const A& a, const B& b, const Rest&... rest) {
  return all_nan(a) && all_nan(b, rest...);
}

/// For each case: a fresh problem from make(), spoiled, then run(problem) -> Status must refuse
/// naming the field, and untouched(problem) must still hold.
template <class P, class Make, class Run, class Untouched>
void expect_refusals(const std::vector<Spoil<P>>& cases, Make make, Run run, Untouched untouched) {
  for (const Spoil<P>& c : cases) {
    P problem = make();
    c.spoil(problem);
    EXPECT_TRUE(refused(run(problem), c.needle));
    EXPECT_TRUE(untouched(problem)) << c.needle << ": an output was written";
  }
}

}  // namespace strata_test
