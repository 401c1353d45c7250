// The downstream consumers' kernel: a block reduction written once for both executors (the
// README's example). main.cpp runs it in the simulator; gpu.cu compiles it with nvcc.
#pragma once

#include <strata/strata.cuh>

namespace consumer {

/// partial[blockIdx.x] = sum of x over the elements this block strides over.
template <int kBlock>
__global__ void block_sum(const float* x, float* partial, int n) {
  __shared__ float warp_sums[kBlock / 32];
  float v = 0.f;
  for (int i = blockIdx.x * kBlock + threadIdx.x; i < n; i += gridDim.x * kBlock) v += x[i];
  v = strata::arch::warp_sum(v);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    float w = threadIdx.x < kBlock / 32 ? warp_sums[threadIdx.x] : 0.f;
    w = strata::arch::warp_sum(w);
    if (threadIdx.x == 0) partial[blockIdx.x] = w;
  }
}

/// Launches block_sum<256> over `blocks` blocks (device pointers on a GPU, host memory in the
/// simulator).
inline strata::Status sum(const float* x, float* partial, int n, int blocks) {
  return strata::launch(block_sum<256>, dim3(unsigned(blocks)), dim3(256), 0, 0, x, partial, n);
}

}  // namespace consumer
