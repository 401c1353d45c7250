/// \file
/// The Hopper (sm_90a) flash forward's launch plumbing, used by api::flash_fwd_sm90 and by
/// api::flash_fwd's dispatch (api/flash.hpp): what the TMA path needs beyond validate() (the K/V
/// extent of its tensor maps, an sm_90 device that runs sm_90a code), the tensor maps, and the
/// launch of the persistent kernel of attention/flash_fwd_sm90.cuh. In the simulator it runs on
/// the CPU like every kernel; sim::Options::device_arch says whether dispatch picks it.
#pragma once

#include <string>

#include "strata/api/dispatch.hpp"
#include "strata/arch/sm90_device.hpp"
#include "strata/attention/flash_fwd_sm90.cuh"
#include "strata/launch.hpp"
#include "strata/status.hpp"

namespace strata::api {

/// How the sm_90 forward is launched.
struct FlashFwdSm90Options {
  /// Blocks of the persistent grid: 0 is one per SM (132 in the simulator, an H100 SXM's
  /// count), capped by the number of tiles. Tests give small counts so that every block walks
  /// several tiles.
  int num_ctas = 0;
};

/// Rows of the K/V tensors of a validated forward problem: b * seqlen_k for a fixed-length batch,
/// cu_seqlens_k_host[b] for a packed one (without the host copy there is no extent to give the
/// TMA maps, and a box past the allocation would fault).
inline Status flash_fwd_sm90_total_k(const attention::FlashFwdParams& p, int* total_k) {
  if (!p.cu_seqlens_k) {
    *total_k = p.b * p.seqlen_k;
    return Status::Ok();
  }
  if (!p.cu_seqlens_k_host)
    return Status::InvalidArgument(
        "cu_seqlens_k_host is null: the sm_90 forward sizes its K/V tensor maps from the host "
        "copy of the offsets");
  *total_k = p.cu_seqlens_k_host[p.b];
  return Status::Ok();
}

namespace detail {
STRATA_EXECUTOR_BEGIN

/// Builds the kernel's parameters and launches it; `p` is validated.
template <class T, int D, class Variant>
Status launch_fwd_sm90(const attention::FlashFwdParams& p, const Variant& var, int total_k,
                       int num_ctas, cudaStream_t stream) {
  using Tr = attention::FlashFwdSm90Traits<D>;
  attention::FlashFwdSm90Params sp;
  if (Status s = attention::make_flash_fwd_sm90_params<D>(p, total_k, &sp); !s.ok()) return s;
  return launch(attention::flash_fwd_sm90_kernel<T, D, Variant>,
                attention::flash_fwd_sm90_grid(sp, num_ctas), dim3(Tr::kThreads), Tr::kSmemBytes,
                stream, sp, var);
}

/// The sm_90a forward of validated, non-empty `p`: Unsupported where the device does not run
/// sm_90a code, InvalidArgument (naming the field) where the TMA path cannot describe `p`.
template <class Variant>
Status run_fwd_sm90(const attention::FlashFwdParams& p, const Variant& var, cudaStream_t stream,
                    const FlashFwdSm90Options& opt) {
  static_assert(attention::Sm90Variant<Variant>::value,
                "this variant transforms tiles on load; the sm_90 forward loads them by TMA");
  if (opt.num_ctas < 0)
    return Status::InvalidArgument(
        "FlashFwdSm90Options::num_ctas = " + std::to_string(opt.num_ctas) + ": must be >= 0");
  int total_k = 0;
  if (Status s = flash_fwd_sm90_total_k(p, &total_k); !s.ok()) return s;
  int sms = 0;
  if (!arch::device_runs_sm90a(&sms))
    return Status::Unsupported(
        "flash_fwd_sm90: the device does not run sm_90a code (it is not an sm_90 GPU, or this "
        "translation unit was not compiled for sm_90a; in the simulator, device_arch is not 90)");
  const int num_ctas = opt.num_ctas > 0 ? opt.num_ctas : sms;
  return with_dtype_and_head_dim(p.dtype, p.d, [&]<class T, int D>() {
    return launch_fwd_sm90<T, D>(p, var, total_k, num_ctas, stream);
  });
}

STRATA_EXECUTOR_END
}  // namespace detail
}  // namespace strata::api
