/// \file
/// MEA, Multi-head Explicit Attention (SPEC §4, decisions §7.5): the fused token-local pass per
/// layer (strata/variants/mea.cuh) around the flash attention, and MeaStack, the explicit
/// layer-stack helper (MEA layers are independent: no cross-layer state). Two GroupNorm sites:
///
/// KeyValue (default), per layer, forward: pass (q_rot, k_attn, v_attn from q, K_c, V_c, A^K, A^V
///   and the GN affines), then flash_fwd on (q_rot, k_attn, v_attn). Backward: flash_bwd gives
///   dq_rot, dk_attn, dv_attn; the pass writes dq, dK_c, dV_c (T) and dA^K, dA^V, dgamma_k,
///   dbeta_k, dgamma_v, dbeta_v (fp32; block partials in the workspace, then a fixed-order
///   reduction: deterministic).
/// Output, forward: pass (q_rot, kc_rot = RoPE(K_c)), the composition K', V' from the H_c component
///   heads into k_attn, v_attn, then flash_fwd with MeaOutputAttention: attn.o receives the
///   attention output O and `out` = GN_o(O). Backward: attn.dout is dL/dout; flash_bwd
///   with the policy (GN backward in its preprocess, dO in the workspace) writes dq_rot and dK',
///   dV' (attn.dk, attn.dv, [total, H_kv, d]); the pass writes dq, dK_c, dV_c, dA^K, dA^V; a
///   column pass and a fixed-order sum give dgamma_o, dbeta_o.
/// Bounds: H_c <= kMeaMaxComponentHeads (32) and H_kv <= kMeaMaxCompositeHeads (32), which keep a
/// step's staged rows within 48 KiB of shared memory.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "strata/api/flash.hpp"
#include "strata/api/pass_output.hpp"
#include "strata/api/workspace.hpp"
#include "strata/core/options.hpp"
#include "strata/variants/mea.cuh"

namespace strata::api {

/// Options shared by the layers of a stack (defaults: strata/core/defaults.hpp). The head
/// GroupNorm is a step of the method, always on; `site` places it.
struct MeaOptions {
  core::NormSite site = core::NormSite::kKeyValue;  ///< where the head GroupNorm sits
  float gn_eps = defaults::kGroupNormEps;           ///< GroupNorm epsilon (> 0)
  /// RoPE on q and on the keys: the normalised composite key (KeyValue), the component heads
  /// (Output; HLC commutes with RoPE)
  bool rope = defaults::kRope;
  float rope_theta = paper::kMeaRopeTheta;
};

/// One MEA layer. All activations are contiguous [total, heads, d] in attn.dtype.
struct MeaLayerParams {
  /// The attention of the layer over q_rot, k_attn, v_attn (attn.q, attn.k, attn.v are the
  /// stack's to set: leave them null). attn.h_k is H_kv, the composite heads; self-attention
  /// (cu_seqlens_k = cu_seqlens_q); attn.dq, dk, dv the attention's gradients (dk, dv:
  /// [total, h_k, d]). Output site: attn.o receives the attention output O before the GroupNorm
  /// (kept for the backward), attn.dout is dL/dout.
  FlashBwdParams attn;
  int h_c = 0;  ///< component heads H_c (1 .. kMeaMaxComponentHeads; H_c < H_kv: virtual heads)
  /// The attention's operands, written by the forward (contiguous, attn.dtype): q_rot =
  /// RoPE(q) [total, h, d]; k_attn, v_attn [total, h_k, d]: at KeyValue the normalised composite
  /// keys and values the pass writes, at Output the composite K', V' the forward writes from
  /// kc_rot and vc and the backward reads again (keep them between the two).
  void* q_rot = nullptr;
  void* k_attn = nullptr;
  void* v_attn = nullptr;
  const void* q = nullptr;   ///< raw queries [total, h, d]
  const void* kc = nullptr;  ///< K_c, V_c [total, h_c, d]
  const void* vc = nullptr;
  const float* a_k = nullptr;  ///< A^K, A^V [h_c, h_k] fp32 row-major
  const float* a_v = nullptr;
  const float* gamma_k = nullptr;  ///< GN affines [h_k, d] fp32
  const float* beta_k = nullptr;
  const float* gamma_v = nullptr;
  const float* beta_v = nullptr;
  // backward outputs (written)
  void* dq = nullptr;   ///< [total, h, d]
  void* dkc = nullptr;  ///< [total, h_c, d]
  void* dvc = nullptr;
  float* da_k = nullptr;  ///< [h_c, h_k]
  float* da_v = nullptr;
  float* dgamma_k = nullptr;  ///< [h_k, d]
  float* dbeta_k = nullptr;
  float* dgamma_v = nullptr;
  float* dbeta_v = nullptr;
  // site Output (the KeyValue gains above are then unused, and these unused at KeyValue)
  void* kc_rot = nullptr;  ///< RoPE(K_c) [total, h_c, d]: written by the forward, read by both
  void* out = nullptr;     ///< GN_o(O) [total, h, d], written by the forward
  const float* gamma_o = nullptr;  ///< [h, d] fp32
  const float* beta_o = nullptr;
  float* dgamma_o = nullptr;  ///< [h, d] fp32, written by the backward
  float* dbeta_o = nullptr;
};

namespace detail {

/// Tokens per chunk of the Output site's dgamma_o, dbeta_o pass (at most kMeaMaxBlocks chunks).
inline int mea_output_chunks(int total, int& tokens_per_chunk) {
  if (total <= 0) return tokens_per_chunk = 1, 0;
  int chunks = (total + 255) / 256;  // >= 256 tokens a chunk: the partials stay ~1% of traffic
  if (chunks > variants::kMeaMaxBlocks) chunks = variants::kMeaMaxBlocks;
  tokens_per_chunk = (total + chunks - 1) / chunks;
  return (total + tokens_per_chunk - 1) / tokens_per_chunk;
}

/// Byte offsets of the backward workspace: the pass's block partials; at the Output site also
/// the attention's dO (T), the O rows' statistics and the dgamma_o, dbeta_o chunk partials.
struct MeaWorkspace {
  size_t dout = 0, stats = 0, gn = 0, bytes = 0;
};
inline size_t mea_round16(size_t n) {
  return (n + 15) / 16 * 16;
}
inline MeaWorkspace mea_workspace(core::NormSite site, int total, int h, int h_kv, int h_c, int d) {
  MeaWorkspace w;
  if (total <= 0 || h < 1 || h_kv < 1 || h_c < 1 || d < 1) return w;
  const variants::MeaGeometry g = variants::mea_geometry(total, h_kv, h_c, d);
  w.bytes = mea_round16(size_t(g.blocks) * size_t(variants::mea_partial_floats(h_kv, h_c, d)) * 4);
  if (site != core::NormSite::kOutput) return w;
  const size_t rows = size_t(total) * size_t(h);
  w.dout = w.bytes, w.bytes += mea_round16(rows * size_t(d) * 2);
  w.stats = w.bytes, w.bytes += mea_round16(rows * 2 * 4);
  int tpc = 1;
  const int chunks = mea_output_chunks(total, tpc);
  w.gn = w.bytes, w.bytes += size_t(chunks) * 2 * size_t(h) * size_t(d) * 4;
  return w;
}

}  // namespace detail

/// Bytes of the backward workspace of a layer (mea_backward(y, o, workspace, workspace_bytes)).
inline size_t workspace_bytes(const MeaLayerParams& y, const MeaOptions& o) {
  return detail::mea_workspace(o.site, y.attn.total_q, y.attn.h, y.attn.h_k, y.h_c, y.attn.d).bytes;
}

namespace detail {
inline bool mea_aligned(const void* p, size_t n) {
  return reinterpret_cast<uintptr_t>(p) % n == 0;
}
}  // namespace detail

namespace detail {

/// The layer's attention: attn with q, k, v pointed at q_rot, k_attn, v_attn (refused by name
/// where attn names other buffers; null outputs are allowed without tokens).
inline Status mea_bind(const MeaLayerParams& y, FlashBwdParams* out) {
  FlashBwdParams a = y.attn;
  const bool rows = a.total_q > 0;
  if (Status s = bind_pass_output(a.q, y.q_rot, "attn.q", "q_rot", rows); !s.ok()) return s;
  if (Status s = bind_pass_output(a.k, y.k_attn, "attn.k", "k_attn", rows); !s.ok()) return s;
  if (Status s = bind_pass_output(a.v, y.v_attn, "attn.v", "v_attn", rows); !s.ok()) return s;
  *out = a;
  return Status::Ok();
}

struct MeaPtr {
  const void* p;
  const char* name;
};
/// Non-null and aligned to `align` bytes, in order; the message names the first bad one.
inline Status mea_check_ptrs(std::initializer_list<MeaPtr> ptrs, size_t align) {
  for (const MeaPtr& x : ptrs) {
    if (!x.p) return Status::InvalidArgument(std::string(x.name) + " is null");
    if (!mea_aligned(x.p, align))
      return Status::InvalidArgument(std::string(x.name) + " is not " + std::to_string(align) +
                                     "-byte aligned");
  }
  return Status::Ok();
}

}  // namespace detail

/// Every field of one layer; Ok means the pass (and the attention) will run it. Nothing is
/// launched by this function.
inline Status validate(const MeaLayerParams& y, const MeaOptions& o, bool backward,
                       const void* workspace = nullptr, size_t workspace_bytes = 0) {
  using detail::mea_check_ptrs;
  if (o.site != core::NormSite::kKeyValue && o.site != core::NormSite::kOutput)
    return Status::InvalidArgument("site: not a NormSite value");
  const bool kv = o.site == core::NormSite::kKeyValue;
  if (y.h_c < 1 || y.h_c > variants::kMeaMaxComponentHeads)
    return Status::InvalidArgument("h_c = " + std::to_string(y.h_c) +
                                   ": must be in [1, kMeaMaxComponentHeads = " +
                                   std::to_string(variants::kMeaMaxComponentHeads) + "]");
  const bool tokens = y.attn.total_q > 0;  // no tokens: no activation is read or written
  if (!kv && tokens && (!y.kc_rot || !y.vc))
    return Status::InvalidArgument(std::string(!y.kc_rot ? "kc_rot" : "vc") +
                                   " is null (site Output: the composition reads it)");
  FlashBwdParams a;
  if (Status s = detail::mea_bind(y, &a); !s.ok()) return s;
  Status s = backward ? validate_backward(a) : validate_forward(a);
  if (!s.ok()) return Status(s.code(), std::string("attn: ") + s.message());
  if (a.h_k > variants::kMeaMaxCompositeHeads)
    return Status::InvalidArgument(
        "attn.h_k = " + std::to_string(a.h_k) +
        ": more than kMeaMaxCompositeHeads = " + std::to_string(variants::kMeaMaxCompositeHeads));
  if (a.seqlen_k != a.seqlen_q || (backward && a.total_k != a.total_q) ||
      !detail::same_offsets(a.cu_seqlens_q, a.cu_seqlens_q_host, a.cu_seqlens_k,
                            a.cu_seqlens_k_host, a.b))
    return Status::InvalidArgument(
        "attn: self-attention (seqlen_k = seqlen_q, total_k = total_q, cu_seqlens_k = "
        "cu_seqlens_q) is required: the pass composes keys at the query's tokens");
  const int64_t hd = int64_t(a.h) * a.d, kd = int64_t(a.h_k) * a.d;
  if (a.q_row_stride != hd || a.q_head_stride != a.d || a.k_row_stride != kd ||
      a.k_head_stride != a.d || a.v_row_stride != kd || a.v_head_stride != a.d ||
      (!kv && (a.o_row_stride != hd || a.o_head_stride != a.d)) ||
      (backward && (a.dq_row_stride != hd || a.dq_head_stride != a.d || a.dk_row_stride != kd ||
                    a.dk_head_stride != a.d || a.dv_row_stride != kd || a.dv_head_stride != a.d ||
                    (!kv && (a.do_row_stride != hd || a.do_head_stride != a.d)))))
    return Status::InvalidArgument(
        "attn: the MEA pass needs contiguous [total, heads, d] operands (row stride heads * d, "
        "head stride d)");
  if (!(o.gn_eps > 0.f) || !std::isfinite(o.gn_eps))
    return Status::InvalidArgument("gn_eps must be finite and > 0");
  if (o.rope && (!(o.rope_theta > 1.f) || !std::isfinite(o.rope_theta)))
    return Status::InvalidArgument("rope_theta must be finite and > 1");
  // activations (T): 16-byte aligned like the attention's operands; parameters fp32
  if (tokens)
    if (Status t = mea_check_ptrs({{y.q, "q"}, {y.kc, "kc"}, {y.vc, "vc"}}, 16); !t.ok()) return t;
  if (Status t = mea_check_ptrs({{y.a_k, "a_k"}, {y.a_v, "a_v"}}, 4); !t.ok()) return t;
  if (kv) {
    if (Status t = mea_check_ptrs({{y.gamma_k, "gamma_k"},
                                   {y.beta_k, "beta_k"},
                                   {y.gamma_v, "gamma_v"},
                                   {y.beta_v, "beta_v"}},
                                  4);
        !t.ok())
      return t;
    for (const void* out : {a.q, a.k, a.v})
      if (out && (out == y.kc || out == y.vc))
        return Status::InvalidArgument(
            "kc / vc: shared with q_rot / k_attn / v_attn, which the pass writes while other "
            "tokens' K_c, V_c are read (and the backward recomposes K', V' from them)");
  } else {
    if (tokens)
      if (Status t = mea_check_ptrs({{y.kc_rot, "kc_rot"}, {y.out, "out"}}, 16); !t.ok()) return t;
    if (Status t = mea_check_ptrs({{y.gamma_o, "gamma_o"}, {y.beta_o, "beta_o"}}, 4); !t.ok())
      return t;
    if (tokens && (y.kc_rot == y.kc || y.kc_rot == y.vc || y.kc_rot == y.q || y.kc_rot == a.q))
      return Status::InvalidArgument(
          "kc_rot: shared with kc / vc / q / q_rot, which the pass reads or writes");
    for (const void* kv_out : {a.k, a.v})
      if (tokens && (kv_out == y.kc || kv_out == y.vc || kv_out == y.kc_rot || kv_out == y.q ||
                     kv_out == a.q || kv_out == y.out || kv_out == a.o))
        return Status::InvalidArgument(
            "k_attn / v_attn: shared with kc / vc / kc_rot / q / q_rot / out / attn.o, which the "
            "composition reads or the forward writes");
    if (tokens && y.out == a.o)
      return Status::InvalidArgument(
          "out: shared with attn.o, the pre-GroupNorm output the backward needs");
    if (tokens &&
        (a.q == y.kc || a.q == y.vc || y.out == y.kc_rot || y.out == y.vc || y.out == a.q))
      return Status::InvalidArgument(
          "q_rot / out: shared with kc / vc / kc_rot / q_rot, which other tokens still read");
  }
  if (backward) {
    if (tokens)
      if (Status t = mea_check_ptrs({{y.dq, "dq"}, {y.dkc, "dkc"}, {y.dvc, "dvc"}}, 16); !t.ok())
        return t;
    if (Status t = mea_check_ptrs({{y.da_k, "da_k"}, {y.da_v, "da_v"}}, 4); !t.ok()) return t;
    if (kv) {
      if (Status t = mea_check_ptrs({{y.dgamma_k, "dgamma_k"},
                                     {y.dbeta_k, "dbeta_k"},
                                     {y.dgamma_v, "dgamma_v"},
                                     {y.dbeta_v, "dbeta_v"}},
                                    4);
          !t.ok())
        return t;
    } else if (Status t = mea_check_ptrs({{y.dgamma_o, "dgamma_o"}, {y.dbeta_o, "dbeta_o"}}, 4);
               !t.ok()) {
      return t;
    }
    for (const void* g : {y.dkc, y.dvc})
      if (tokens && (g == y.kc || g == y.vc || (!kv && g == y.kc_rot)))
        return Status::InvalidArgument(
            "dkc / dvc: shared with kc / vc / kc_rot, which the backward reads to recompose K', "
            "V'");
    // the attention's gradients are written first and the pass reads the components after
    for (const void* g : {a.dq, a.dk, a.dv})
      if (tokens && g && (g == y.kc || g == y.vc || (!kv && g == y.kc_rot)))
        return Status::InvalidArgument(
            "attn.dq / dk / dv: shared with kc / vc / kc_rot, which the pass reads after the "
            "attention's backward wrote them");
    // dK_c is written while other blocks still read dK', dV' (the K side runs before the V side)
    if (tokens && (y.dkc == a.dk || y.dkc == a.dv || y.dvc == a.dk || y.dvc == a.dv))
      return Status::InvalidArgument(
          "dkc / dvc: shared with attn.dk / attn.dv, which the pass reads while writing them");
    if (Status t = detail::check_workspace(workspace, workspace_bytes, api::workspace_bytes(y, o));
        !t.ok())
      return t;
  }
  return Status::Ok();
}

namespace detail {
STRATA_EXECUTOR_BEGIN

inline variants::MeaLayer mea_layer(const MeaLayerParams& y, const MeaOptions& o, bool backward,
                                    void* workspace) {
  const FlashBwdParams& a = y.attn;
  const bool kv = o.site == core::NormSite::kKeyValue;
  variants::MeaLayer p;
  p.total = a.total_q, p.h = a.h, p.h_kv = a.h_k, p.h_c = y.h_c;
  p.cu_seqlens = a.cu_seqlens_q, p.b = a.b, p.seqlen = a.seqlen_q;
  p.gn = kv, p.eps = o.gn_eps, p.rope = o.rope, p.rope_theta = o.rope_theta;
  p.a_k = y.a_k, p.a_v = y.a_v;
  p.gamma_k = y.gamma_k, p.beta_k = y.beta_k, p.gamma_v = y.gamma_v, p.beta_v = y.beta_v;
  p.q = y.q, p.vc = y.vc;
  p.kc = kv || !backward ? y.kc : y.kc_rot;  // Output: the backward reads RoPE(K_c)
  p.q_rot = y.q_rot;
  p.k_attn = kv ? y.k_attn : y.kc_rot;
  p.v_attn = kv ? y.v_attn : nullptr;
  p.dq_rot = a.dq, p.dk_attn = a.dk, p.dv_attn = a.dv;
  p.dq = y.dq, p.dkc = y.dkc, p.dvc = y.dvc;
  p.partial = static_cast<float*>(workspace);
  return p;
}

inline variants::MeaOutputAttention mea_output_policy(const MeaLayerParams& y, const MeaOptions& o,
                                                      void* workspace) {
  variants::MeaOutputAttention v;
  v.gamma = y.gamma_o, v.beta = y.beta_o, v.eps = o.gn_eps, v.out = y.out;
  v.dy = y.attn.dout;
  if (workspace) {
    const MeaWorkspace w =
        mea_workspace(o.site, y.attn.total_q, y.attn.h, y.attn.h_k, y.h_c, y.attn.d);
    v.stats = reinterpret_cast<float*>(static_cast<char*>(workspace) + w.stats);
    v.dout_ws = static_cast<char*>(workspace) + w.dout;  // the preprocess writes dO there
  }
  return v;
}

template <class T, int D>
Status mea_launch(const MeaLayerParams& y, const MeaOptions& o, bool backward, void* workspace,
                  cudaStream_t stream) {
  const variants::MeaLayer p = mea_layer(y, o, backward, workspace);
  const variants::MeaGeometry g = variants::mea_geometry(p.total, p.h_kv, p.h_c, D);
  const size_t smem = size_t(variants::mea_smem_floats(g.m, p.h_kv, p.h_c, D)) * sizeof(float);
  if (g.blocks > 0) {
    if (Status s = launch(
            backward ? variants::mea_backward_kernel<T, D> : variants::mea_forward_kernel<T, D>,
            dim3(unsigned(g.blocks)), dim3(unsigned(g.threads())), smem, stream, p);
        !s.ok())
      return s;
  }
  if (!backward) return Status::Ok();
  variants::MeaReduce r;  // zero blocks: the reduction writes zero gradients
  r.partial = p.partial, r.blocks = g.blocks, r.h_kv = p.h_kv, r.h_c = p.h_c, r.d = D;
  r.gn = p.gn;
  r.da_k = y.da_k, r.da_v = y.da_v, r.dgamma_k = y.dgamma_k, r.dbeta_k = y.dbeta_k;
  r.dgamma_v = y.dgamma_v, r.dbeta_v = y.dbeta_v;
  const int64_t n = p.gn ? variants::mea_partial_floats(p.h_kv, p.h_c, D) : 2 * p.h_c * p.h_kv;
  if (Status s = launch(
          variants::mea_reduce_kernel<variants::kMeaReduceThreads>,
          dim3(unsigned((n + variants::kMeaReduceThreads - 1) / variants::kMeaReduceThreads)),
          dim3(variants::kMeaReduceThreads), 0, stream, r);
      !s.ok() || p.gn)
    return s;
  // site Output: dgamma_o, dbeta_o from O, dL/dout and the statistics the preprocess stored
  const MeaWorkspace w = mea_workspace(o.site, p.total, p.h, p.h_kv, p.h_c, D);
  variants::MeaOutputGnGrad gp;
  gp.o = y.attn.o, gp.dy = y.attn.dout, gp.total = p.total, gp.h = p.h, gp.d = D;
  if (workspace) {  // none for zero tokens: the sums below then write zeros
    gp.stats = reinterpret_cast<const float*>(static_cast<char*>(workspace) + w.stats);
    gp.partial = reinterpret_cast<float*>(static_cast<char*>(workspace) + w.gn);
  }
  const int chunks = mea_output_chunks(p.total, gp.tokens_per_chunk);
  const int64_t hd = int64_t(p.h) * D;
  const unsigned cols =
      unsigned((hd + variants::kMeaColumnThreads - 1) / variants::kMeaColumnThreads);
  if (chunks > 0)
    if (Status s =
            launch(variants::mea_output_gn_partial_kernel<T, variants::kMeaColumnThreads>,
                   dim3(cols, unsigned(chunks)), dim3(variants::kMeaColumnThreads), 0, stream, gp);
        !s.ok())
      return s;
  for (int q = 0; q < 2; ++q)
    if (Status s = launch(variants::mea_sum_kernel<variants::kMeaColumnThreads>, dim3(cols),
                          dim3(variants::kMeaColumnThreads), 0, stream,
                          static_cast<const float*>(gp.partial ? gp.partial + q * hd : nullptr),
                          2 * hd, chunks, hd, q == 0 ? y.dgamma_o : y.dbeta_o);
        !s.ok())
      return s;
  return Status::Ok();
}
inline Status mea_launch_pass(const MeaLayerParams& y, const MeaOptions& o, bool backward,
                              void* workspace, cudaStream_t stream) {
  return with_dtype_and_head_dim(y.attn.dtype, y.attn.d, [&]<class T, int D>() {
    return mea_launch<T, D>(y, o, backward, workspace, stream);
  });
}

/// The Output site's K', V' (k_attn, v_attn) from kc_rot and vc.
template <class T>
Status mea_compose(const MeaLayerParams& y, cudaStream_t stream) {
  const FlashBwdParams& a = y.attn;
  variants::MeaCompose c;
  c.kc_rot = y.kc_rot, c.vc = y.vc, c.a_k = y.a_k, c.a_v = y.a_v;
  c.total = a.total_q, c.h_kv = a.h_k, c.h_c = y.h_c;
  c.k = y.k_attn, c.v = y.v_attn;
  c.k_row_stride = a.k_row_stride, c.k_head_stride = a.k_head_stride;
  c.v_row_stride = a.v_row_stride, c.v_head_stride = a.v_head_stride;
  constexpr int kThreads = variants::kMeaComposeThreads;
  const int64_t threads = 2 * int64_t(a.total_q) * a.h_k * (a.d / 8);
  if (threads == 0) return Status::Ok();
  const dim3 grid(unsigned((threads + kThreads - 1) / kThreads));
  return with_head_dim(a.d, [&]<int D>() {
    return launch(variants::mea_compose_kernel<T, D>, grid, dim3(kThreads), 0, stream, c);
  });
}

STRATA_EXECUTOR_END
}  // namespace detail

namespace detail {
/// The most workspace any of the layers needs (they run one after another and share it).
inline size_t mea_stack_workspace_bytes(const std::vector<MeaLayerParams>& layers,
                                        const MeaOptions& o) {
  size_t need = 0;
  for (const MeaLayerParams& y : layers) need = std::max(need, api::workspace_bytes(y, o));
  return need;
}
}  // namespace detail

STRATA_EXECUTOR_BEGIN
/// Forward of one layer: validates, then runs the pass and the attention.
inline Status mea_forward(const MeaLayerParams& y, const MeaOptions& o, cudaStream_t stream = 0) {
  if (Status s = validate(y, o, false); !s.ok()) return s;
  FlashBwdParams a;
  if (Status s = detail::mea_bind(y, &a); !s.ok()) return s;
  if (Status s = detail::mea_launch_pass(y, o, false, nullptr, stream); !s.ok()) return s;
  if (o.site == core::NormSite::kKeyValue) return flash_fwd(a, stream);
  const Status s = a.dtype == Dtype::kBf16 ? detail::mea_compose<__nv_bfloat16>(y, stream)
                                           : detail::mea_compose<__half>(y, stream);
  if (!s.ok()) return s;
  return flash_fwd(a, detail::mea_output_policy(y, o, nullptr), stream);
}

/// Backward of one layer (after its forward): validates, then runs the attention's backward and
/// the pass's. `workspace`: workspace_bytes(y, o) bytes, 16-byte aligned.
inline Status mea_backward(const MeaLayerParams& y, const MeaOptions& o, void* workspace,
                           size_t workspace_bytes, cudaStream_t stream = 0) {
  if (Status s = validate(y, o, true, workspace, workspace_bytes); !s.ok()) return s;
  FlashBwdParams a;
  if (Status s = detail::mea_bind(y, &a); !s.ok()) return s;
  if (o.site == core::NormSite::kKeyValue) {
    if (Status s = flash_bwd(a, stream); !s.ok()) return s;
  } else {
    const variants::MeaOutputAttention v = detail::mea_output_policy(y, o, workspace);
    if (a.total_q > 0) {  // the dQ and dK/dV kernels read the GroupNorm's dO from the workspace
      a.dout = v.dout_ws;
      a.do_row_stride = int64_t(a.h) * a.d, a.do_head_stride = a.d;
    }
    if (Status s = flash_bwd(a, v, stream); !s.ok()) return s;
  }
  return detail::mea_launch_pass(y, o, true, workspace, stream);
}

/// A stack of independent MEA layers: forward 0 .. L-1, backward L-1 .. 0. Every layer is
/// validated before anything is launched.
struct MeaStack {
  MeaOptions options;
  std::vector<MeaLayerParams> layers;
  void* workspace = nullptr;   ///< backward: workspace_bytes(stack) bytes (the layers share it)
  size_t workspace_bytes = 0;  ///< its size, checked

  Status validate(bool backward) const {
    if (layers.empty()) return Status::InvalidArgument("layers is empty");
    if (backward)  // the stack's (each layer's check below then passes)
      if (Status s = detail::check_workspace(workspace, workspace_bytes,
                                             detail::mea_stack_workspace_bytes(layers, options));
          !s.ok())
        return s;
    for (size_t l = 0; l < layers.size(); ++l)
      if (Status s = api::validate(layers[l], options, backward, workspace, workspace_bytes);
          !s.ok())
        return Status(s.code(), "layers[" + std::to_string(l) + "]." + s.message());
    return Status::Ok();
  }

  Status forward(cudaStream_t stream = 0) const {
    if (Status s = validate(false); !s.ok()) return s;
    for (const MeaLayerParams& y : layers)
      if (Status s = mea_forward(y, options, stream); !s.ok()) return s;
    return Status::Ok();
  }

  Status backward(cudaStream_t stream = 0) const {
    if (Status s = validate(true); !s.ok()) return s;
    for (size_t l = layers.size(); l-- > 0;)
      if (Status s = mea_backward(layers[l], options, workspace, workspace_bytes, stream); !s.ok())
        return s;
    return Status::Ok();
  }
};

/// Bytes of the stack's backward workspace: the most any layer needs (they run one after another).
inline size_t workspace_bytes(const MeaStack& st) {
  return detail::mea_stack_workspace_bytes(st.layers, st.options);
}

STRATA_EXECUTOR_END
}  // namespace strata::api
