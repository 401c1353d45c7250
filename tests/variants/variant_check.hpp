// What the variant tests share: FlashAttention's rule over many tensors of a stack, reported as
// the worst ratio error / (2 naive + atol) and where it occurred.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "../kernels/flash_harness.hpp"

namespace kernel_test {

/// Worst ratio error / (2 naive + atol) over every checked tensor, with the name of the worst.
struct Verdict {
  double worst = 0;
  std::string where, status;
  bool nan = false;
  void check(const std::string& name, const std::vector<double>& got,
             const std::vector<double>& ref, const std::vector<double>& naive, double atol) {
    double ek = 0, en = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      if (std::isinf(ref[i]) || std::isinf(got[i])) {  // LSE of a row without keys
        if (got[i] != ref[i]) nan = true, where = name + " (inf mismatch)";
        continue;
      }
      if (std::isnan(got[i])) nan = true, where = name + " (NaN)";
      ek = std::max(ek, std::fabs(got[i] - ref[i]));
      en = std::max(en, std::fabs(naive[i] - ref[i]));
    }
    const double r = ek / (2 * en + atol);
    if (std::getenv("STRATA_DEBUG_CHECK") && r > 0.5)
      std::printf("  %s: kernel %.3g naive %.3g atol %.3g n %zu ref0 %.6g got0 %.6g naive0 %.6g\n",
                  name.c_str(), ek, en, atol, ref.size(), ref[0], got[0], naive[0]);
    if (!(r <= worst)) worst = r, where = name;
  }
  bool pass() const { return status.empty() && !nan && worst <= 1.0; }
};

/// A forward run of a stack a check built, in place of the stack helper's forward and backward
/// (the decode tests decode the stack step by step through a KV cache): it writes the layers' O
/// and LSE buffers, which the check then compares (gradients are not checked). Returns an error
/// message, or "".
template <class... Args>
using ForwardRun = std::function<std::string(const Args&...)>;

/// Runs a stack a check built: by `forward` when given, else by its own forward then backward,
/// then waits for the device. Returns "" or what failed.
template <class Stack>
std::string forward_or_train(const ForwardRun<Stack>& forward, const Stack& st) {
  std::string e;
  if (forward) {
    e = forward(st);
  } else if (const auto s = st.forward(); !s.ok()) {
    e = std::string("forward: ") + s.message();
  } else if (const auto b = st.backward(); !b.ok()) {
    e = std::string("backward: ") + b.message();
  }
  return e.empty() ? sync_device() : e;
}

template <class V>
std::vector<double> values(const V& x, size_t n) {
  std::vector<double> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = core::to_float(x[i]);
  return v;
}

/// LSE as [total_q, h] from the kernel's [h, total_q].
template <class V>
std::vector<double> lse_rows(const V& lse, int64_t nq, int h) {
  std::vector<double> v(size_t(nq * h));
  for (int64_t t = 0; t < nq; ++t)
    for (int hh = 0; hh < h; ++hh) v[size_t(t * h + hh)] = lse[size_t(hh * nq + t)];
  return v;
}

inline double grad_atol(double u, const std::vector<double>& ref) {
  double m = 0;
  for (double x : ref) m = std::max(m, std::fabs(x));
  return u * m + 1e-5;
}

}  // namespace kernel_test
