/// \file
/// Depth-Attention (SPEC §1, §7.2): the fused token-local pass per layer (strata/variants/
/// depth_attention.cuh) around the flash attention, and DepthStack, the explicit layer-stack helper
/// with the fp32 accumulators dk^_j, dv^_j of the source layers (copy it into a trainer).
///
/// Per layer l, forward:  depth pass (q_rot, k^_l, v^_l from q, k, v and the sources' k^_j, v^_j),
///                        then flash_fwd on (q_rot, k^_l, v^_l).
/// Backward, l = L-1 .. 0: flash_bwd gives dq_rot, dk^, dv^; the depth pass adds this layer's
///                        accumulators, sends the sources' shares to theirs, and writes dq, dk,
///                        dv (raw projections) and dgamma_q, dgamma_k.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "strata/api/flash.hpp"
#include "strata/variants/depth_attention.cuh"
#include "strata/variants/value_residual.cuh"  // fill_zero_kernel

namespace strata::api {

/// S_l = { j < l : j mod stride == 0 } and { l - r .. l - 1 }, ascending (SPEC §1a step 4); stride
/// <= 0 keeps only the recent window. Layer 0 has no source.
inline std::vector<std::vector<int>> depth_sources(int num_layers, int stride, int recent_window) {
  std::vector<std::vector<int>> s(size_t(num_layers > 0 ? num_layers : 0));
  for (int l = 0; l < num_layers; ++l) {
    std::set<int> js;
    if (stride > 0)
      for (int j = 0; j < l; j += stride) js.insert(j);
    for (int j = l - recent_window > 0 ? l - recent_window : 0; j < l; ++j) js.insert(j);
    s[size_t(l)].assign(js.begin(), js.end());
  }
  return s;
}

/// One layer of a Depth-Attention stack.
struct DepthStackLayer {
  /// The attention of the layer: q, k, v are the depth pass's outputs q_rot, k^, v^ (buffers of
  /// [total, h, d] and [total, h_k, d], contiguous); dq, dk, dv the attention's gradients of them.
  FlashBwdParams attn;
  const void* q = nullptr;  ///< raw projections
  const void* k = nullptr;
  const void* v = nullptr;
  void* dq = nullptr;  ///< their gradients (written)
  void* dk = nullptr;
  void* dv = nullptr;
  const float *gamma_q = nullptr, *gamma_k = nullptr;  ///< [d] (qk_norm)
  float *dgamma_q = nullptr, *dgamma_k = nullptr;      ///< [d] (qk_norm), written
  /// fp32 [total, h_k, d] accumulators of dk^ and dv^ from later layers; needed (backward) when a
  /// later layer has this one as a source.
  float *dkhat_acc = nullptr, *dvhat_acc = nullptr;
  std::vector<int> sources;  ///< ascending earlier layers, at most core::kMaxSources
};

/// Bytes of the backward workspace (dgamma partials) for a layer of `total` tokens, h_k KV heads.
inline size_t depth_workspace_bytes(int total, int h_k, int d) {
  const int64_t rows = int64_t(total > 0 ? total : 0) * (h_k > 0 ? h_k : 0);
  const int64_t blocks = (rows + variants::kDepthRowsPerBlock - 1) / variants::kDepthRowsPerBlock;
  return size_t(blocks) * 2 * size_t(d > 0 ? d : 0) * sizeof(float);
}

namespace detail {
/// Layer l's sources: at most kMaxSources, strictly ascending earlier layers.
inline Status check_depth_sources(const std::vector<int>& sources, size_t l,
                                  const std::string& at) {
  if (int(sources.size()) > core::kMaxSources)
    return Status::InvalidArgument(
        at + "sources: " + std::to_string(sources.size()) +
        " sources, more than kMaxSources = " + std::to_string(core::kMaxSources));
  for (size_t c = 0; c < sources.size(); ++c) {
    const int j = sources[c];
    if (j < 0 || j >= int(l) || (c > 0 && j <= sources[c - 1]))
      return Status::InvalidArgument(at +
                                     "sources: must be strictly ascending earlier layers (got " +
                                     std::to_string(j) + ")");
  }
  return Status::Ok();
}

STRATA_EXECUTOR_BEGIN
template <class T, int D>
Status launch_depth_typed(const variants::DepthLayer& p, bool backward, cudaStream_t stream) {
  const int64_t rows = int64_t(p.total) * p.h_k;
  const int blocks = int((rows + variants::kDepthRowsPerBlock - 1) / variants::kDepthRowsPerBlock);
  if (blocks > 0) {
    if (Status s = launch(
            backward ? variants::depth_backward_kernel<T, D> : variants::depth_forward_kernel<T, D>,
            dim3(unsigned(blocks)), dim3(variants::kDepthThreads), 0, stream, p);
        !s.ok())
      return s;
  }
  if (backward && p.local.qk_norm)  // zero blocks: the reduction writes dgamma = 0
    return launch(variants::depth_dgamma_reduce_kernel<D>, dim3(1), dim3(2 * D), 0, stream,
                  static_cast<const float*>(p.partial), blocks, p.dgamma_q, p.dgamma_k);
  return Status::Ok();
}
/// The depth pass of one layer (arguments validated by the caller), forward or backward.
inline Status launch_depth_pass(const variants::DepthLayer& p, Dtype dtype, int d, bool backward,
                                cudaStream_t stream) {
  return with_dtype_and_head_dim(
      dtype, d, [&]<class T, int D>() { return launch_depth_typed<T, D>(p, backward, stream); });
}
STRATA_EXECUTOR_END
}  // namespace detail

STRATA_EXECUTOR_BEGIN
struct DepthStack {
  variants::QkNormRopeOptions local;  ///< QK-norm (q before RoPE, k after) and RoPE
  std::vector<DepthStackLayer> layers;
  float* workspace = nullptr;  ///< backward: depth_workspace_bytes(total, h_k, d)

  /// Every field of every layer, before anything runs.
  Status validate(bool backward) const {
    if (layers.empty()) return Status::InvalidArgument("layers is empty");
    std::vector<bool> is_source(layers.size(), false);
    for (size_t l = 0; l < layers.size(); ++l) {
      const std::string at = "layers[" + std::to_string(l) + "].";
      const DepthStackLayer& y = layers[l];
      const FlashBwdParams& a = y.attn;
      Status s = backward ? api::validate_backward(a) : api::validate_forward(a);
      if (!s.ok()) return Status(s.code(), at + "attn: " + s.message());
      const FlashBwdParams& f = layers[0].attn;
      if (!detail::same_token_attention(a, f, backward))
        return Status::InvalidArgument(
            at +
            "attn: self-attention over layer 0's tokens (total, h_k, d, dtype, cu_seqlens "
            "equal) is required: sources are read at the same token");
      if (a.q_row_stride != int64_t(a.h) * a.d || a.q_head_stride != a.d ||
          a.k_row_stride != int64_t(a.h_k) * a.d || a.k_head_stride != a.d ||
          a.v_row_stride != int64_t(a.h_k) * a.d || a.v_head_stride != a.d ||
          (backward && (a.dq_row_stride != int64_t(a.h) * a.d || a.dq_head_stride != a.d ||
                        a.dk_row_stride != int64_t(a.h_k) * a.d || a.dk_head_stride != a.d ||
                        a.dv_row_stride != int64_t(a.h_k) * a.d || a.dv_head_stride != a.d)))
        return Status::InvalidArgument(at +
                                       "attn: the depth pass needs contiguous [total, heads, "
                                       "d] operands (row stride heads * d, head stride d)");
      if (!y.q) return Status::InvalidArgument(at + "q is null");
      if (!y.k) return Status::InvalidArgument(at + "k is null");
      if (!y.v) return Status::InvalidArgument(at + "v is null");
      if (y.v == a.v && backward)
        return Status::InvalidArgument(at +
                                       "v: the backward needs the raw v; v^ (attn.v) must "
                                       "not overwrite it");
      if (backward && local.qk_norm && (y.q == a.q || y.k == a.k))
        return Status::InvalidArgument(at +
                                       "q / k: the norms' backward needs the raw q and k; "
                                       "q_rot / k^ (attn.q / attn.k) must not overwrite them");
      for (int j : y.sources)
        if (j >= 0 && j < int(l) &&
            (layers[size_t(j)].attn.k == a.k || layers[size_t(j)].attn.v == a.v))
          return Status::InvalidArgument(at + "attn.k / attn.v: shared with source layer " +
                                         std::to_string(j) +
                                         ", whose k^ / v^ this layer reads while writing its own");
      if (local.qk_norm && (!y.gamma_q || !y.gamma_k))
        return Status::InvalidArgument(at + "gamma_q / gamma_k is null (qk_norm)");
      if (Status s = detail::check_depth_sources(y.sources, l, at); !s.ok()) return s;
      for (int j : y.sources) is_source[size_t(j)] = true;
      if (backward) {
        if (!y.dq || !y.dk || !y.dv) return Status::InvalidArgument(at + "dq / dk / dv is null");
        if (local.qk_norm && (!y.dgamma_q || !y.dgamma_k))
          return Status::InvalidArgument(at + "dgamma_q / dgamma_k is null (qk_norm)");
      }
    }
    if (backward) {
      for (size_t l = 0; l < layers.size(); ++l)
        if (is_source[l] && (!layers[l].dkhat_acc || !layers[l].dvhat_acc))
          return Status::InvalidArgument("layers[" + std::to_string(l) +
                                         "].dkhat_acc / dvhat_acc is null: a later layer reads "
                                         "this layer");
      if (local.qk_norm && !workspace)
        return Status::InvalidArgument("workspace (depth_workspace_bytes) is null");
    }
    return Status::Ok();
  }

  /// The depth pass's arguments for layer l.
  variants::DepthLayer depth_layer(size_t l) const {
    const DepthStackLayer& y = layers[l];
    const FlashBwdParams& a = y.attn;
    variants::DepthLayer p;
    p.total = a.total_q, p.h = a.h, p.h_k = a.h_k;
    p.cu_seqlens = a.cu_seqlens_q, p.b = a.b, p.seqlen = a.seqlen_q;
    p.local = local;
    p.q = y.q, p.k = y.k, p.v = y.v;
    p.q_rot = const_cast<void*>(a.q), p.khat = const_cast<void*>(a.k);
    p.vhat = const_cast<void*>(a.v);
    p.gamma_q = y.gamma_q, p.gamma_k = y.gamma_k;
    p.num_sources = int(y.sources.size());
    for (size_t c = 0; c < y.sources.size() && c < size_t(core::kMaxSources); ++c) {
      const DepthStackLayer& src = layers[size_t(y.sources[c])];
      p.src_khat[c] = src.attn.k, p.src_vhat[c] = src.attn.v;
      p.src_dkhat_acc[c] = src.dkhat_acc, p.src_dvhat_acc[c] = src.dvhat_acc;
    }
    p.dq_rot = a.dq, p.dkhat = a.dk, p.dvhat = a.dv;
    p.dkhat_acc = y.dkhat_acc, p.dvhat_acc = y.dvhat_acc;
    p.dq = y.dq, p.dk = y.dk, p.dv = y.dv;
    p.partial = workspace, p.dgamma_q = y.dgamma_q, p.dgamma_k = y.dgamma_k;
    return p;
  }

  Status forward(cudaStream_t stream = 0) const {
    if (Status s = validate(false); !s.ok()) return s;
    for (size_t l = 0; l < layers.size(); ++l) {
      if (Status s = launch_pass(l, false, stream); !s.ok()) return s;
      if (Status s = flash_fwd(layers[l].attn, stream); !s.ok()) return s;
    }
    return Status::Ok();
  }

  /// Zeroes the accumulators, then runs the layers L-1 .. 0.
  Status backward(cudaStream_t stream = 0) const {
    if (Status s = validate(true); !s.ok()) return s;
    const int64_t n = int64_t(layers[0].attn.total_q) * layers[0].attn.h_k * layers[0].attn.d;
    for (const DepthStackLayer& y : layers)
      for (float* acc : {y.dkhat_acc, y.dvhat_acc})
        if (acc && n > 0)
          if (Status s = launch(variants::fill_zero_kernel<256>, dim3(unsigned((n + 255) / 256)),
                                dim3(256), 0, stream, acc, n);
              !s.ok())
            return s;
    for (size_t l = layers.size(); l-- > 0;) {
      if (Status s = flash_bwd(layers[l].attn, stream); !s.ok()) return s;
      if (Status s = launch_pass(l, true, stream); !s.ok()) return s;
    }
    return Status::Ok();
  }

 private:
  Status launch_pass(size_t l, bool backward, cudaStream_t stream) const {
    return detail::launch_depth_pass(depth_layer(l), layers[l].attn.dtype, layers[l].attn.d,
                                     backward, stream);
  }
};

STRATA_EXECUTOR_END
}  // namespace strata::api
