/// \file
/// The Hopper (sm_90a) flash forward's and backward's launch plumbing, used by
/// api::flash_fwd_sm90 / flash_bwd_sm90 and by api::flash_fwd / flash_bwd's dispatch
/// (api/flash.hpp): what the TMA path needs beyond validate() (the K/V extent of its tensor maps,
/// an sm_90 device that runs sm_90a code, the backward's dQ accumulator), the tensor maps, and
/// the launches of the kernels of attention/flash_fwd_sm90.cuh and flash_bwd_sm90.cuh. In the
/// simulator it runs on the CPU like every kernel; sim::Options::device_arch says whether dispatch
/// picks it.
#pragma once

#include <string>

#include "strata/api/dispatch.hpp"
#include "strata/arch/sm90_device.hpp"
#include "strata/attention/flash_bwd_sm90.cuh"
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

/// How the sm_90 backward is launched.
struct FlashBwdSm90Options {
  /// Deterministic mode: blocks per (KV head, sequence), each with its own dQ accumulator slice
  /// (api::flash_bwd_dq_accum_bytes(p, opt) sizes them). 0: attention::flash_bwd_sm90_splits
  /// (enough blocks for twice the SMs, at most 8). Ignored in the fast mode (a block per key
  /// tile, one slice).
  int num_splits = 0;
};

namespace detail {
STRATA_EXECUTOR_BEGIN

/// Builds the kernel's parameters and launches it; `p` is validated.
template <class T, int D, class Variant>
Status launch_fwd_sm90(const attention::FlashFwdParams& p, const Variant& var, int total_k,
                       int num_ctas, cudaStream_t stream) {
  using Tr = attention::FlashFwdSm90Traits<D, Variant::kRawVTiles>;
  attention::FlashFwdSm90Params sp;
  attention::RowsOperand aux;  // a kRawVTiles = 2 variant's second raw V tile
  if constexpr (Variant::kRawVTiles == 2) aux = var.v_aux_operand();
  if (Status s = attention::make_flash_fwd_sm90_params<D>(
          p, total_k, &sp, Variant::kRawVTiles == 2 ? &aux : nullptr);
      !s.ok())
    return s;
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

/// Splits the sm_90 backward of `p` runs with on this device (0 where it does not run sm_90a).
inline int bwd_sm90_splits(const attention::FlashBwdParams& p, const FlashBwdSm90Options& opt) {
  int sms = 0;
  if (!arch::device_runs_sm90a(&sms)) return 0;
  return opt.num_splits > 0 ? opt.num_splits : attention::flash_bwd_sm90_splits(p, sms);
}

/// The sm_90 backward's launches, `p` validated: the preprocess (D, and the variant's own
/// backward work), the accumulator's zeroing, the backward kernel, then dQ from the slices.
template <class T, int D, class Variant>
Status launch_bwd_sm90(const attention::FlashBwdParams& p, const Variant& var, int splits,
                       cudaStream_t stream) {
  using Tr = attention::FlashBwdSm90Traits<D>;
  attention::FlashBwdSm90Params sp;
  if (Status s = attention::make_flash_bwd_sm90_params<D>(p, p.total_k, splits, &sp); !s.ok())
    return s;
  const int slices = sp.atomic_dq ? 1 : sp.num_splits;
  if (p.total_q > 0) {
    attention::FlashBwdParams pre = p;
    pre.deterministic = true;  // the preprocess zeroes one slice in the fast mode: not it here
    if (Status s =
            launch(attention::flash_bwd_preprocess_kernel<T, D, Variant>,
                   attention::flash_bwd_preprocess_grid<D>(pre), dim3(128), 0, stream, pre, var);
        !s.ok())
      return s;
    const int64_t n = sp.dq_slice * slices;
    const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 4096));
    if (Status s = launch(attention::flash_bwd_sm90_zero_kernel<256>, dim3(blocks), dim3(256), 0,
                          stream, p.dq_accum, n);
        !s.ok())
      return s;
  }
  if (p.total_k > 0 && p.seqlen_k > 0)
    if (Status s = launch(attention::flash_bwd_sm90_kernel<T, D, Variant>,
                          attention::flash_bwd_sm90_grid(sp), dim3(Tr::kThreads), Tr::kSmemBytes,
                          stream, sp, var);
        !s.ok())
      return s;
  if (p.total_q > 0)
    return launch(attention::flash_bwd_dq_convert_kernel<T, D, Variant>,
                  attention::flash_bwd_dq_convert_grid(p), dim3(128), 0, stream, p, var, slices,
                  sp.dq_slice);
  return Status::Ok();
}

/// The sm_90a backward of validated, non-empty `p`: Unsupported where the device does not run
/// sm_90a code, InvalidArgument (naming the field) where the TMA path cannot describe `p` or
/// p.dq_accum cannot hold the slices (it needs flash_bwd_dq_accum_bytes of it, in either mode:
/// p.dq_accum_bytes says how much it holds; left 0, only the fast mode's one slice is assumed).
template <class Variant>
Status run_bwd_sm90(const attention::FlashBwdParams& p, const Variant& var, cudaStream_t stream,
                    const FlashBwdSm90Options& opt) {
  static_assert(attention::Sm90Variant<Variant>::value,
                "this variant transforms tiles on load; the sm_90 backward loads them by TMA");
  if (opt.num_splits < 0 || opt.num_splits > attention::kBwdSm90MaxSplits)
    return Status::InvalidArgument(
        "FlashBwdSm90Options::num_splits = " + std::to_string(opt.num_splits) +
        ": must be in [0, " + std::to_string(attention::kBwdSm90MaxSplits) + "]");
  const int splits = bwd_sm90_splits(p, opt);
  if (splits == 0)
    return Status::Unsupported(
        "flash_bwd_sm90: the device does not run sm_90a code (it is not an sm_90 GPU, or this "
        "translation unit was not compiled for sm_90a; in the simulator, device_arch is not 90)");
  if (p.total_q > 0 && !p.dq_accum)
    return Status::InvalidArgument(
        "dq_accum is null: the sm_90 backward accumulates dQ there in both modes (allocate "
        "flash_bwd_dq_accum_bytes)");
  if (p.total_q > 0) {
    const size_t need =
        size_t(attention::flash_bwd_sm90_dq_accum_floats(p, splits)) * sizeof(float);
    // not given: the fast mode's contract (one [total_q, h, d] slice, which is what it needs)
    const size_t have = p.dq_accum_bytes != 0 ? p.dq_accum_bytes : p.deterministic ? 0 : need;
    if (have < need)
      return Status::InvalidArgument(
          "dq_accum_bytes = " + std::to_string(p.dq_accum_bytes) + ": the sm_90 backward needs " +
          std::to_string(need) + " bytes of dq_accum here (flash_bwd_dq_accum_bytes" +
          (p.deterministic ? "; its deterministic mode keeps a slice per split)" : ")"));
  }
  return with_dtype_and_head_dim(p.dtype, p.d, [&]<class T, int D>() {
    return launch_bwd_sm90<T, D>(p, var, splits, stream);
  });
}

STRATA_EXECUTOR_END
}  // namespace detail
}  // namespace strata::api
