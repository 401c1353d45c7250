// A user's own kernel in a header that both kinds of translation unit include: the pattern the
// README documents. The kernel is a template (or `static`), so each TU may define it, and it sits
// in the executor's inline namespace, so the simulator's function and nvcc's host stub of the
// same instantiation are distinct symbols (without it the linker keeps one of the two).
#pragma once

#include <strata/strata.cuh>

namespace user {
STRATA_EXECUTOR_BEGIN

/// y = a x + y over n floats.
template <int kBlock>
__global__ void __launch_bounds__(kBlock) axpy_kernel(float a, const float* x, float* y, int n) {
  const int i = int(blockIdx.x) * kBlock + int(threadIdx.x);
  if (i < n) y[i] += a * x[i];
}

STRATA_EXECUTOR_END
}  // namespace user
