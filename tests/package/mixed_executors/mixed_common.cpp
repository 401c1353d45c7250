// The checks of the mixed-executor program (executor-neutral: no kernel, no launch): inputs, the
// fp64 reference, and what each half must have done.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "mixed.hpp"

namespace mixed {
namespace {

uint16_t to_bf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
double from_bf16(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Largest |O - O_ref| and |LSE - LSE_ref| against fp64 causal attention of the bf16 inputs.
void reference_errors(const Buffers& b, double& err_o, double& err_lse) {
  err_o = err_lse = 0;
  const double scale = 1.0 / std::sqrt(double(kD));
  for (int s = 0; s < kB; ++s) {
    const int t0 = kCuSeqlens[size_t(s)], n = kCuSeqlens[size_t(s) + 1] - t0;
    for (int h = 0; h < kH; ++h) {
      const int hk = h / (kH / kHk);
      for (int i = 0; i < n; ++i) {
        std::vector<double> logit(size_t(i) + 1);
        double m = -INFINITY;
        for (int j = 0; j <= i; ++j) {  // causal, bottom-right = top-left (same lengths)
          double dot = 0;
          for (int e = 0; e < kD; ++e)
            dot += from_bf16(b.q[(size_t(t0 + i) * kH + h) * kD + e]) *
                   from_bf16(b.k[(size_t(t0 + j) * kHk + hk) * kD + e]);
          logit[size_t(j)] = dot * scale;
          m = std::max(m, logit[size_t(j)]);
        }
        double sum = 0;
        for (double& l : logit) sum += (l = std::exp(l - m));
        for (int e = 0; e < kD; ++e) {
          double o = 0;
          for (int j = 0; j <= i; ++j)
            o += logit[size_t(j)] * from_bf16(b.v[(size_t(t0 + j) * kHk + hk) * kD + e]);
          const double got = from_bf16(b.o[(size_t(t0 + i) * kH + h) * kD + e]);
          err_o = std::max(err_o, std::isfinite(got) ? std::fabs(got - o / sum) : INFINITY);
        }
        const double got_lse = b.lse[size_t(h) * size_t(total()) + size_t(t0 + i)];
        const double lse = m + std::log(sum);
        err_lse = std::max(err_lse, std::isfinite(got_lse) ? std::fabs(got_lse - lse) : INFINITY);
      }
    }
  }
}

/// Fresh inputs with NaN-poisoned outputs.
Buffers poisoned_inputs() {
  Buffers b = make_inputs();
  b.o.assign(size_t(total()) * kH * kD, uint16_t(0x7fc1));
  b.lse.assign(size_t(kH) * size_t(total()), NAN);
  return b;
}

bool untouched(const Buffers& b) {
  for (uint16_t x : b.o)
    if (x != 0x7fc1) return false;
  for (float x : b.lse)
    if (!std::isnan(x)) return false;
  return true;
}

// P is rounded to bf16 before P V (as in FlashAttention) and O to bf16, |O| <= 1: a few bf16 ulps
// (2^-8 at 1; 0.006 measured). A wrong or missing kernel leaves NaN or garbage, far above.
constexpr double kTolO = 1.5e-2, kTolLse = 1e-4;

int check_results(const char* who, const Buffers& b) {
  double eo, el;
  reference_errors(b, eo, el);
  std::printf("%s: max |O - ref| = %.3g (tolerance %.1g), max |LSE - ref| = %.3g (%.1g)\n", who, eo,
              kTolO, el, kTolLse);
  return eo <= kTolO && el <= kTolLse ? 0 : 1;
}

}  // namespace

Buffers make_inputs() {
  Buffers b;
  uint32_t state = 12345u;
  auto next = [&] {  // uniform in [-1, 1)
    state = state * 1664525u + 1013904223u;
    return float(state >> 8) / float(1u << 23) - 1.f;
  };
  b.q.resize(size_t(total()) * kH * kD);
  b.k.resize(size_t(total()) * kHk * kD);
  b.v.resize(b.k.size());
  for (auto* x : {&b.q, &b.k, &b.v})
    for (uint16_t& e : *x) e = to_bf16(2.f * next());  // logits of a few units
  return b;
}

int run_program(Half sim, Half gpu) {
  int failures = 0;
  Buffers bs = poisoned_inputs();
  const ExecutorReport rs = sim(bs);
  std::printf("simulator half: executor %s, max dynamic smem %zu bytes, status: %s\n", rs.executor,
              rs.max_dynamic_smem, rs.status.message());
  if (!rs.status.ok() || std::string(rs.executor) != "sim_v1") {
    std::printf("FAIL: the simulator half must run the d = 128 forward in namespace sim_v1\n");
    ++failures;
  } else {
    failures += check_results("simulator half", bs);
  }

  Buffers bg = poisoned_inputs();
  const ExecutorReport rg = gpu(bg);
  std::printf("nvcc half: executor %s, max dynamic smem %zu bytes, status: %s\n", rg.executor,
              rg.max_dynamic_smem, rg.status.message());
  if (std::string(rg.executor) != "cuda_v1") {
    std::printf("FAIL: the nvcc half must run in namespace cuda_v1\n");
    ++failures;
  } else if (rg.status.ok()) {
    failures += check_results("nvcc half (GPU)", bg);
  } else if (rg.status.code() != strata::StatusCode::kCudaError || !untouched(bg)) {
    std::printf(
        "FAIL: without a device the nvcc half must fail with a CUDA error, writing "
        "nothing\n");
    ++failures;
  } else {
    std::printf("nvcc half: no usable CUDA device here; its error came back as a Status\n");
  }
  std::printf("%s\n", failures ? "mixed executors: FAILED" : "mixed executors: pass");
  return failures ? 1 : 0;
}

}  // namespace mixed
