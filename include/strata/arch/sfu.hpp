/// \file
/// Special-function-unit operations (MUFU on the GPU: ex2, lg2, rsq, rcp, sin, cos) behind
/// wrappers, so that the simulator can count them (sim::Counters::sfu) for the performance
/// model. Each wrapper computes exactly what the plain CUDA math call it names computes, on both
/// executors; the count is the number of MUFU instructions nvcc emits for that call per thread
/// (exp2f, expf, log2f, logf: 1; 1/sqrtf: 2, the square root's rsq and the division's rcp;
/// powf: 2, lg2 and ex2; sincospif: 2, sin and cos). Divisions written as `/` elsewhere are not
/// counted (the SASS inventory counts every MUFU).
///
/// Executor-neutral (outside the executor namespaces): the bodies are the same in a simulator
/// TU and in nvcc's host pass, and count only where the simulator has pointed this OS thread's
/// counter at a running launch (sim/launch.hpp); the device pass has no counter.
#pragma once

#include <cmath>
#include <cstdint>

#include "strata/config.hpp"

namespace strata::arch {

namespace detail {
#if !STRATA_DEVICE_PASS
/// The SFU counter of the launch this OS thread is running blocks of, or null.
inline thread_local uint64_t* g_sfu_ops = nullptr;
#endif
}  // namespace detail

// The simulator's fibers of one block share its counters on one OS thread, one at a time;
// ThreadSanitizer, which sees each fiber as a thread, must not instrument the increment.
#if !STRATA_DEVICE_PASS && defined(__SANITIZE_THREAD__)
#define STRATA_SFU_COUNT_ATTR __attribute__((no_sanitize("thread")))
#elif !STRATA_DEVICE_PASS && defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRATA_SFU_COUNT_ATTR __attribute__((no_sanitize("thread")))
#endif
#endif
#ifndef STRATA_SFU_COUNT_ATTR
#define STRATA_SFU_COUNT_ATTR
#endif

/// Adds `n` SFU operations of the calling thread to the running launch's counters (simulator).
STRATA_SFU_COUNT_ATTR STRATA_HOST_DEVICE void count_sfu([[maybe_unused]] unsigned n) {
#if !STRATA_DEVICE_PASS
  if (uint64_t* c = detail::g_sfu_ops) *c += n;
#endif
}

/// exp2f(x): one ex2.
STRATA_HOST_DEVICE float ex2(float x) {
  count_sfu(1);
  return exp2f(x);
}
/// 2^x as FlashAttention's kernels compute it (exp2f under --use_fast_math): one
/// ex2.approx.ftz.f32, the MUFU alone. exp2f without fast math wraps the same MUFU in a range
/// check and a rescale for subnormal results, 4-6 more instructions and a branch per score,
/// which made the softmax, not the tensor cores, the forward's limit on an H200 (SASS: ~2,300
/// instructions per 128 HMMA). Results below 2^-126 flush to +0 and 2^-inf = +0 on both
/// executors (so a masked score needs no test); the host computes exp2f, within ex2.approx's
/// 2 ulp of it.
STRATA_HOST_DEVICE float ex2_ftz(float x) {
  count_sfu(1);
#if STRATA_DEVICE_PASS
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  const float y = exp2f(x);
  return y < 1.17549435e-38f ? 0.f : y;                               // FLT_MIN; NaN stays NaN
#endif
}
/// log2f(x): one lg2.
STRATA_HOST_DEVICE float lg2(float x) {
  count_sfu(1);
  return log2f(x);
}
/// expf(x): one ex2 (of x log2 e).
STRATA_HOST_DEVICE float exp_e(float x) {
  count_sfu(1);
  return expf(x);
}
/// logf(x): one lg2.
STRATA_HOST_DEVICE float log_e(float x) {
  count_sfu(1);
  return logf(x);
}
/// 1 / sqrtf(x), both correctly rounded: an rsq (the square root) and an rcp (the division).
STRATA_HOST_DEVICE float rsqrt_rn(float x) {
  count_sfu(2);
  return 1.f / sqrtf(x);
}
/// powf(b, e): an lg2 and an ex2.
STRATA_HOST_DEVICE float pow_f(float b, float e) {
  count_sfu(2);
  return powf(b, e);
}

/// sin(pi x) and cos(pi x): a sin and a cos. The argument reduction of sincospif is exact
/// (x mod 2) and needs no local-memory table, unlike sinf/cosf of a large angle (Payne-Hanek),
/// which the ptxas gate rejects as a stack frame. The host has no sincospif: it rounds the
/// double result.
STRATA_HOST_DEVICE void sincospi(float x, float& s, float& c) {
  count_sfu(2);
#if STRATA_DEVICE_PASS
  sincospif(x, &s, &c);
#else
  const double r = 2.0 * (0.5 * double(x) - floor(0.5 * double(x)));  // x mod 2, exact
  s = float(sin(3.14159265358979323846 * r));
  c = float(cos(3.14159265358979323846 * r));
#endif
}

}  // namespace strata::arch
