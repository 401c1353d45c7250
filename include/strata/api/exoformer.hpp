/// \file
/// ExoFormer (SPEC §3, decisions §7.4) with Gated Attention's output gate: per layer the fused
/// token-local mix pass (strata/variants/exoformer.cuh) writes the attention's q~, k~, v~ and the
/// gate logits g~, then the gated attention runs (api/output_gate.hpp). Backward runs L-1 .. 0:
/// the gated attention's backward gives dL/dq~, dk~, dv~ (after RoPE) and dg~, and the mix pass
/// turns them into dP, dlambda, ds, the gains' gradients and the stack's fp32 anchor accumulator
/// dA^_P, which layer 0 turns into d anchor_P.
///
///   ExoStack st;  st.options = ...;  st.anchors = ...;  st.layers = {...};
///   st.workspace_bytes = api::workspace_bytes(st);  st.workspace = (that many bytes);
///   st.forward();   // or forward_layer(l) for l = 0 .. L-1, between the trainer's own layers
///   st.backward();  // or backward_layer(l) for l = L-1 .. 0
///
/// The caller computes the anchor projections anchor_P = E W_anc (one GEMM per stack) and, for the
/// dynamic variant, the scales s = sigmoid(MLP(x^)) [total, 8] per layer; d anchor_P and ds go back
/// through those. The anchors' RMSNorm runs inside every layer's pass (recomputed, never stored).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "strata/api/flash.hpp"
#include "strata/api/output_gate.hpp"
#include "strata/api/pass_output.hpp"
#include "strata/api/workspace.hpp"
#include "strata/variants/exoformer.cuh"

namespace strata::api {

using variants::ExoRows;
using variants::ExoRowsOut;
using variants::kExoStreams;

/// The variant: lambda granularity, static or dynamic scales, RoPE, the norms' eps (defaults:
/// the official configuration, strata/core/defaults.hpp). Its QK-norm is a step of the method
/// (SPEC §3a step 5), always on.
struct ExoOptions {
  core::MixGranularity granularity = core::MixGranularity::kElementwise;
  bool dynamic = true;  ///< per-token scales s (Dynamic E-ExoFormer, the official default)
  bool rope = defaults::kRope;
  float rope_theta = paper::kExoFormerRopeTheta;  ///< the official train.py's 5e5
  float norm_eps = defaults::kRmsNormEps;         ///< QK-norm
  float anchor_eps = defaults::kRmsNormEps;       ///< anchor RMSNorm
};

/// The stack-wide anchors, stream order q, k, v, g (heads h, h_k, h_k, h).
struct ExoAnchors {
  std::array<ExoRows, kExoStreams> anchor{};      ///< raw anchor_P = E W_anc (T)
  std::array<const float*, kExoStreams> gamma{};  ///< [d] anchor RMSNorm gains
  std::array<float*, kExoStreams> acc{};          ///< fp32 [total, heads, d] contiguous
                                                  ///< (needed when L > 1)
  std::array<ExoRowsOut, kExoStreams> danchor{};  ///< dL/d anchor_P (T), written
  std::array<float*, kExoStreams> dgamma{};       ///< [d] fp32, written
};

/// One layer's own tensors (stream order q, k, v, g).
struct ExoLayerMix {
  std::array<ExoRows, kExoStreams> p{};  ///< the layer's projections P (T)
  /// The mixed outputs q~, k~ (normed, rotated), v~ and g~ (T), written by the forward, read by
  /// the gated attention and the backward: q~, k~, v~ in attn's q, k, v strides, g~ in gate's.
  std::array<void*, kExoStreams> out{};
  std::array<const float*, kExoStreams> lambda1{};  ///< fp32, the granularity's shape
  std::array<const float*, kExoStreams> lambda2{};
  const float* gamma_q = nullptr;  ///< [d] QK-norm gains
  const float* gamma_k = nullptr;
  const float* s = nullptr;  ///< dynamic: fp32 [total, 8] q1 q2 k1 k2 v1 v2 g1 g2
  // backward
  std::array<ExoRowsOut, kExoStreams> dp{};    ///< dL/dP (T), written
  std::array<float*, kExoStreams> dlambda1{};  ///< fp32, lambda's shape, written
  std::array<float*, kExoStreams> dlambda2{};
  float* dgamma_q = nullptr;  ///< [d] fp32, written
  float* dgamma_k = nullptr;
  float* ds = nullptr;  ///< dynamic: fp32 [total, 8], written
};

/// One layer: the gated attention over mix.out (attn.q, attn.k, attn.v and gate.gate are the
/// stack's to set: leave them null; their strides are the outputs'; g~ is elementwise,
/// [total, h, d]). Backward: attn.dq, dk, dv and gate.dgate receive the attention's gradients,
/// which the mix pass reads.
struct ExoStackLayer {
  FlashBwdParams attn;
  GateArgs gate;
  ExoLayerMix mix;
};

namespace detail {
/// Bytes of the backward workspace: the mix pass's block partials (dlambda, dgamma) and their
/// chunk sums (variants::exo_workspace_floats) for a layer's tokens, shared by the layers (they
/// run one after the other).
inline size_t exo_workspace_bytes(const FlashFwdParams& a) {
  if (a.total_q <= 0 || a.h <= 0 || a.d <= 0) return 0;
  return size_t(variants::exo_workspace_floats(a.total_q, a.h, a.d)) * sizeof(float);
}
}  // namespace detail

/// Number of lambda values of one stream with `heads` heads.
inline int64_t exo_lambda_count(core::MixGranularity g, int heads, int d) {
  return g == core::MixGranularity::kElementwise ? int64_t(heads) * d
         : g == core::MixGranularity::kHeadwise  ? heads
                                                 : 1;
}

namespace detail {
STRATA_EXECUTOR_BEGIN
/// The pass, and after the backward the parameter-gradient reduction, which also runs (over
/// zero blocks, writing zeros) when there are no tokens.
template <class T, int D>
Status launch_exo_typed(const variants::ExoMix& m, bool backward, cudaStream_t stream) {
  const dim3 grid(unsigned(variants::exo_blocks(m.total)), kExoStreams);
  if (grid.x > 0)
    if (Status s = launch(backward ? variants::exo_mix_backward_kernel<T, D>
                                   : variants::exo_mix_forward_kernel<T, D>,
                          grid, dim3(variants::kExoThreads), 0, stream, m);
        !s.ok())
      return s;
  if (!backward) return Status::Ok();
  // the parameter gradients: the block partials summed in chunks (past kExoChunkBlocks blocks),
  // then per output, both in a fixed order
  variants::ExoMix r = m;
  const int blocks = int(grid.x);
  int rows = blocks;  // the partial rows exo_reduce_kernel sums
  if (blocks > variants::kExoChunkBlocks) {
    const int64_t stride = variants::exo_partial_floats(m.h, D);
    rows = variants::exo_chunks(blocks);
    r.partial = m.partial + int64_t(kExoStreams) * blocks * stride;
    const dim3 cgrid(
        unsigned((stride + variants::kExoColumnThreads - 1) / variants::kExoColumnThreads),
        unsigned(rows), kExoStreams);
    if (Status s =
            launch(variants::exo_chunk_sum_kernel<D>, cgrid, dim3(variants::kExoColumnThreads), 0,
                   stream, static_cast<const float*>(m.partial), r.partial, m.h, blocks);
        !s.ok())
      return s;
  }
  int outputs = 0;
  for (int p = 0; p < kExoStreams; ++p)
    outputs = std::max(outputs, variants::exo_reduce_outputs(m, p, D));
  const dim3 rgrid(unsigned((outputs + variants::kExoReduceWarps - 1) / variants::kExoReduceWarps),
                   kExoStreams);
  return launch(variants::exo_reduce_kernel<D>, rgrid, dim3(32 * variants::kExoReduceWarps), 0,
                stream, r, rows);
}
/// The mix pass of one layer (arguments validated by the caller), forward or backward.
inline Status launch_exo_mix(const variants::ExoMix& m, Dtype dtype, int d, bool backward,
                             cudaStream_t stream) {
  return with_dtype_and_head_dim(
      dtype, d, [&]<class T, int D>() { return launch_exo_typed<T, D>(m, backward, stream); });
}
STRATA_EXECUTOR_END
}  // namespace detail

STRATA_EXECUTOR_BEGIN
struct ExoStack {
  ExoOptions options;
  ExoAnchors anchors;
  std::vector<ExoStackLayer> layers;
  float* workspace = nullptr;  ///< backward: workspace_bytes(stack) bytes
  size_t workspace_bytes = 0;  ///< its size, checked

  /// Every field of every layer, before anything runs.
  Status validate(bool backward) const {
    if (layers.empty()) return Status::InvalidArgument("layers is empty");
    const ExoOptions& o = options;
    if (o.granularity != core::MixGranularity::kElementwise &&
        o.granularity != core::MixGranularity::kHeadwise &&
        o.granularity != core::MixGranularity::kScalar)
      return Status::InvalidArgument("options.granularity: not a MixGranularity value");
    if (!(o.norm_eps > 0.f) || !std::isfinite(o.norm_eps))
      return Status::InvalidArgument("options.norm_eps must be positive and finite");
    if (!(o.anchor_eps > 0.f) || !std::isfinite(o.anchor_eps))
      return Status::InvalidArgument("options.anchor_eps must be positive and finite");
    if (o.rope && (!(o.rope_theta > 1.f) || !std::isfinite(o.rope_theta)))
      return Status::InvalidArgument("options.rope_theta must be finite and above 1");
    const FlashBwdParams& f = layers[0].attn;
    const int L = int(layers.size());
    for (int p = 0; p < kExoStreams; ++p) {
      const std::string n = std::string("anchors.") + stream_name(p);
      const ExoRows& a = anchors.anchor[size_t(p)];
      if (f.total_q > 0)
        if (Status s = detail::check_rows(a.ptr, n + ".anchor", a.row_stride, a.head_stride,
                                          heads(f, p), f.d);
            !s.ok())
          return s;
      if (!anchors.gamma[size_t(p)]) return Status::InvalidArgument(n + ".gamma is null");
      if (!backward) continue;
      if (!anchors.dgamma[size_t(p)]) return Status::InvalidArgument(n + ".dgamma is null");
      if (f.total_q == 0) continue;
      const ExoRowsOut& da = anchors.danchor[size_t(p)];
      if (Status s = detail::check_rows(da.ptr, n + ".danchor", da.row_stride, da.head_stride,
                                        heads(f, p), f.d);
          !s.ok())
        return s;
      if (L > 1 && !anchors.acc[size_t(p)])
        return Status::InvalidArgument(n + ".acc (the fp32 dA^ accumulator) is null");
    }
    if (backward)
      if (Status s =
              detail::check_workspace(workspace, workspace_bytes, detail::exo_workspace_bytes(f));
          !s.ok())
        return s;
    for (int p = 0; backward && L > 1 && p < kExoStreams; ++p)
      for (int q = p + 1; q < kExoStreams; ++q)
        if (anchors.acc[size_t(p)] == anchors.acc[size_t(q)])
          return Status::InvalidArgument(std::string("anchors.") + stream_name(p) +
                                         ".acc: shared with anchors." + stream_name(q) +
                                         ".acc (the streams run concurrently)");
    for (size_t l = 0; l < layers.size(); ++l)
      if (Status s = validate_layer(l, backward); !s.ok()) return s;
    return Status::Ok();
  }

  Status forward(cudaStream_t stream = 0) const {
    if (Status s = validate(false); !s.ok()) return s;
    for (size_t l = 0; l < layers.size(); ++l)
      if (Status s = run_forward(l, stream); !s.ok()) return s;
    return Status::Ok();
  }
  Status backward(cudaStream_t stream = 0) const {
    if (Status s = validate(true); !s.ok()) return s;
    for (size_t l = layers.size(); l-- > 0;)
      if (Status s = run_backward(l, stream); !s.ok()) return s;
    return Status::Ok();
  }
  /// Layer l alone (a trainer interleaving its own layers): forward 0 .. L-1, then backward
  /// L-1 .. 0 — the anchor accumulator is written by L-1, added to below, consumed by 0.
  Status forward_layer(size_t l, cudaStream_t stream = 0) const {
    if (l >= layers.size()) return Status::InvalidArgument("layer index out of range");
    if (Status s = validate(false); !s.ok()) return s;
    return run_forward(l, stream);
  }
  Status backward_layer(size_t l, cudaStream_t stream = 0) const {
    if (l >= layers.size()) return Status::InvalidArgument("layer index out of range");
    if (Status s = validate(true); !s.ok()) return s;
    return run_backward(l, stream);
  }

  static const char* stream_name(int p) {
    static const char* names[kExoStreams] = {"q", "k", "v", "g"};
    return names[p];
  }

 private:
  static int heads(const FlashFwdParams& a, int p) { return p == 1 || p == 2 ? a.h_k : a.h; }

  /// The stream outputs of layer l, in its attention's operand strides and its gate's.
  static ExoRowsOut out_of(const ExoStackLayer& y, int p) {
    const FlashBwdParams& a = y.attn;
    void* out = y.mix.out[size_t(p)];
    switch (p) {
      case 0:
        return {out, a.q_row_stride, a.q_head_stride};
      case 1:
        return {out, a.k_row_stride, a.k_head_stride};
      case 2:
        return {out, a.v_row_stride, a.v_head_stride};
      default:
        return {out, y.gate.gate_row_stride, y.gate.gate_head_stride};
    }
  }
  /// Layer l's gated attention: attn's q, k, v and gate.gate pointed at mix.out (refused by name
  /// where they name other buffers; null outputs are allowed without tokens).
  Status layer_attn(size_t l, FlashBwdParams* attn, GateArgs* gate) const {
    const ExoStackLayer& y = layers[l];
    const std::string at = "layers[" + std::to_string(l) + "].";
    const bool rows = y.attn.total_q > 0;
    FlashBwdParams a = y.attn;
    GateArgs g = y.gate;
    const void** in[kExoStreams] = {&a.q, &a.k, &a.v, &g.gate};
    static const char* in_name[kExoStreams] = {"attn.q", "attn.k", "attn.v", "gate.gate"};
    for (int p = 0; p < kExoStreams; ++p)
      if (Status s = detail::bind_pass_output(*in[p], y.mix.out[size_t(p)], at + in_name[p],
                                              at + "mix.out[" + stream_name(p) + "]", rows);
          !s.ok())
        return s;
    *attn = a, *gate = g;
    return Status::Ok();
  }
  static ExoRows dout_of(const ExoStackLayer& y, int p) {
    const FlashBwdParams& a = y.attn;
    switch (p) {
      case 0:
        return {a.dq, a.dq_row_stride, a.dq_head_stride};
      case 1:
        return {a.dk, a.dk_row_stride, a.dk_head_stride};
      case 2:
        return {a.dv, a.dv_row_stride, a.dv_head_stride};
      default:
        return {y.gate.dgate, y.gate.gate_row_stride, y.gate.gate_head_stride};
    }
  }

  Status validate_layer(size_t l, bool backward) const {
    const std::string at = "layers[" + std::to_string(l) + "].";
    const ExoStackLayer& y = layers[l];
    FlashBwdParams a;
    GateArgs gate;
    if (Status s = layer_attn(l, &a, &gate); !s.ok()) return s;
    const Status s = backward ? api::validate_backward(a) : api::validate_forward(a);
    if (!s.ok()) return Status(s.code(), at + "attn: " + s.message());
    const FlashBwdParams& f = layers[0].attn;
    if (a.h != f.h || !detail::same_token_attention(a, f, backward))
      return Status::InvalidArgument(
          at +
          "attn: self-attention over layer 0's tokens (total, h, h_k, d, dtype, cu_seqlens "
          "equal) is required: the anchors are read at the same token");
    const ExoLayerMix& m = y.mix;
    if (a.total_q == 0) {  // no rows are touched, but the parameter gradients are written (zero)
      if (backward)
        for (int p = 0; p < kExoStreams; ++p)
          if (!m.dlambda1[size_t(p)] || !m.dlambda2[size_t(p)])
            return Status::InvalidArgument(at + "mix." + stream_name(p) +
                                           ": dlambda1 / dlambda2 is null");
      if (backward && (!m.dgamma_q || !m.dgamma_k))
        return Status::InvalidArgument(at + "mix.dgamma_q / dgamma_k is null");
      return Status::Ok();
    }
    if (y.gate.kind != core::GateKind::kElementwise)
      return Status::InvalidArgument(at +
                                     "gate.kind: ExoFormer mixes elementwise gate logits "
                                     "[total, h, d]; a headwise gate has no anchor to mix");
    if (Status g = api::validate(gate, a, backward); !g.ok())
      return Status(g.code(), at + "gate: " + g.message());
    for (int p = 0; p < kExoStreams; ++p) {
      const std::string n = at + "mix." + stream_name(p);
      const int H = heads(a, p);
      if (Status st = detail::check_rows(m.p[size_t(p)].ptr, n, m.p[size_t(p)].row_stride,
                                         m.p[size_t(p)].head_stride, H, a.d);
          !st.ok())
        return st;
      const ExoRowsOut out = out_of(y, p);
      const std::string out_name = at + "mix.out[" + stream_name(p) + "]";
      if (Status st =
              detail::check_rows(out.ptr, out_name, out.row_stride, out.head_stride, H, a.d);
          !st.ok())
        return st;
      for (int q = 0; q < kExoStreams; ++q)
        if (out.ptr == anchors.anchor[size_t(q)].ptr)
          return Status::InvalidArgument(out_name + ": overwrites anchors." + stream_name(q) +
                                         ", which every layer reads");
      for (int q = 0; backward && q < kExoStreams; ++q) {
        // written before the pass (the attention's gradients) or by every layer (dP), while
        // P and the anchors are read again
        const void* dout = dout_of(y, q).ptr;
        if (dout == m.p[size_t(p)].ptr || dout == anchors.anchor[size_t(p)].ptr ||
            m.dp[size_t(q)].ptr == anchors.anchor[size_t(p)].ptr ||
            (q != p && m.dp[size_t(q)].ptr == m.p[size_t(p)].ptr))
          return Status::InvalidArgument(n + " / anchors." + stream_name(p) +
                                         ": overwritten by a gradient (attn / gate / mix.dp) "
                                         "before the backward reads it");
      }
      if (backward && out.ptr == m.p[size_t(p)].ptr)
        return Status::InvalidArgument(n +
                                       ": the backward needs the raw projection; the mixed "
                                       "output must not overwrite it");
      if (!m.lambda1[size_t(p)] || !m.lambda2[size_t(p)])
        return Status::InvalidArgument(n + ": lambda1 / lambda2 is null");
      if (!backward) continue;
      const ExoRows dout = dout_of(y, p);
      if (Status st = detail::check_rows(dout.ptr, n + " gradient (attn / gate)", dout.row_stride,
                                         dout.head_stride, H, a.d);
          !st.ok())
        return st;
      const ExoRowsOut& dp = m.dp[size_t(p)];
      if (Status st = detail::check_rows(dp.ptr, n + ".dp", dp.row_stride, dp.head_stride, H, a.d);
          !st.ok())
        return st;
      if (!m.dlambda1[size_t(p)] || !m.dlambda2[size_t(p)])
        return Status::InvalidArgument(n + ": dlambda1 / dlambda2 is null");
    }
    if (!m.gamma_q || !m.gamma_k)
      return Status::InvalidArgument(at + "mix.gamma_q / gamma_k is null");
    if (options.dynamic && !m.s) return Status::InvalidArgument(at + "mix.s is null (dynamic)");
    if (backward && (!m.dgamma_q || !m.dgamma_k))
      return Status::InvalidArgument(at + "mix.dgamma_q / dgamma_k is null");
    if (backward && options.dynamic && !m.ds)
      return Status::InvalidArgument(at + "mix.ds is null (dynamic)");
    return Status::Ok();
  }

  variants::ExoMix kernel_args(size_t l, bool backward) const {
    const ExoStackLayer& y = layers[l];
    const FlashBwdParams& a = y.attn;
    variants::ExoMix m;
    m.total = a.total_q, m.h = a.h, m.h_k = a.h_k;
    m.cu_seqlens = a.cu_seqlens_q, m.b = a.b, m.seqlen = a.seqlen_q;
    m.granularity = options.granularity, m.dynamic = options.dynamic, m.rope = options.rope;
    m.rope_theta = options.rope_theta, m.norm_eps = options.norm_eps;
    m.anchor_eps = options.anchor_eps;
    for (int p = 0; p < kExoStreams; ++p) {
      variants::ExoStream& S = m.stream[p];
      const size_t up = size_t(p);
      S.p = y.mix.p[up], S.anchor = anchors.anchor[up], S.gamma_anchor = anchors.gamma[up];
      S.lambda1 = y.mix.lambda1[up], S.lambda2 = y.mix.lambda2[up];
      S.out = out_of(y, p);
      if (!backward) continue;
      S.dout = dout_of(y, p), S.dp = y.mix.dp[up];
      S.danchor_acc = anchors.acc[up], S.danchor = anchors.danchor[up];
      S.dlambda1 = y.mix.dlambda1[up], S.dlambda2 = y.mix.dlambda2[up];
      S.dgamma_anchor = anchors.dgamma[up];
    }
    m.gamma_q = y.mix.gamma_q, m.gamma_k = y.mix.gamma_k, m.s = y.mix.s;
    if (backward) {
      m.ds = y.mix.ds, m.dgamma_q = y.mix.dgamma_q, m.dgamma_k = y.mix.dgamma_k;
      m.accumulate = l + 1 < layers.size();
      m.finalize = l == 0;
      m.partial = workspace;
    }
    return m;
  }

  Status mix(size_t l, bool backward, cudaStream_t stream) const {
    const FlashBwdParams& a = layers[l].attn;
    return detail::launch_exo_mix(kernel_args(l, backward), a.dtype, a.d, backward, stream);
  }

  Status run_forward(size_t l, cudaStream_t stream) const {
    FlashBwdParams a;
    GateArgs g;
    if (Status s = layer_attn(l, &a, &g); !s.ok()) return s;
    if (a.total_q > 0)
      if (Status s = mix(l, false, stream); !s.ok()) return s;
    return gated_forward(a, g, stream);
  }
  Status run_backward(size_t l, cudaStream_t stream) const {
    FlashBwdParams a;
    GateArgs g;
    if (Status s = layer_attn(l, &a, &g); !s.ok()) return s;
    if (Status s = gated_backward(a, g, stream); !s.ok()) return s;
    return mix(l, true, stream);
  }
};

/// Bytes of the stack's backward workspace (the mix pass's; each layer's gate.workspace is the
/// gated attention's, workspace_bytes(attn, gate)).
inline size_t workspace_bytes(const ExoStack& st) {
  return st.layers.empty() ? 0 : detail::exo_workspace_bytes(st.layers[0].attn);
}

STRATA_EXECUTOR_END
}  // namespace strata::api
