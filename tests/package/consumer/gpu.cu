// The same kernel compiled by nvcc (CMake's CUDA language): a library a GPU program links.
#include "block_sum.cuh"

strata::Status consumer_gpu_sum(const float* x, float* partial, int n, int blocks) {
  return consumer::sum(x, partial, n, blocks);
}
