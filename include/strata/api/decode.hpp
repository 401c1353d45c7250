/// \file
/// DecodeStack: one serving step (decode, chunked prefill or both) over all L layers of a model
/// with its KV caches, for vanilla attention and every variant: the serving twin of the training
/// stacks (ValueResidualStack, DepthStack, ExoStack). Per layer, in order:
///
///   token-local pass   kDepth:     the depth pass on the new tokens (QK-norm, RoPE at their
///                                  positions, the depth softmax over the sources' k^_j, v^_j of
///                                  the same tokens) -> q_attn, k^ (k_attn), v^ (v_attn)
///                      kExoFormer: the mix pass (anchor RMSNorm, mix, QK-norm, RoPE) -> q~, k~,
///                                  v~ and the gate logits g~ (q_attn, k_attn, v_attn, g_attn)
///                      kMea:       RoPE of q at the new tokens' positions (q_attn) and, at the
///                                  Output site, of the component keys K_c (k_attn)
///   append             kv_append of the new K, V rows at their slots: what the paper caches —
///                      k^ / v^ (Depth), k~ / v~ (ExoFormer), V' = lambda_self V_l + lambda_first
///                      V_0 (ResFormer), K only (SVFormer l >= 1: the layer reads layer 0's V
///                      cache), the H_c component heads K_c or RoPE(K_c), and V_c (MEA)
///   attention          paged_attention of the new queries over the cache (split-KV and merge
///                      when num_splits > 1), the output gate applied once to the final O
///                      (kGated: g; kExoFormer: g~); kMea: mea_paged_attention, which composes
///                      the H_kv composite heads inside its tiles (and normalises them, or O)
///
/// Caches: every layer has its own K and V storage (CacheTensor) and all layers share the step's
/// indexing (KvCache: block table or page list, lengths that already count the new tokens) and
/// slot mapping, as in vLLM. Nothing but what the paper caches persists: q_attn, k_attn, v_attn
/// and g_attn are transient step buffers (Depth reads its sources' k^_j, v^_j of the same step
/// from them — the same values as the sources' cache slots, without the gather).
///
///   DecodeStack st;  st.method = DecodeMethod::kDepth;  st.cache = ...;  st.layers = {...};
///   st.step();          // or step_layer(l) for l = 0 .. L-1, between the engine's own layers
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "strata/api/depth_attention.hpp"
#include "strata/api/exoformer.hpp"
#include "strata/api/kv_cache.hpp"
#include "strata/api/mea_decode.hpp"
#include "strata/api/qk_norm_rope.hpp"

namespace strata::api {

/// What a DecodeStack's layers compute (SPEC §1-§5).
enum class DecodeMethod { kVanilla, kGated, kResFormer, kSVFormer, kDepth, kExoFormer, kMea };

/// One layer of a decode step. Every new-token buffer is contiguous, [total_q, heads, d] (row
/// stride heads * d, head stride d), in the cache's dtype.
struct DecodeLayer {
  CacheTensor k_cache, v_cache;  ///< this layer's cache (SVFormer l >= 1: v_cache unused)
  /// The new tokens' projections: q [h], k and v [h_k]. kVanilla, kGated, kResFormer,
  /// kSVFormer: as the attention reads them (the caller's QK-norm and RoPE done). kDepth: raw
  /// (the depth pass normalises and rotates). kExoFormer: the raw projections P of the mix.
  /// kSVFormer layers l >= 1: v unused (no V projection). kMea: raw q [h] and the component
  /// heads K_c, V_c [h_c = cache.h_k] (RoPE is the stack's, see DecodeStack::mea).
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  /// kGated: the gate logits [total_q, h, d] (headwise: [total_q, h], see gate_kind).
  /// kExoFormer: the raw gate projection P_g [total_q, h, d].
  const void* g = nullptr;
  void* o = nullptr;     ///< [total_q, h, d], written (kMea, site Output: GN_o(O))
  float* lse = nullptr;  ///< [h, total_q] fp32, written (natural log, FlashAttention's layout)
  // kResFormer, layers l >= 1: V'_l = lambda_self V_l + lambda_first V_0
  const float* lambda_self = nullptr;  ///< fp32, [] or [h_k] (DecodeStack::granularity)
  const float* lambda_first = nullptr;
  // kDepth
  const float* gamma_q = nullptr;  ///< [d] QK-norm gains (local.qk_norm)
  const float* gamma_k = nullptr;
  std::vector<int> sources;  ///< ascending earlier layers (depth_sources), <= core::kMaxSources
  // kExoFormer: lambda1, lambda2 (per stream q, k, v, g), gamma_q, gamma_k and, dynamic, s
  // [total_q, 8] of the new tokens; mix.p is ignored (q, k, v, g above are the projections)
  ExoLayerMix mix;
  /// kMea: A^K, A^V and the GroupNorm affines of the site
  MeaWeights mea;
  /// kDepth, kExoFormer (kMea with RoPE: q_attn, and k_attn [total_q, h_c, d] at the Output
  /// site): the pass's outputs for the new tokens (transient step buffers):
  /// q_attn [total_q, h, d], k_attn and v_attn [total_q, h_k, d], kExoFormer g_attn
  /// [total_q, h, d]. A Depth layer that is a source keeps k^, v^ here for the later layers.
  void* q_attn = nullptr;
  void* k_attn = nullptr;
  void* v_attn = nullptr;
  void* g_attn = nullptr;
};

STRATA_EXECUTOR_BEGIN
struct DecodeStack {
  DecodeMethod method = DecodeMethod::kVanilla;
  /// Indexing and geometry shared by the layers (k and v are ignored: each layer has its own):
  /// dtype, h_k, d, page_size, num_pages, b and the block table / page list, with lengths that
  /// already count this step's new tokens.
  KvCache cache;
  /// [total_q] int64: the slot of each new token (negative: padding, not stored), and its
  /// optional host copy for validation (KvAppendParams).
  const int64_t* slot_mapping = nullptr;
  const int64_t* slot_mapping_host = nullptr;
  /// [total_q]: the position of each new token in its sequence (its cache index): the RoPE
  /// position of the Depth and ExoFormer passes (required when they rotate).
  const int* positions = nullptr;
  const int* cu_seqlens_q = nullptr;       ///< [b + 1] new tokens per sequence (device)
  const int* cu_seqlens_q_host = nullptr;  ///< optional host copy (validation)
  int total_q = 0, max_seqlen_q = 0;
  int h = 0;  ///< query heads
  float softmax_scale = 0.f;
  bool is_causal = true;
  int window_left = -1;
  /// Key splits (ignored with a plan) and their workspace (workspace_bytes(stack): that of any
  /// layer's attention_params, or the plan's; the layers run one after another and share it).
  int num_splits = 1;
  float* workspace = nullptr;
  size_t workspace_bytes = 0;
  /// Optional plan (plan_paged_attention) for the step's shape, shared by the layers: the
  /// attention runs under it (its split count, its grid) — for a CUDA graph, the plan of the
  /// captured bucket, total_q padded to it (padding tokens: slot -1, past cu_seqlens_q[b]).
  const PagedAttentionPlan* plan = nullptr;
  core::GateKind gate_kind = core::GateKind::kElementwise;           ///< kGated
  core::MixGranularity granularity = core::MixGranularity::kScalar;  ///< kResFormer
  variants::QkNormRopeOptions local;                                 ///< kDepth
  ExoOptions exo;  ///< kExoFormer (granularity, dynamic, RoPE, eps)
  /// kExoFormer: the new tokens' raw anchor projections anchor_P = E W_anc and the anchor
  /// RMSNorm gains (stream order q, k, v, g); the backward fields are unused.
  ExoAnchors anchors;
  /// kMea: the site, GroupNorm eps and RoPE (of q at its position; at KeyValue of the composed
  /// keys at theirs, in the attention's tiles; at Output of K_c at append)
  MeaOptions mea;
  int h_kv = 0;  ///< kMea: composite heads (cache.h_k holds the component heads H_c)
  std::vector<DecodeLayer> layers;

  /// Every field of every layer, before anything is written.
  Status validate() const {
    if (Status s = validate_method(); !s.ok()) return s;
    if (layers.empty()) return Status::InvalidArgument("layers is empty");
    for (size_t l = 0; l < layers.size(); ++l)
      if (Status s = validate_layer(l); !s.ok()) return s;
    return Status::Ok();
  }

  /// The step over every layer, 0 .. L-1.
  Status step(cudaStream_t stream = 0) const {
    if (Status s = validate(); !s.ok()) return s;
    for (size_t l = 0; l < layers.size(); ++l)
      if (Status s = run_layer(l, stream); !s.ok()) return s;
    return Status::Ok();
  }
  /// Layer l alone (an engine interleaving its own layers), in order 0 .. L-1: a layer reads
  /// what earlier layers of the step wrote (V_0, the sources' k^ and v^). Validates layer l and
  /// only what it reads of the others — layer 0's v and v_cache (ResFormer, SVFormer), its
  /// sources' k_attn and v_attn (Depth) — so the later layers' buffers may be set only when
  /// their turn comes, and L calls validate each layer once. The step's shared host copies
  /// (lengths, pages, slots) are walked at layer 0.
  Status step_layer(size_t l, cudaStream_t stream = 0) const {
    if (Status s = validate_method(); !s.ok()) return s;
    if (l >= layers.size())
      return Status::InvalidArgument("layer index " + std::to_string(l) + " out of range (" +
                                     std::to_string(layers.size()) + " layers)");
    if (Status s = validate_layer(l); !s.ok()) return s;
    return run_layer(l, stream);
  }

  /// The append of layer l: its cache, the rows the cache holds (see the file comment).
  KvAppendParams append_params(size_t l) const {
    const DecodeLayer& y = layers[l];
    const bool pass = method == DecodeMethod::kDepth || method == DecodeMethod::kExoFormer ||
                      (mea_rope() && mea.site == core::NormSite::kOutput);
    KvAppendParams a;
    a.cache = layer_cache(l);
    a.k_new = pass ? y.k_attn : y.k;
    a.v_new = pass && method != DecodeMethod::kMea ? y.v_attn : y.v;  // MEA rotates K_c only
    a.k_new_row_stride = a.v_new_row_stride = int64_t(cache.h_k) * cache.d;
    a.k_new_head_stride = a.v_new_head_stride = cache.d;
    a.total_new = total_q;
    a.slot_mapping = slot_mapping, a.slot_mapping_host = slot_mapping_host;
    a.store_v = !(method == DecodeMethod::kSVFormer && l > 0);
    if (method == DecodeMethod::kResFormer && l > 0) {
      a.v_first_new = layers[0].v;
      a.v_first_new_row_stride = a.k_new_row_stride, a.v_first_new_head_stride = cache.d;
      a.lambda_self = y.lambda_self, a.lambda_first = y.lambda_first;
      a.granularity = granularity;
    }
    return a;
  }
  /// The attention of layer l over its cache (kMea: mea_attention_params(l).attn).
  PagedAttentionParams attention_params(size_t l) const {
    const DecodeLayer& y = layers[l];
    const bool pass =
        method == DecodeMethod::kDepth || method == DecodeMethod::kExoFormer || mea_rope();
    PagedAttentionParams p;
    p.cache = layer_cache(l);
    p.q = pass ? y.q_attn : y.q;
    p.q_row_stride = int64_t(h) * cache.d, p.q_head_stride = cache.d;
    p.o = y.o, p.o_row_stride = p.q_row_stride, p.o_head_stride = cache.d;
    p.lse = y.lse;
    p.cu_seqlens_q = cu_seqlens_q, p.cu_seqlens_q_host = cu_seqlens_q_host;
    p.total_q = total_q, p.max_seqlen_q = max_seqlen_q, p.h = h;
    p.softmax_scale = softmax_scale, p.is_causal = is_causal, p.window_left = window_left;
    p.num_splits = plan ? plan->num_splits : num_splits;
    p.workspace = workspace, p.workspace_bytes = workspace_bytes;
    if (method == DecodeMethod::kGated || method == DecodeMethod::kExoFormer) {
      const bool headwise =
          method == DecodeMethod::kGated && gate_kind == core::GateKind::kHeadwise;
      p.gate = method == DecodeMethod::kGated ? y.g : y.g_attn;
      p.gate_kind = headwise ? core::GateKind::kHeadwise : core::GateKind::kElementwise;
      p.gate_row_stride = headwise ? h : int64_t(h) * cache.d;
      p.gate_head_stride = headwise ? 1 : cache.d;
    }
    return p;
  }
  /// kMea: the attention of layer l over its component-head cache.
  MeaPagedAttentionParams mea_attention_params(size_t l) const {
    MeaPagedAttentionParams p;
    p.attn = attention_params(l);
    p.h_kv = h_kv, p.options = mea, p.w = layers[l].mea;
    return p;
  }

 private:
  Status validate_method() const {
    if (method != DecodeMethod::kVanilla && method != DecodeMethod::kGated &&
        method != DecodeMethod::kResFormer && method != DecodeMethod::kSVFormer &&
        method != DecodeMethod::kDepth && method != DecodeMethod::kExoFormer &&
        method != DecodeMethod::kMea)
      return Status::InvalidArgument("method: not a DecodeMethod value");
    return Status::Ok();
  }

  bool mea_rope() const { return method == DecodeMethod::kMea && mea.rope; }

  /// kMea: RoPE of q (and at the Output site of K_c) at the new tokens' positions.
  QkNormRopeParams mea_rope_args(size_t l) const {
    const DecodeLayer& y = layers[l];
    QkNormRopeParams p;
    p.dtype = cache.dtype, p.d = cache.d;
    p.options.qk_norm = false, p.options.rope = true, p.options.rope_theta = mea.rope_theta;
    const bool out_site = mea.site == core::NormSite::kOutput;
    QkRows* sides[2] = {&p.q, &p.k};
    const void* x[2] = {y.q, y.k};
    void* o[2] = {y.q_attn, y.k_attn};
    for (int i = 0; i < 2; ++i) {
      QkRows& r = *sides[i];
      const int heads = i == 0 ? h : cache.h_k;
      r.x = x[i], r.y = o[i], r.heads = heads;
      r.x_row_stride = r.y_row_stride = int64_t(heads) * cache.d;
      r.x_head_stride = r.y_head_stride = cache.d;
      r.total = i == 0 || out_site ? total_q : 0;  // KeyValue: the tile rotates the keys
      r.cu_seqlens = cu_seqlens_q, r.b = cache.b, r.positions = positions;
    }
    return p;
  }
  /// The shared indexing with layer l's storage; SVFormer's layers l >= 1 read layer 0's V
  /// (and their append writes no V).
  KvCache layer_cache(size_t l) const {
    KvCache c = cache;
    c.k = layers[l].k_cache;
    c.v = method == DecodeMethod::kSVFormer && l > 0 ? layers[0].v_cache : layers[l].v_cache;
    return c;
  }

  variants::DepthLayer depth_args(size_t l) const {
    const DecodeLayer& y = layers[l];
    variants::DepthLayer p;
    p.total = total_q, p.h = h, p.h_k = cache.h_k;
    p.cu_seqlens = cu_seqlens_q, p.b = cache.b, p.positions = positions;
    p.local = local;
    p.q = y.q, p.k = y.k, p.v = y.v;
    p.q_rot = y.q_attn, p.khat = y.k_attn, p.vhat = y.v_attn;
    p.gamma_q = y.gamma_q, p.gamma_k = y.gamma_k;
    p.num_sources = int(y.sources.size());
    for (size_t c = 0; c < y.sources.size() && c < size_t(core::kMaxSources); ++c) {
      p.src_khat[c] = layers[size_t(y.sources[c])].k_attn;
      p.src_vhat[c] = layers[size_t(y.sources[c])].v_attn;
    }
    return p;
  }

  variants::ExoMix exo_args(size_t l) const {
    const DecodeLayer& y = layers[l];
    variants::ExoMix m;
    m.total = total_q, m.h = h, m.h_k = cache.h_k;
    m.cu_seqlens = cu_seqlens_q, m.b = cache.b, m.positions = positions;
    m.granularity = exo.granularity, m.dynamic = exo.dynamic, m.rope = exo.rope;
    m.rope_theta = exo.rope_theta, m.norm_eps = exo.norm_eps, m.anchor_eps = exo.anchor_eps;
    const void* in[kExoStreams] = {y.q, y.k, y.v, y.g};
    void* out[kExoStreams] = {y.q_attn, y.k_attn, y.v_attn, y.g_attn};
    for (int p = 0; p < kExoStreams; ++p) {
      const int64_t row = int64_t(p == 1 || p == 2 ? cache.h_k : h) * cache.d;
      variants::ExoStream& S = m.stream[p];
      S.p = {in[p], row, cache.d};
      S.anchor = anchors.anchor[size_t(p)], S.gamma_anchor = anchors.gamma[size_t(p)];
      S.lambda1 = y.mix.lambda1[size_t(p)], S.lambda2 = y.mix.lambda2[size_t(p)];
      S.out = {out[p], row, cache.d};
    }
    m.gamma_q = y.mix.gamma_q, m.gamma_k = y.mix.gamma_k, m.s = y.mix.s;
    return m;
  }

  Status validate_layer(size_t l) const {
    const std::string at = "layers[" + std::to_string(l) + "].";
    const DecodeLayer& y = layers[l];
    const int hk = cache.h_k, d = cache.d;
    const bool depth = method == DecodeMethod::kDepth, exo_m = method == DecodeMethod::kExoFormer;
    if (depth || exo_m) {  // the pass's inputs and outputs (attention and append check theirs)
      const char* in_names[] = {"q", "k", "v", "g"};
      const void* in[] = {y.q, y.k, y.v, y.g};
      for (int p = 0; p < (exo_m ? kExoStreams : 3); ++p)
        if (Status s =
                detail::check_rows(in[p], at + in_names[p], int64_t(p == 1 || p == 2 ? hk : h) * d,
                                   d, p == 1 || p == 2 ? hk : h, d);
            !s.ok())
          return s;
      if (!y.q_attn || !y.k_attn || !y.v_attn || (exo_m && !y.g_attn))
        return Status::InvalidArgument(at + "q_attn / k_attn / v_attn" +
                                       (exo_m ? " / g_attn" : "") +
                                       " is null (the pass's step buffers)");
      const bool rope = depth ? local.rope : exo.rope;
      if (rope && !positions)
        return Status::InvalidArgument(
            "positions is null: the pass rotates each new token by its position");
    }
    if (depth) {
      if (local.qk_norm && (!y.gamma_q || !y.gamma_k))
        return Status::InvalidArgument(at + "gamma_q / gamma_k is null (local.qk_norm)");
      if (Status s = detail::check_depth_sources(y.sources, l, at); !s.ok()) return s;
      for (int j : y.sources) {
        const DecodeLayer& src = layers[size_t(j)];
        if (src.k_attn == y.k_attn || src.v_attn == y.v_attn)
          return Status::InvalidArgument(at + "k_attn / v_attn: shared with source layer " +
                                         std::to_string(j) +
                                         ", whose k^ / v^ this layer reads while writing its own");
      }
    }
    if (exo_m) {
      if (exo.granularity != core::MixGranularity::kElementwise &&
          exo.granularity != core::MixGranularity::kHeadwise &&
          exo.granularity != core::MixGranularity::kScalar)
        return Status::InvalidArgument("exo.granularity: not a MixGranularity value");
      for (int p = 0; p < kExoStreams; ++p) {
        const std::string n = std::string(ExoStack::stream_name(p));
        const int H = p == 1 || p == 2 ? hk : h;
        const ExoRows& a = anchors.anchor[size_t(p)];
        if (Status s = detail::check_rows(a.ptr, "anchors." + n, a.row_stride, a.head_stride, H, d);
            !s.ok())
          return s;
        if (!anchors.gamma[size_t(p)])
          return Status::InvalidArgument("anchors." + n + ": gamma is null");
        for (const void* out : {y.q_attn, y.k_attn, y.v_attn, y.g_attn})
          if (out == a.ptr)
            return Status::InvalidArgument(
                at + "q_attn / k_attn / v_attn / g_attn: overwrites anchors." + n +
                ", which every layer reads");
        if (!y.mix.lambda1[size_t(p)] || !y.mix.lambda2[size_t(p)])
          return Status::InvalidArgument(at + "mix." + n + ": lambda1 / lambda2 is null");
      }
      if (!y.mix.gamma_q || !y.mix.gamma_k)
        return Status::InvalidArgument(at + "mix.gamma_q / gamma_k is null");
      if (exo.dynamic && !y.mix.s) return Status::InvalidArgument(at + "mix.s is null (dynamic)");
    }
    if (method == DecodeMethod::kMea) {
      if (Status s = validate_mea_layer(l, at); !s.ok()) return s;
    }
    if (method == DecodeMethod::kResFormer && l > 0 && (!y.lambda_self || !y.lambda_first))
      return Status::InvalidArgument(at + "lambda_self / lambda_first is null (ResFormer)");
    if (method == DecodeMethod::kGated && !y.g)
      return Status::InvalidArgument(at + "g (the gate logits) is null");
    if (method == DecodeMethod::kGated && gate_kind != core::GateKind::kElementwise &&
        gate_kind != core::GateKind::kHeadwise)
      return Status::InvalidArgument("gate_kind: not a GateKind value");
    // The step's indexing, lengths and slots are shared: their host copies are walked once, at
    // layer 0; the later layers check only their own storage and buffers.
    KvAppendParams a = append_params(l);
    PagedAttentionParams p = attention_params(l);
    if (l > 0) {
      a.slot_mapping_host = nullptr, p.cu_seqlens_q_host = nullptr;
      for (KvCache* c : {&a.cache, &p.cache})
        c->cache_seqlens_host = c->cache_batch_idx_host = c->block_table_host = c->indptr_host =
            c->indices_host = c->last_page_len_host = nullptr;
    }
    if (Status s = api::validate(a); !s.ok())
      return Status(s.code(), at + "append: " + s.message());
    if (method == DecodeMethod::kMea) {
      MeaPagedAttentionParams m = mea_attention_params(l);
      m.attn = p;
      if (Status s = plan ? check_plan(m, *plan) : Status::Ok(); !s.ok())
        return Status(s.code(), at + "attention (plan): " + s.message());
      if (Status s = api::validate(m); !s.ok())
        return Status(s.code(), at + "attention: " + s.message());
      return Status::Ok();
    }
    if (Status s = plan ? check_plan(p, *plan) : Status::Ok(); !s.ok())
      return Status(s.code(), at + "attention (plan): " + s.message());
    if (Status s = api::validate(p); !s.ok())
      return Status(s.code(), at + "attention: " + s.message());
    return Status::Ok();
  }

  /// kMea: the RoPE pass's operands (the attention checks the weights, the append K_c / V_c).
  Status validate_mea_layer(size_t l, const std::string& at) const {
    const DecodeLayer& y = layers[l];
    if (mea.site != core::NormSite::kKeyValue && mea.site != core::NormSite::kOutput)
      return Status::InvalidArgument("mea.site: not a NormSite value");
    if (!(mea.gn_eps > 0.f) || !std::isfinite(mea.gn_eps))
      return Status::InvalidArgument("mea.gn_eps must be finite and > 0");
    if (mea.rope && (!(mea.rope_theta > 1.f) || !std::isfinite(mea.rope_theta)))
      return Status::InvalidArgument("mea.rope_theta must be finite and > 1");
    if (!mea.rope || total_q == 0) return Status::Ok();
    if (!positions)
      return Status::InvalidArgument(
          "positions is null: RoPE rotates each new token by its position");
    const bool out_site = mea.site == core::NormSite::kOutput;
    if (!y.q_attn || (out_site && !y.k_attn))
      return Status::InvalidArgument(at + (out_site ? "q_attn / k_attn" : "q_attn") +
                                     " is null (the RoPE pass's step buffers)");
    for (const void* b : {y.q_attn, out_site ? y.k_attn : nullptr})
      if (b && (b == y.q || b == y.k || b == y.v))
        return Status::InvalidArgument(at + "q_attn / k_attn: shared with q / k / v");
    if (Status s = api::validate(mea_rope_args(l), false); !s.ok())
      return Status(s.code(), at + "rope: " + s.message());
    return Status::Ok();
  }

  Status run_layer(size_t l, cudaStream_t stream) const {
    if (total_q > 0 && method == DecodeMethod::kDepth)
      if (Status s = detail::launch_depth_pass(depth_args(l), cache.dtype, cache.d, false, stream);
          !s.ok())
        return s;
    if (total_q > 0 && method == DecodeMethod::kExoFormer)
      if (Status s = detail::launch_exo_mix(exo_args(l), cache.dtype, cache.d, false, stream);
          !s.ok())
        return s;
    if (total_q > 0 && mea_rope())
      if (Status s = qk_norm_rope_forward(mea_rope_args(l), stream); !s.ok()) return s;
    if (Status s = kv_append(append_params(l), stream); !s.ok()) return s;
    if (method == DecodeMethod::kMea) return mea_paged_attention(mea_attention_params(l), stream);
    return paged_attention(attention_params(l), stream);
  }
};

/// Bytes of a step's workspace: the split-KV partials of a layer's paged attention (the layers
/// run one after another and share it); 0 with one split.
inline size_t workspace_bytes(const DecodeStack& st) {
  return st.layers.empty() ? 0 : api::workspace_bytes(st.attention_params(0));
}
STRATA_EXECUTOR_END

}  // namespace strata::api
