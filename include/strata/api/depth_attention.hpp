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
#include "strata/api/pass_output.hpp"
#include "strata/api/workspace.hpp"
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
  /// The attention of the layer over the depth pass's outputs: attn.q, attn.k, attn.v are the
  /// stack's to set (to q_rot, khat, vhat; leave them null); dq, dk, dv are the attention's
  /// gradients of them (written by its backward, read by the pass's).
  FlashBwdParams attn;
  const void* q = nullptr;  ///< raw projections
  const void* k = nullptr;
  const void* v = nullptr;
  /// The depth pass's outputs (written by the forward, read by the attention and the backward):
  /// q_rot [total, h, d], k^ and v^ [total, h_k, d], contiguous in attn.dtype. A later layer
  /// reads this layer's k^, v^ as its sources.
  void* q_rot = nullptr;
  void* khat = nullptr;
  void* vhat = nullptr;
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

namespace detail {
/// Bytes of the backward workspace: with QK-norm, the dgamma partials of a layer's (token, KV
/// head) rows (the layers share the token layout and run one after another); else 0.
inline size_t depth_workspace_bytes(const variants::QkNormRopeOptions& local,
                                    const FlashFwdParams& a) {
  if (!local.qk_norm) return 0;
  const int64_t rows = int64_t(a.total_q > 0 ? a.total_q : 0) * (a.h_k > 0 ? a.h_k : 0);
  const int64_t blocks = (rows + variants::kDepthRowsPerBlock - 1) / variants::kDepthRowsPerBlock;
  return size_t(blocks) * 2 * size_t(a.d > 0 ? a.d : 0) * sizeof(float);
}

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
  float* workspace = nullptr;  ///< backward with QK-norm: workspace_bytes(stack) bytes
  size_t workspace_bytes = 0;  ///< its size, checked

  /// Every field of every layer, before anything runs.
  Status validate(bool backward) const {
    if (layers.empty()) return Status::InvalidArgument("layers is empty");
    std::vector<bool> is_source(layers.size(), false);
    for (size_t l = 0; l < layers.size(); ++l) {
      const std::string at = "layers[" + std::to_string(l) + "].";
      const DepthStackLayer& y = layers[l];
      FlashBwdParams a;
      if (Status s = layer_attn(l, &a); !s.ok()) return s;
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
      if (y.v == y.vhat && backward)
        return Status::InvalidArgument(at +
                                       "v: the backward needs the raw v; vhat must not "
                                       "overwrite it");
      if (backward && local.qk_norm && (y.q == y.q_rot || y.k == y.khat))
        return Status::InvalidArgument(at +
                                       "q / k: the norms' backward needs the raw q and k; "
                                       "q_rot / khat must not overwrite them");
      for (int j : y.sources)
        if (j >= 0 && j < int(l) &&
            ((y.khat && layers[size_t(j)].khat == y.khat) ||
             (y.vhat && layers[size_t(j)].vhat == y.vhat)))
          return Status::InvalidArgument(at + "khat / vhat: shared with source layer " +
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
      if (Status s = detail::check_workspace(workspace, workspace_bytes,
                                             detail::depth_workspace_bytes(local, layers[0].attn));
          !s.ok())
        return s;
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
    p.q_rot = y.q_rot, p.khat = y.khat, p.vhat = y.vhat;
    p.gamma_q = y.gamma_q, p.gamma_k = y.gamma_k;
    p.num_sources = int(y.sources.size());
    for (size_t c = 0; c < y.sources.size() && c < size_t(core::kMaxSources); ++c) {
      const DepthStackLayer& src = layers[size_t(y.sources[c])];
      p.src_khat[c] = src.khat, p.src_vhat[c] = src.vhat;
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
      FlashBwdParams a;
      if (Status s = layer_attn(l, &a); !s.ok()) return s;
      if (Status s = launch_pass(l, false, stream); !s.ok()) return s;
      if (Status s = flash_fwd(a, stream); !s.ok()) return s;
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
      FlashBwdParams a;
      if (Status s = layer_attn(l, &a); !s.ok()) return s;
      if (Status s = flash_bwd(a, stream); !s.ok()) return s;
      if (Status s = launch_pass(l, true, stream); !s.ok()) return s;
    }
    return Status::Ok();
  }

 private:
  /// Layer l's attention: attn with q, k, v pointed at q_rot, khat, vhat (refused by name where
  /// attn names other buffers there).
  Status layer_attn(size_t l, FlashBwdParams* out) const {
    const DepthStackLayer& y = layers[l];
    const std::string at = "layers[" + std::to_string(l) + "].";
    const bool rows = y.attn.total_q > 0;  // no tokens: nothing is written
    FlashBwdParams a = y.attn;
    using detail::bind_pass_output;
    if (Status s = bind_pass_output(a.q, y.q_rot, at + "attn.q", at + "q_rot", rows); !s.ok())
      return s;
    if (Status s = bind_pass_output(a.k, y.khat, at + "attn.k", at + "khat", rows); !s.ok())
      return s;
    if (Status s = bind_pass_output(a.v, y.vhat, at + "attn.v", at + "vhat", rows); !s.ok())
      return s;
    *out = a;
    return Status::Ok();
  }

  Status launch_pass(size_t l, bool backward, cudaStream_t stream) const {
    return detail::launch_depth_pass(depth_layer(l), layers[l].attn.dtype, layers[l].attn.d,
                                     backward, stream);
  }
};

/// Bytes of the stack's backward workspace (QK-norm's dgamma partials; 0 without QK-norm).
inline size_t workspace_bytes(const DepthStack& st) {
  return st.layers.empty() ? 0 : detail::depth_workspace_bytes(st.local, st.layers[0].attn);
}

STRATA_EXECUTOR_END
}  // namespace strata::api
