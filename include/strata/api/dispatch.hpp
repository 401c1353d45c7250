/// \file
/// The instantiations every launcher compiles, in one place: a runtime (dtype, head dimension)
/// turned into the template arguments <T, D> of the kernels. Each kernel a launcher names inside
/// the callback is instantiated for the 2 element types x 3 head dimensions listed here — the
/// cost of one API entry point in a translation unit — so adding a head dimension is one edit
/// here (and its ptxas budgets in tests/static).
#pragma once

#include <string>

#include "strata/attention/params.hpp"
#include "strata/core/numeric.hpp"
#include "strata/status.hpp"

namespace strata::api {

/// The head dimensions the kernels are compiled for (validation accepts exactly these).
inline constexpr int kFlashHeadDims[] = {64, 96, 128};

namespace detail {

/// f.template operator()<D>() for the compiled head dimension `d`; InvalidArgument naming d
/// for any other (validation has refused it before a launcher gets here).
template <class F>
Status with_head_dim(int d, F&& f) {
  static_assert(sizeof(kFlashHeadDims) / sizeof(int) == 3, "a case per kFlashHeadDims entry");
  switch (d) {
    case kFlashHeadDims[0]:
      return f.template operator()<kFlashHeadDims[0]>();
    case kFlashHeadDims[1]:
      return f.template operator()<kFlashHeadDims[1]>();
    case kFlashHeadDims[2]:
      return f.template operator()<kFlashHeadDims[2]>();
  }
  return Status::InvalidArgument("d = " + std::to_string(d) +
                                 " is not a compiled head dimension (64, 96, 128)");
}

/// f.template operator()<T, D>() for the element type of `dtype` (bf16 or fp16) and the
/// compiled head dimension `d`.
template <class F>
Status with_dtype_and_head_dim(attention::Dtype dtype, int d, F&& f) {
  return with_head_dim(d, [&]<int D>() -> Status {
    return dtype == attention::Dtype::kBf16 ? f.template operator()<__nv_bfloat16, D>()
                                            : f.template operator()<__half, D>();
  });
}

}  // namespace detail
}  // namespace strata::api
