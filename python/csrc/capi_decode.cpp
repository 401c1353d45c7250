// The C ABI of the decode path: one layer of a serving step through api::DecodeStack::step_layer
// (SPEC §6). The call builds the smallest stack that holds the layer and what it reads of the
// others — layer 0's v / v_cache (ResFormer, SVFormer), the sources' k^ / v^ (Depth) — and runs
// its layer; the stack validates the indexing, the cache geometry and the method's fields, this
// file the tensors' shapes, dtypes and sizes (which the C++ API, taking pointers, cannot see).
#include <strata/api/decode.hpp>

#include <string>
#include <vector>

#include "capi_common.hpp"

using namespace strata_capi;
using strata::api::DecodeLayer;
using strata::api::DecodeMethod;
using strata::api::DecodeStack;

namespace {

/// A contiguous new-token operand [total_q, heads, d] in `dtype`.
Status tokens(const StrataTensor& t, const std::string& name, int64_t total_q, int64_t heads,
              int64_t d, int32_t dtype) {
  if (Status s = check_given(t, name); !s.ok()) return s;
  if (Status s = check_dtype(t, name.c_str(), dtype); !s.ok()) return s;
  if (t.ndim != 3 || t.shape[0] != total_q || t.shape[1] != heads || t.shape[2] != d)
    return invalid(name + ": expected [total_q, heads, head_dim] = [" + std::to_string(total_q) +
                   ", " + std::to_string(heads) + ", " + std::to_string(d) + "], got " +
                   shape_str(t));
  if (!contiguous(t)) return invalid(name + " must be contiguous");
  return Status::Ok();
}

/// A contiguous 1-d integer tensor of `n` elements (n < 0: any length).
Status index_vector(const StrataTensor& t, const char* name, int32_t dtype, int64_t n) {
  if (Status s = check_given(t, name); !s.ok()) return s;
  if (Status s = check_dtype(t, name, dtype); !s.ok()) return s;
  if (t.ndim != 1 || (n >= 0 && t.shape[0] != n))
    return invalid(std::string(name) + ": expected " + dtype_name(dtype) + " [" +
                   (n >= 0 ? std::to_string(n) : std::string("n")) + "], got " + shape_str(t));
  if (t.shape[0] > 1 && t.stride[0] != 1) return invalid(std::string(name) + " must be contiguous");
  return Status::Ok();
}

/// A cache tensor [pages, page_size, h_k, d] with a contiguous head_dim; any other strides (the
/// cache checks that rows and pages never overlap). Size-1 dimensions' strides are free in torch:
/// they get the dense value.
Status cache_tensor(const StrataTensor& t, const char* name, const StrataTensor& like,
                    int32_t dtype, strata::attention::CacheTensor* c) {
  if (Status s = check_given(t, name); !s.ok()) return s;
  if (Status s = check_dtype(t, name, dtype); !s.ok()) return s;
  if (t.ndim != 4)
    return invalid(std::string(name) +
                   ": expected [num_pages, page_size, kv_heads, head_dim], got " + shape_str(t));
  if (Status s = same_shape(t, name, like, "k_cache"); !s.ok()) return s;
  if (t.shape[3] > 1 && t.stride[3] != 1)
    return invalid(std::string(name) + ": the last dimension (head_dim) must be contiguous");
  for (int i = 0; i < 3; ++i)
    if (t.shape[i] < 1 || t.shape[i] > INT_MAX)
      return invalid(std::string(name) + ": dimension " + std::to_string(i) + " = " +
                     std::to_string(t.shape[i]) + " is outside [1, 2^31)");
  const int64_t d = t.shape[3], hk = t.shape[2], ps = t.shape[1];
  c->data = t.data;
  c->head_stride = hk == 1 ? d : t.stride[2];
  c->row_stride = ps == 1 ? hk * c->head_stride : t.stride[1];
  c->page_stride = t.shape[0] == 1 ? ps * c->row_stride : t.stride[0];
  return Status::Ok();
}

/// The method's struct: given, or an error naming it.
template <class T>
Status need(const T* p, const char* name) {
  return p ? Status::Ok() : invalid(std::string(name) + " is NULL (the method's arguments)");
}

/// Bytes of the split-KV workspace of layer l (0 without splits).
int64_t workspace_bytes(const DecodeStack& st, size_t l) {
  if (st.num_splits == 1) return 0;
  return int64_t(strata::api::workspace_bytes(
      st.method == DecodeMethod::kMea ? st.mea_attention_params(l).attn : st.attention_params(l)));
}

/// The stack that runs `d`'s layer: `*layer` receives its index.
Status decode_problem(const StrataDecode& d, const StrataGate* g, const StrataValueResidual* vr,
                      const StrataDepth* dp, const StrataExo* x, const StrataMea* m,
                      bool need_workspace, DecodeStack* st, size_t* layer) {
  using strata::core::MixGranularity;
  if (d.method < STRATA_DECODE_VANILLA || d.method > STRATA_DECODE_MEA)
    return invalid("method = " + std::to_string(d.method) + ": not a StrataDecodeMethod");
  const bool svformer = d.method == STRATA_DECODE_VANILLA && !given(d.v);
  // q: the new tokens, their heads and head_dim
  if (Status s = check_given(d.q, "q"); !s.ok()) return s;
  if (d.q.dtype != STRATA_DTYPE_BF16 && d.q.dtype != STRATA_DTYPE_FP16)
    return invalid(std::string("q: dtype is ") + dtype_name(d.q.dtype) +
                   ", expected bfloat16 or float16");
  if (d.q.ndim != 3)
    return invalid("q: expected [total_q, heads, head_dim], got " + shape_str(d.q));
  const int32_t dt = d.q.dtype;
  const int64_t total_q = d.q.shape[0], h = d.q.shape[1], hd = d.q.shape[2];
  if (total_q > INT_MAX) return invalid("q: more than 2^31 - 1 tokens");
  if (Status s = tokens(d.q, "q", total_q, h, hd, dt); !s.ok()) return s;
  // the cache: its KV heads (MEA: the component heads) are the new k's
  strata::attention::KvCache& c = st->cache;
  c.dtype =
      dt == STRATA_DTYPE_BF16 ? strata::attention::Dtype::kBf16 : strata::attention::Dtype::kFp16;
  strata::attention::CacheTensor kc, vc;
  if (Status s = cache_tensor(d.k_cache, "k_cache", d.k_cache, dt, &kc); !s.ok()) return s;
  if (Status s = cache_tensor(d.v_cache, "v_cache", d.k_cache, dt, &vc); !s.ok()) return s;
  if (d.k_cache.shape[3] != hd)
    return invalid("k_cache: head_dim " + std::to_string(d.k_cache.shape[3]) +
                   " differs from q's " + std::to_string(hd));
  const int64_t hk = d.k_cache.shape[2];
  c.h_k = int(hk), c.d = int(hd);
  c.num_pages = int(d.k_cache.shape[0]), c.page_size = int(d.k_cache.shape[1]);
  if (Status s = tokens(d.k, "k", total_q, hk, hd, dt); !s.ok()) return s;
  if (!svformer)
    if (Status s = tokens(d.v, "v", total_q, hk, hd, dt); !s.ok()) return s;
  // the step's indexing
  if (Status s = check_cu(d.cu_seqlens_q, "cu_seqlens_q"); !s.ok()) return s;
  const int64_t b = d.cu_seqlens_q.shape[0] - 1;
  c.b = int(b);
  if (Status s = index_vector(d.seqlens_k, "seqlens_k", STRATA_DTYPE_INT32, b); !s.ok()) return s;
  c.cache_seqlens = static_cast<const int*>(d.seqlens_k.data);
  if (given(d.block_table)) {
    const StrataTensor& bt = d.block_table;
    if (Status s = check_dtype(bt, "block_table", STRATA_DTYPE_INT32); !s.ok()) return s;
    if (bt.ndim != 2 || bt.shape[0] != b || bt.shape[1] < 1 || bt.shape[1] > INT_MAX)
      return invalid("block_table: expected int32 [batch, max_pages] with batch = " +
                     std::to_string(b) + ", got " + shape_str(bt));
    if (bt.shape[1] > 1 && bt.stride[1] != 1)
      return invalid("block_table: each sequence's pages must be contiguous (stride 1)");
    if (!bt.data) return invalid("block_table: data is null");
    c.indexing = strata::attention::CacheIndexing::kBlockTable;
    c.block_table = static_cast<const int*>(bt.data);
    c.block_table_stride = b > 1 ? bt.stride[0] : bt.shape[1];
    c.max_pages = int(bt.shape[1]);
  } else {
    c.indexing = strata::attention::CacheIndexing::kContiguous;  // sequence s in slot s
  }
  if (Status s = index_vector(d.slot_mapping, "slot_mapping", STRATA_DTYPE_INT64, total_q); !s.ok())
    return s;
  st->slot_mapping = static_cast<const int64_t*>(d.slot_mapping.data);
  st->cu_seqlens_q = static_cast<const int*>(d.cu_seqlens_q.data);
  if (given(d.positions)) {
    if (Status s = index_vector(d.positions, "positions", STRATA_DTYPE_INT32, total_q); !s.ok())
      return s;
    st->positions = static_cast<const int*>(d.positions.data);
  }
#if STRATA_SIM
  // host memory: the stack checks every length, page and slot against the cache
  st->slot_mapping_host = st->slot_mapping, st->cu_seqlens_q_host = st->cu_seqlens_q;
  c.cache_seqlens_host = c.cache_seqlens, c.block_table_host = c.block_table;
#endif
  st->total_q = int(total_q), st->max_seqlen_q = d.max_seqlen_q, st->h = int(h);
  st->softmax_scale = d.softmax_scale, st->is_causal = d.causal != 0;
  st->window_left = d.window_left, st->num_splits = d.num_splits;
  if (d.num_splits < 1) return invalid("num_splits = " + std::to_string(d.num_splits) + ": >= 1");

  // the layer, and what it reads of the others
  DecodeLayer y;
  y.k_cache = kc, y.v_cache = vc;
  y.q = d.q.data, y.k = d.k.data, y.v = svformer ? nullptr : d.v.data;
  if (Status s = tokens(d.out, "out", total_q, h, hd, dt); !s.ok()) return s;
  if (Status s = check_given(d.lse, "lse"); !s.ok()) return s;
  if (Status s = check_dtype(d.lse, "lse", STRATA_DTYPE_FP32); !s.ok()) return s;
  if (d.lse.ndim != 2 || d.lse.shape[0] != h || d.lse.shape[1] != total_q || !contiguous(d.lse))
    return invalid("lse: expected contiguous float32 [heads, total_q] = [" + std::to_string(h) +
                   ", " + std::to_string(total_q) + "], got " + shape_str(d.lse));
  y.o = d.out.data, y.lse = static_cast<float*>(d.lse.data);
  const auto step_buffer = [&](const StrataTensor& t, const char* name, int64_t heads,
                               void** out) -> Status {
    if (Status s = tokens(t, name, total_q, heads, hd, dt); !s.ok()) return s;
    *out = t.data;
    return Status::Ok();
  };
  std::vector<DecodeLayer> before;  // the layers this one reads, in order
  switch (d.method) {
    case STRATA_DECODE_VANILLA:
      st->method = svformer ? DecodeMethod::kSVFormer : DecodeMethod::kVanilla;
      if (svformer) {  // layer 0's V cache, read (the new tokens' V rows are layer 0's)
        DecodeLayer first;
        first.v_cache = vc;
        before.push_back(first);
      }
      break;
    case STRATA_DECODE_GATED: {
      st->method = DecodeMethod::kGated;
      if (Status s = need(g, "gate"); !s.ok()) return s;
      if (Status s = check_given(g->gate, "gate"); !s.ok()) return s;
      const bool headwise = g->gate.ndim == 2;
      if (headwise) {
        if (Status s = check_dtype(g->gate, "gate", dt); !s.ok()) return s;
        if (g->gate.shape[0] != total_q || g->gate.shape[1] != h || !contiguous(g->gate))
          return invalid("gate: expected contiguous [total_q, heads] (headwise) or [total_q, " +
                         std::string("heads, head_dim] (elementwise), got ") + shape_str(g->gate));
      } else if (Status s = tokens(g->gate, "gate", total_q, h, hd, dt); !s.ok()) {
        return s;
      }
      st->gate_kind =
          headwise ? strata::core::GateKind::kHeadwise : strata::core::GateKind::kElementwise;
      y.g = g->gate.data;
      break;
    }
    case STRATA_DECODE_RESFORMER: {
      st->method = DecodeMethod::kResFormer;
      if (Status s = need(vr, "value_residual"); !s.ok()) return s;
      if (Status s = tokens(vr->v_first, "v_first", total_q, hk, hd, dt); !s.ok()) return s;
      if (Status s = residual_lambdas(*vr, hk, &st->granularity); !s.ok()) return s;
      y.lambda_self = static_cast<const float*>(vr->lambda_self.data);
      y.lambda_first = static_cast<const float*>(vr->lambda_first.data);
      DecodeLayer first;  // layer 0: its new V rows mix into V'
      first.v = vr->v_first.data;
      before.push_back(first);
      break;
    }
    case STRATA_DECODE_DEPTH: {
      st->method = DecodeMethod::kDepth;
      if (Status s = need(dp, "depth"); !s.ok()) return s;
      strata::variants::QkNormRopeOptions& o = st->local;
      o.qk_norm = given(dp->gamma_q) || given(dp->gamma_k);
      o.rope = dp->rope != 0, o.rope_theta = dp->rope_theta, o.eps = dp->eps;
      if (o.qk_norm) {
        if (Status s = check_f32_block(dp->gamma_q, "gamma_q", hd); !s.ok()) return s;
        if (Status s = check_f32_block(dp->gamma_k, "gamma_k", hd); !s.ok()) return s;
        if (!(dp->eps > 0.f)) return invalid("eps must be positive");
        y.gamma_q = static_cast<const float*>(dp->gamma_q.data);
        y.gamma_k = static_cast<const float*>(dp->gamma_k.data);
      }
      if (o.rope && !(dp->rope_theta > 1.f)) return invalid("rope_theta must be above 1");
      if (dp->num_sources < 0 || dp->num_sources > strata::core::kMaxSources)
        return invalid("sources: " + std::to_string(dp->num_sources) + " sources, at most " +
                       std::to_string(strata::core::kMaxSources));
      for (int j = 0; j < dp->num_sources; ++j) {
        const std::string n = "sources[" + std::to_string(j) + "]";
        DecodeLayer src;
        if (Status s = step_buffer(dp->src_khat[j], (n + ".khat").c_str(), hk, &src.k_attn);
            !s.ok())
          return s;
        if (Status s = step_buffer(dp->src_vhat[j], (n + ".vhat").c_str(), hk, &src.v_attn);
            !s.ok())
          return s;
        y.sources.push_back(j);
        before.push_back(src);
      }
      if (Status s = step_buffer(d.q_attn, "q_rot", h, &y.q_attn); !s.ok()) return s;
      if (Status s = step_buffer(d.k_attn, "khat", hk, &y.k_attn); !s.ok()) return s;
      if (Status s = step_buffer(d.v_attn, "vhat", hk, &y.v_attn); !s.ok()) return s;
      break;
    }
    case STRATA_DECODE_EXOFORMER: {
      st->method = DecodeMethod::kExoFormer;
      if (Status s = need(x, "exo"); !s.ok()) return s;
      if (Status s = need(g, "gate"); !s.ok()) return s;
      if (Status s = tokens(g->gate, "gate", total_q, h, hd, dt); !s.ok()) return s;
      y.g = g->gate.data;
      strata::api::ExoOptions& o = st->exo;
      o.dynamic = given(x->s), o.rope = x->rope != 0;
      o.rope_theta = x->rope_theta, o.norm_eps = x->norm_eps, o.anchor_eps = x->anchor_eps;
      const char* const stream[4] = {"q", "k", "v", "g"};
      for (int p = 0; p < 4; ++p) {
        const StrataExoStream& S = x->stream[p];
        const int64_t heads = p == 1 || p == 2 ? hk : h;
        const std::string at = std::string("_") + stream[p];
        if (Status s = tokens(S.anchor, "anchor" + at, total_q, heads, hd, dt); !s.ok()) return s;
        st->anchors.anchor[p] = strata::api::ExoRows{S.anchor.data, heads * hd, hd};
        if (Status s = check_f32_block(S.gamma_anchor, ("gamma_anchor" + at).c_str(), hd); !s.ok())
          return s;
        st->anchors.gamma[p] = static_cast<const float*>(S.gamma_anchor.data);
        if (Status s = lambda_granularity(S.lambda1, "lambda1" + at, int(heads), int(hd), p == 0,
                                          &o.granularity);
            !s.ok())
          return s;
        if (Status s = lambda_granularity(S.lambda2, "lambda2" + at, int(heads), int(hd), false,
                                          &o.granularity);
            !s.ok())
          return s;
        y.mix.lambda1[p] = static_cast<const float*>(S.lambda1.data);
        y.mix.lambda2[p] = static_cast<const float*>(S.lambda2.data);
      }
      if (Status s = check_f32_block(x->gamma_q, "gamma_q", hd); !s.ok()) return s;
      if (Status s = check_f32_block(x->gamma_k, "gamma_k", hd); !s.ok()) return s;
      y.mix.gamma_q = static_cast<const float*>(x->gamma_q.data);
      y.mix.gamma_k = static_cast<const float*>(x->gamma_k.data);
      if (o.dynamic) {
        if (x->s.ndim != 2 || x->s.shape[0] != total_q || x->s.shape[1] != 8)
          return invalid("s: expected fp32 [total_q, 8] (q1 q2 k1 k2 v1 v2 g1 g2), got " +
                         shape_str(x->s));
        if (Status s = check_f32_block(x->s, "s", total_q * 8); !s.ok()) return s;
        y.mix.s = static_cast<const float*>(x->s.data);
      }
      if (Status s = step_buffer(d.q_attn, "q_attn", h, &y.q_attn); !s.ok()) return s;
      if (Status s = step_buffer(d.k_attn, "k_attn", hk, &y.k_attn); !s.ok()) return s;
      if (Status s = step_buffer(d.v_attn, "v_attn", hk, &y.v_attn); !s.ok()) return s;
      if (Status s = step_buffer(d.g_attn, "g_attn", h, &y.g_attn); !s.ok()) return s;
      break;
    }
    case STRATA_DECODE_MEA: {
      st->method = DecodeMethod::kMea;
      if (Status s = need(m, "mea"); !s.ok()) return s;
      if (m->site != 0 && m->site != 1) return invalid("site: 0 (KeyValue) or 1 (Output)");
      const bool out_site = m->site == 1;
      strata::api::MeaOptions& o = st->mea;
      o.site = out_site ? strata::core::NormSite::kOutput : strata::core::NormSite::kKeyValue;
      o.rope = m->rope != 0, o.rope_theta = m->rope_theta, o.gn_eps = m->gn_eps;
      if (Status s = check_given(m->a_k, "a_k"); !s.ok()) return s;
      const int64_t h_kv = m->a_k.ndim == 2 ? m->a_k.shape[1] : 0;
      if (h_kv < 1 || h_kv > INT_MAX)
        return invalid("a_k: expected fp32 [H_c, H_kv] = [" + std::to_string(hk) + ", H_kv], got " +
                       shape_str(m->a_k));
      st->h_kv = int(h_kv);
      if (Status s = matrix(m->a_k, "a_k", hk, h_kv); !s.ok()) return s;
      if (Status s = matrix(m->a_v, "a_v", hk, h_kv); !s.ok()) return s;
      strata::api::MeaWeights& w = y.mea;
      w.a_k = static_cast<const float*>(m->a_k.data);
      w.a_v = static_cast<const float*>(m->a_v.data);
      const struct {
        const StrataTensor& t;
        const char* name;
        const float** p;
        int64_t rows;
      } gn[] = {{m->gamma_k, "gamma_k", &w.gamma_k, h_kv}, {m->beta_k, "beta_k", &w.beta_k, h_kv},
                {m->gamma_v, "gamma_v", &w.gamma_v, h_kv}, {m->beta_v, "beta_v", &w.beta_v, h_kv},
                {m->gamma_o, "gamma_o", &w.gamma_o, h},    {m->beta_o, "beta_o", &w.beta_o, h}};
      for (int i = out_site ? 4 : 0; i < (out_site ? 6 : 4); ++i) {
        if (Status s = matrix(gn[i].t, gn[i].name, gn[i].rows, hd); !s.ok()) return s;
        *gn[i].p = static_cast<const float*>(gn[i].t.data);
      }
      if (o.rope && total_q > 0) {
        if (Status s = step_buffer(d.q_attn, "q_attn", h, &y.q_attn); !s.ok()) return s;
        if (out_site)
          if (Status s = step_buffer(d.k_attn, "k_attn", hk, &y.k_attn); !s.ok()) return s;
      }
      break;
    }
  }
  st->layers = std::move(before);
  st->layers.push_back(std::move(y));
  *layer = st->layers.size() - 1;
  const int64_t bytes = workspace_bytes(*st, *layer);
  if (!need_workspace || bytes == 0) return Status::Ok();
  if (Status s = check_workspace(d.workspace); !s.ok()) return s;
  if (d.workspace.shape[0] < bytes)
    return invalid("workspace: " + std::to_string(d.workspace.shape[0]) + " bytes, needs " +
                   std::to_string(bytes) + " (strata_decode_workspace_bytes)");
  st->workspace = static_cast<float*>(d.workspace.data);
  st->workspace_bytes = size_t(d.workspace.shape[0]);
  return Status::Ok();
}

/// The stack's message in the caller's words: without its internal layer prefix
/// ("layers[1].append: ..." reads "append: ...": the caller passed one layer), and the cache's
/// cache_seqlens named seqlens_k as the caller passed it.
Status one_layer(const Status& s) {
  if (s.ok()) return s;
  std::string m = s.message();
  if (m.rfind("layers[", 0) == 0)
    if (const size_t dot = m.find("]."); dot != std::string::npos) m = m.substr(dot + 2);
  for (size_t at = m.find("cache_seqlens"); at != std::string::npos;
       at = m.find("cache_seqlens", at))
    m.replace(at, 13, "seqlens_k");
  return Status(s.code(), m);
}

}  // namespace

extern "C" {

int strata_decode_workspace_bytes(const StrataDecode* d, const StrataGate* g,
                                  const StrataValueResidual* vr, const StrataDepth* dp,
                                  const StrataExo* x, const StrataMea* m, int64_t* bytes) {
  return guarded([&]() -> Status {
    DecodeStack st;
    size_t l = 0;
    if (Status s = decode_problem(*d, g, vr, dp, x, m, false, &st, &l); !s.ok()) return s;
    *bytes = workspace_bytes(st, l);
    return Status::Ok();
  });
}

int strata_decode_layer(const StrataDecode* d, const StrataGate* g, const StrataValueResidual* vr,
                        const StrataDepth* dp, const StrataExo* x, const StrataMea* m) {
  return guarded([&]() -> Status {
    DecodeStack st;
    size_t l = 0;
    if (Status s = decode_problem(*d, g, vr, dp, x, m, true, &st, &l); !s.ok()) return s;
    return one_layer(st.step_layer(l, reinterpret_cast<cudaStream_t>(d->stream)));
  });
}

}  // extern "C"
