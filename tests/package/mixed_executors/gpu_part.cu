// The nvcc half of the mixed-executor program: the same forward through device buffers, and the
// user's kernel from the shared header. Without a device every CUDA call fails and this half
// returns that error, having written nothing.
#include <cuda_runtime.h>

#include <strata/api/flash.hpp>
#include <strata/strata.cuh>

#include <string>
#include <vector>

#include "mixed.hpp"
#include "user_kernels.cuh"

namespace mixed {
namespace {

/// Device copies of the buffers, freed on every path.
struct DeviceBuffers {
  std::vector<void*> owned;
  ~DeviceBuffers() {
    for (void* p : owned) cudaFree(p);
  }
  strata::Status alloc(void** p, size_t bytes, const void* init) {
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess)
      return strata::Status::CudaError(std::string("cudaMalloc: ") + cudaGetErrorString(e));
    owned.push_back(*p);
    if (init && (e = cudaMemcpy(*p, init, bytes, cudaMemcpyHostToDevice)) != cudaSuccess)
      return strata::Status::CudaError(std::string("cudaMemcpy: ") + cudaGetErrorString(e));
    return strata::Status::Ok();
  }
};

strata::Status copy_back(void* dst, const void* src, size_t bytes) {
  const cudaError_t e = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
  return e == cudaSuccess
             ? strata::Status::Ok()
             : strata::Status::CudaError(std::string("cudaMemcpy: ") + cudaGetErrorString(e));
}

strata::Status run(Buffers& b) {
  DeviceBuffers dev;
  void *q, *k, *v, *o, *lse, *cu, *x, *y;
  const size_t qo = b.q.size() * 2, kv = b.k.size() * 2, nl = b.lse.size() * 4;
  for (strata::Status s :
       {dev.alloc(&q, qo, b.q.data()), dev.alloc(&k, kv, b.k.data()), dev.alloc(&v, kv, b.v.data()),
        dev.alloc(&o, qo, nullptr), dev.alloc(&lse, nl, nullptr),
        dev.alloc(&cu, kCuSeqlens.size() * 4, kCuSeqlens.data())})
    if (!s.ok()) return s;
  const strata::attention::FlashFwdParams p =
      params(q, k, v, o, static_cast<float*>(lse), static_cast<const int*>(cu));
  if (strata::Status s = strata::api::flash_fwd(p); !s.ok()) return s;
  // the user's kernel: y = 2 x + y on 300 floats
  std::vector<float> hx(300), hy(300);
  for (int i = 0; i < 300; ++i) hx[size_t(i)] = float(i), hy[size_t(i)] = 1.f;
  if (strata::Status s = dev.alloc(&x, 1200, hx.data()); !s.ok()) return s;
  if (strata::Status s = dev.alloc(&y, 1200, hy.data()); !s.ok()) return s;
  if (strata::Status s = strata::launch(user::axpy_kernel<128>, dim3(3), dim3(128), 0, 0, 2.f,
                                        static_cast<const float*>(x), static_cast<float*>(y), 300);
      !s.ok())
    return s;
  if (strata::Status s = copy_back(hy.data(), y, 1200); !s.ok()) return s;
  for (int i = 0; i < 300; ++i)
    if (hy[size_t(i)] != 1.f + 2.f * float(i))
      return strata::Status::KernelFault("user::axpy_kernel on the GPU: wrong y[" +
                                         std::to_string(i) + "]");
  if (strata::Status s = copy_back(b.o.data(), o, qo); !s.ok()) return s;
  return copy_back(b.lse.data(), lse, nl);
}

}  // namespace

ExecutorReport gpu_forward(Buffers& b) {
  ExecutorReport r;
  r.executor = STRATA_STRINGIFY(STRATA_EXECUTOR_NS);
  r.max_dynamic_smem = strata::max_dynamic_smem_bytes();
  r.status = run(b);
  return r;
}

}  // namespace mixed

extern "C" mixed::Half mixed_gpu_half() {
  return &mixed::gpu_forward;
}
