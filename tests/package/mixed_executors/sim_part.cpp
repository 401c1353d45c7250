// The simulator half of the mixed-executor program (compiled by g++, linked with strata::sim).
#include <strata/api/flash.hpp>
#include <strata/strata.cuh>

#include <string>
#include <vector>

#include "mixed.hpp"
#include "user_kernels.cuh"

namespace mixed {

ExecutorReport sim_forward(Buffers& b) {
  ExecutorReport r;
  r.executor = STRATA_STRINGIFY(STRATA_EXECUTOR_NS);
  r.max_dynamic_smem = strata::max_dynamic_smem_bytes();
  const strata::attention::FlashFwdParams p =
      params(b.q.data(), b.k.data(), b.v.data(), b.o.data(), b.lse.data(), kCuSeqlens.data());
  r.status = strata::api::flash_fwd(p);
  if (!r.status.ok()) return r;
  // the user's kernel from the shared header: y = 2 x + y
  std::vector<float> x(300), y(300);
  for (int i = 0; i < 300; ++i) x[size_t(i)] = float(i), y[size_t(i)] = 1.f;
  r.status = strata::launch(user::axpy_kernel<128>, dim3(3), dim3(128), 0, 0, 2.f,
                            static_cast<const float*>(x.data()), y.data(), 300);
  if (!r.status.ok()) return r;
  for (int i = 0; i < 300; ++i)
    if (y[size_t(i)] != 1.f + 2.f * float(i))
      r.status = strata::Status::KernelFault("user::axpy_kernel: y[" + std::to_string(i) +
                                             "] = " + std::to_string(y[size_t(i)]));
  return r;
}

}  // namespace mixed

extern "C" mixed::Half mixed_sim_half() {
  return &mixed::sim_forward;
}
