// The flash forward's and backward's correctness check that runs on both executors: compiled by
// nvcc for a GPU (scripts/build_gpu.sh: flash_check_gpu, run by scripts/gpu_check.sh, also under
// compute-sanitizer) and by g++ for the simulator (ctest flash_check_sim, with STRATA_SIM_ARCH=90).
// Each case goes through api::flash_fwd / flash_bwd (the dispatch: the sm_90a kernels on an sm_90
// device) and, where the device runs sm_90a code, through api::flash_fwd_sm90 / flash_bwd_sm90
// explicitly; O and LSE, then dQ, dK and dV (deterministic and fast mode) against the fp64
// reference with FlashAttention's rule (flash_harness.hpp). Prints one line per case and exits 1
// if any fails.
//
// Usage: flash_check [--quick]   (--quick: the simulator's subset)
#include <strata/api/flash.hpp>

#include "flash_harness.hpp"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace kernel_test;

template <class T, int D>
bool check(const Case& c, bool sm90_only) {
  Problem<T> pr(c, D);
  const strata::Status s =
      sm90_only ? strata::api::flash_fwd_sm90(pr.p) : strata::api::flash_fwd(pr.p);
  Errors e;
  if (!s.ok())
    e.status = s.message();
  else if (std::string err = sync_device(); !err.empty())
    e.status = err;
  else
    e = forward_errors(pr, c, D);
  const bool ok = e.pass();
  std::printf("%s %s %s: O %.3g (naive %.3g) LSE %.3g (naive %.3g)%s%s\n", ok ? "ok  " : "FAIL",
              sm90_only ? "flash_fwd_sm90" : "flash_fwd     ", c.describe().c_str(), e.o_kernel,
              e.o_naive, e.lse_kernel, e.lse_naive, e.status.empty() ? "" : " ", e.status.c_str());
  return ok;
}

/// The backward after the kernel forward: dQ, dK, dV against fp64.
template <class T, int D>
bool check_bwd(const Case& c, bool sm90_only) {
  Problem<T> pr(c, D);
  const BwdErrors e = backward_errors(pr, [&](const strata::attention::FlashBwdParams& p) {
    return sm90_only ? strata::api::flash_bwd_sm90(p) : strata::api::flash_bwd(p);
  });
  const bool ok = e.pass();
  std::printf("%s %s %s: dQ %.3g (naive %.3g) dK %.3g (naive %.3g) dV %.3g (naive %.3g)%s%s\n",
              ok ? "ok  " : "FAIL", sm90_only ? "flash_bwd_sm90" : "flash_bwd     ",
              c.describe().c_str(), e.kernel[0], e.naive[0], e.kernel[1], e.naive[1], e.kernel[2],
              e.naive[2], e.status.empty() ? "" : " ", e.status.c_str());
  return ok;
}

template <class T>
bool check_case(const Case& c, bool sm90, bool backward) {
  auto run = [&](bool only, bool bwd) {
    switch (c.d) {
      case 96:
        return bwd ? check_bwd<T, 96>(c, only) : check<T, 96>(c, only);
      case 128:
        return bwd ? check_bwd<T, 128>(c, only) : check<T, 128>(c, only);
      default:
        return bwd ? check_bwd<T, 64>(c, only) : check<T, 64>(c, only);
    }
  };
  bool ok = run(false, backward);
  if (sm90) ok = run(true, backward) && ok;
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
#if !STRATA_SIM
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::fprintf(stderr,
                 "flash_check: no usable CUDA device (build it with g++ for the simulator)\n");
    return 2;
  }
#endif
  int sms = 0;
  const bool sm90 = strata::arch::device_runs_sm90a(&sms);
  std::printf("flash_check: %s device, %d SMs\n", sm90 ? "an sm_90a" : "not an sm_90a", sms);
  std::vector<Case> cases;
  for (int d : {64, 96, 128})
    for (bool causal : {false, true})
      cases.push_back(fixed_case(quick ? 200 : 1000, 2, 4, 2, d, causal));
  Case v;  // varlen with an empty sequence, GQA, fully masked rows, a window
  v.lens_q = {150, 0, 300, 1};
  v.lens_k = {20, 7, 300, 260};
  v.h = 4, v.h_k = 1, v.d = 128, v.causal = true;
  cases.push_back(v);
  v.window_left = 50;
  v.d = 64;
  cases.push_back(v);
  bool ok = true;
  for (size_t i = 0; i < cases.size(); ++i)
    ok = (i % 2 ? check_case<__half>(cases[i], sm90, false)
                : check_case<__nv_bfloat16>(cases[i], sm90, false)) &&
         ok;
  // the backward: shorter sequences (its fp64 reference is the check's cost), both modes (the
  // fast one on two cases in the simulator's subset)
  for (Case& c : cases)
    if (c.lens_q.size() == 2) c.lens_q.assign(2, quick ? 130 : 300);
  for (size_t i = 0; i < cases.size(); ++i) {
    Case c = cases[i];
    for (bool deterministic : {true, false}) {
      if (quick && !deterministic && i >= 2) continue;
      c.deterministic = deterministic;
      ok = (i % 2 ? check_case<__half>(c, sm90, true) : check_case<__nv_bfloat16>(c, sm90, true)) &&
           ok;
    }
  }
  std::printf("flash_check: %s\n", ok ? "every case passed" : "FAILED");
  return ok ? 0 : 1;
}
