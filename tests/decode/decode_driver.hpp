// The decode tests' driver: a stack that a variant check built over whole sequences (q, k, v,
// gates, anchors, scales of every token; O and LSE buffers) is served step by step through an
// api::DecodeStack with paged caches — a first chunk of `first` tokens per sequence, then
// `chunk` tokens per step, each sequence ending on its own (later steps mix sequences with new
// tokens and sequences without) — and each step's O and LSE rows land at their tokens in the
// stack's buffers, which the check then compares with the fp64 reference of the whole sequence.
// Shared by the decode tests and examples/decode (copy decode_stack's loop into an engine).
#pragma once

#include <strata/api/decode.hpp>
#include <strata/api/mea.hpp>
#include <strata/api/output_gate.hpp>
#include <strata/api/value_residual.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "common.hpp"
#include "executor_memory.hpp"

namespace kernel_test {

using strata::api::CacheIndexing;
using strata::api::DecodeLayer;
using strata::api::DecodeMethod;
using strata::api::DecodeStack;

struct DecodeSchedule {
  int first = 1;  ///< new tokens per sequence in the first step
  int chunk = 1;  ///< new tokens per sequence in every later step
  CacheIndexing mode = CacheIndexing::kBlockTable;
  int page_size = 16;
  bool hnd = false;      ///< HND pages (else NHD)
  int num_splits = 1;    ///< without a graph bucket
  uint64_t shuffle = 1;  ///< seed of the physical page order
  /// > 0: CUDA-graph mode: one plan for a bucket of this many tokens (every step padded to it,
  /// max_seqlen_q fixed to the larger of first and chunk) on a GPU of `graph_sms` SMs, one
  /// workspace for all steps; the padded rows of O must stay unwritten.
  int graph_tokens = 0;
  int graph_sms = 4;
  /// Each step through step_layer(l), l = 0 .. L-1, as an engine interleaving its own layers
  /// calls it: layer l's call sees of the other layers only what it may read (step_by_layer).
  bool by_layer = false;
  std::string describe() const {
    const char* m = mode == CacheIndexing::kContiguous ? "contiguous"
                    : mode == CacheIndexing::kPageList ? "page list"
                                                       : "block table";
    return "first " + std::to_string(first) + " chunk " + std::to_string(chunk) + " " + m +
           " page " + std::to_string(page_size) + (hnd ? " HND" : " NHD") + " splits " +
           std::to_string(num_splits) +
           (graph_tokens ? " graph bucket " + std::to_string(graph_tokens) : std::string()) +
           (by_layer ? " layer by layer" : "");
  }
};

/// The step layer by layer: the call for layer l gets a stack whose other layers hold only what
/// layer l reads (layer 0's v and v_cache for ResFormer / SVFormer, its sources' k^ and v^ step
/// buffers for Depth) — every other field unset, as an engine that fills a layer's buffers only
/// when its turn comes would have them.
inline strata::Status step_by_layer(const DecodeStack& run) {
  for (size_t l = 0; l < run.layers.size(); ++l) {
    DecodeStack one = run;
    for (size_t m = 0; m < one.layers.size(); ++m) {
      if (m == l) continue;
      const DecodeLayer& full = run.layers[m];
      DecodeLayer& y = one.layers[m];
      y = DecodeLayer{};
      if (m == 0) y.v = full.v, y.v_cache = full.v_cache;
      for (int j : run.layers[l].sources)
        if (size_t(j) == m) y.k_attn = full.k_attn, y.v_attn = full.v_attn;
    }
    if (strata::Status s = one.step_layer(l); !s.ok()) return s;
  }
  return strata::Status::Ok();
}

/// The whole-sequence problem the stack was built for.
struct FullProblem {
  std::vector<int> cu;  ///< [b + 1] token offsets
  int h = 0, h_k = 0, d = 0;
  strata::attention::Dtype dtype = strata::attention::Dtype::kBf16;
  float scale = 0.f;
  bool causal = true;
  int window_left = -1;
};

inline FullProblem full_problem(const strata::attention::FlashFwdParams& a) {
  FullProblem f;
  if (a.cu_seqlens_q_host) {
    f.cu.assign(a.cu_seqlens_q_host, a.cu_seqlens_q_host + a.b + 1);
  } else {
    for (int s = 0; s <= a.b; ++s) f.cu.push_back(s * a.seqlen_q);
  }
  f.h = a.h, f.h_k = a.h_k, f.d = a.d, f.dtype = a.dtype, f.scale = a.softmax_scale;
  f.causal = a.is_causal, f.window_left = a.window_left;
  return f;
}

namespace decode_detail {

/// Rows `tokens` of a [total, row] buffer, packed.
template <class E>
Vec<E> gather(const void* full, size_t row, const std::vector<int>& tokens) {
  Vec<E> out(std::max<size_t>(tokens.size() * row, 1) + 8);
  for (size_t i = 0; i < tokens.size(); ++i)
    std::memcpy(&out[i * row], static_cast<const E*>(full) + size_t(tokens[i]) * row,
                row * sizeof(E));
  return out;
}

}  // namespace decode_detail

/// Serves `proto` (its layers' q, k, v, g, o, lse, mix.s and its anchors point at whole-sequence
/// buffers, contiguous [total, heads, d]) step by step; returns an error message or "".
/// A change to the first step's stack that makes it invalid (validation tests).
using Spoil = std::function<void(DecodeStack&)>;

/// With `stored_bytes`, the bytes the caches hold at the end (elements written). With `spoil`,
/// the first step is spoiled and must fail without writing anything: returns
/// "invalid: " and the Status message, or what went wrong.
template <class T>
std::string decode_stack(const DecodeStack& proto, const FullProblem& fp, const DecodeSchedule& sch,
                         const Spoil& spoil = {}, int64_t* stored_bytes = nullptr) {
  using decode_detail::gather;
  const int B = int(fp.cu.size()) - 1, L = int(proto.layers.size());
  const int H = fp.h, Hk = fp.h_k, D = fp.d;
  const int total = fp.cu[size_t(B)];
  std::vector<int> len(static_cast<size_t>(B));
  int max_len = 1;
  for (int s = 0; s < B; ++s)
    len[size_t(s)] = fp.cu[size_t(s) + 1] - fp.cu[size_t(s)],
    max_len = std::max(max_len, len[size_t(s)]);

  // the caches: every layer its own K and V pages, one shuffled page allocation for all layers
  strata::api::KvCache c;
  c.dtype = fp.dtype, c.h_k = Hk, c.d = D, c.b = B, c.indexing = sch.mode;
  std::vector<int> table, batch_idx;
  if (sch.mode == CacheIndexing::kContiguous) {
    c.page_size = max_len + 3, c.num_pages = B + 1;
    for (int s = 0; s < B; ++s) batch_idx.push_back(B - s);  // slot 0 unused
  } else {
    c.page_size = sch.page_size, c.num_pages = 2;
    for (int n : len) c.num_pages += (n + sch.page_size - 1) / sch.page_size;
  }
  c.max_pages = std::max(1, (max_len + c.page_size - 1) / c.page_size);
  c.block_table_stride = c.max_pages + 1;
  std::vector<int> order(size_t(c.num_pages));
  std::iota(order.begin(), order.end(), 0);
  strata_test::Rng rng(sch.shuffle);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.next_u32() % i]);
  table.assign(size_t(B) * size_t(c.block_table_stride), -1);
  size_t next = 0;
  for (int s = 0; s < B; ++s)
    for (int j = 0; j < (len[size_t(s)] + c.page_size - 1) / c.page_size; ++j)
      table[size_t(s) * size_t(c.block_table_stride) + size_t(j)] = order[next++];
  const size_t cache_elems = size_t(c.num_pages) * size_t(c.page_size) * size_t(Hk) * size_t(D);
  const T nan = strata::core::from_float<T>(NAN);
  std::vector<Vec<T>> kc(static_cast<size_t>(L)), vc(static_cast<size_t>(L));
  DecodeStack st = proto;
  for (int l = 0; l < L; ++l) {
    kc[size_t(l)].assign(cache_elems, nan), vc[size_t(l)].assign(cache_elems, nan);
    auto tensor = [&](Vec<T>& x, bool hnd) {
      return hnd ? strata::attention::hnd_cache(x.data(), c.page_size, Hk, D)
                 : strata::attention::nhd_cache(x.data(), c.page_size, Hk, D);
    };
    st.layers[size_t(l)].k_cache = tensor(kc[size_t(l)], sch.hnd);
    st.layers[size_t(l)].v_cache = tensor(vc[size_t(l)], !sch.hnd);  // K and V differ
  }
  st.h = H, st.softmax_scale = fp.scale, st.is_causal = fp.causal;
  st.window_left = fp.window_left, st.num_splits = sch.num_splits;

  // CUDA-graph mode: the bucket's plan and workspace, made once
  strata::api::PagedAttentionPlan plan;
  Vec<float> graph_work;
  if (sch.graph_tokens > 0) {
    strata::api::PagedAttentionShape shape;
    shape.b = B, shape.total_q = sch.graph_tokens,
    shape.max_seqlen_q = std::max(sch.first, sch.chunk);
    shape.max_seqlen_k = max_len, shape.h = H, shape.h_k = Hk, shape.d = D;
    const bool mea = proto.method == DecodeMethod::kMea;
    shape.h_kv = mea ? proto.h_kv : 0;
    if (strata::Status s = mea ? strata::api::plan_mea_paged_attention(shape, sch.graph_sms, &plan)
                               : strata::api::plan_paged_attention(shape, sch.graph_sms, &plan);
        !s.ok())
      return std::string("plan: ") + s.message();
    graph_work.assign(plan.workspace_bytes / 4 + 4, NAN);
    st.plan = &plan;
    st.workspace = graph_work.data(), st.workspace_bytes = graph_work.size() * sizeof(float);
  }
  const bool gated_headwise =
      proto.method == DecodeMethod::kGated && proto.gate_kind == strata::core::GateKind::kHeadwise;
  const size_t rq = size_t(H) * D, rkv = size_t(Hk) * D, rg = gated_headwise ? size_t(H) : rq;
  std::vector<int> done(size_t(B), 0);
  for (int stepi = 0;; ++stepi) {
    // this step's new tokens, sequence by sequence
    std::vector<int> tokens, positions, cu{0}, seqlens, indptr{0}, indices, last;
    std::vector<int64_t> slots;
    int max_q = 0;
    for (int s = 0; s < B; ++s) {
      const int want = stepi == 0 ? sch.first : sch.chunk;
      const int n = std::min(want, len[size_t(s)] - done[size_t(s)]);
      max_q = std::max(max_q, n);
      const int after = done[size_t(s)] + n;
      seqlens.push_back(after);
      const int pages = (after + c.page_size - 1) / c.page_size;
      for (int j = 0; j < pages; ++j)
        indices.push_back(table[size_t(s) * size_t(c.block_table_stride) + size_t(j)]);
      indptr.push_back(int(indices.size()));
      last.push_back(pages ? after - (pages - 1) * c.page_size : 0);
      cu.push_back(cu.back() + n);
    }
    if (cu.back() == 0) break;
    indices.push_back(0);  // never an empty array
    strata::api::KvCache cs = c;
    cs.cache_seqlens = cs.cache_seqlens_host = seqlens.data();
    cs.cache_batch_idx = cs.cache_batch_idx_host = batch_idx.empty() ? nullptr : batch_idx.data();
    cs.block_table = cs.block_table_host = table.data();
    cs.indptr = cs.indptr_host = indptr.data();
    cs.indices = cs.indices_host = indices.data();
    cs.last_page_len = cs.last_page_len_host = last.data();
    for (int s = 0; s < B; ++s)
      for (int i = done[size_t(s)]; i < seqlens[size_t(s)]; ++i) {
        tokens.push_back(fp.cu[size_t(s)] + i);
        positions.push_back(i);
        slots.push_back(cs.slot(s, i));
      }
    const int real = int(tokens.size());
    if (sch.graph_tokens > 0) {  // padding tokens: slot -1 (not stored), past cu_seqlens_q[b]
      if (real > sch.graph_tokens) return "a step larger than the graph bucket";
      while (int(tokens.size()) < sch.graph_tokens)
        tokens.push_back(tokens.front()), positions.push_back(0), slots.push_back(-1);
      max_q = std::max(sch.first, sch.chunk);
    }
    const int nq = int(tokens.size());

    // the step's buffers: the new tokens' rows gathered from the whole-sequence inputs
    DecodeStack run = st;
    run.cache = cs;
    run.slot_mapping = run.slot_mapping_host = slots.data();
    Vec<int> pos_d(positions.begin(), positions.end()), cu_d(cu.begin(), cu.end());
    run.positions = pos_d.data();
    run.cu_seqlens_q = run.cu_seqlens_q_host = cu_d.data();
    run.total_q = nq, run.max_seqlen_q = max_q;
    std::vector<Vec<T>> keep;
    std::vector<Vec<float>> keep_f;
    keep.reserve(size_t(L) * 12 + 8), keep_f.reserve(size_t(L) * 3 + 1);
    auto rows = [&](const void* full, size_t row) -> const void* {
      if (!full) return nullptr;
      keep.push_back(gather<T>(full, row, tokens));
      return keep.back().data();
    };
    auto scratch = [&](size_t row) -> void* {
      keep.emplace_back(size_t(nq) * row + 8, nan);
      return keep.back().data();
    };
    for (int p = 0; p < strata::api::kExoStreams; ++p) {
      auto& a = run.anchors.anchor[size_t(p)];
      a.ptr = rows(a.ptr, p == 1 || p == 2 ? rkv : rq);
    }
    for (int l = 0; l < L; ++l) {
      DecodeLayer& y = run.layers[size_t(l)];
      y.q = rows(y.q, rq), y.k = rows(y.k, rkv), y.v = rows(y.v, rkv), y.g = rows(y.g, rg);
      y.o = scratch(rq);
      keep_f.emplace_back(size_t(nq) * H + 1, NAN);
      y.lse = keep_f.back().data();
      if (y.mix.s) {
        keep_f.push_back(gather<float>(y.mix.s, 8, tokens));
        y.mix.s = keep_f.back().data();
      }
      y.q_attn = scratch(rq), y.k_attn = scratch(rkv), y.v_attn = scratch(rkv);
      y.g_attn = scratch(rq);
    }
    Vec<float> work;
    if (sch.num_splits > 1 && sch.graph_tokens == 0) {
      work.assign(strata::api::workspace_bytes(run) / 4 + 4, NAN);
      run.workspace = work.data(), run.workspace_bytes = work.size() * sizeof(float);
    }
    if (spoil) {
      spoil(run);
      const strata::Status s = run.step();
      if (s.ok()) return "the spoiled step ran";
      const auto poisoned = [](const Vec<T>& x) {
        return std::all_of(x.begin(), x.end(),
                           [](T e) { return std::isnan(strata::core::to_float(e)); });
      };
      for (int l = 0; l < L; ++l)
        if (!poisoned(kc[size_t(l)]) || !poisoned(vc[size_t(l)]))
          return "layer " + std::to_string(l) + "'s cache was written: " + s.message();
      for (const Vec<T>& x : keep)  // outputs and step buffers (the gathered inputs are finite)
        if (std::isnan(strata::core::to_float(x[x.size() - 1])) && !poisoned(x))
          return std::string("a step buffer was written: ") + s.message();
      return std::string("invalid: ") + s.message();
    }
    if (const strata::Status s = sch.by_layer ? step_by_layer(run) : run.step(); !s.ok())
      return "step " + std::to_string(stepi) + ": " + s.message();
    if (std::string e = sync_device(); !e.empty()) return e;
    // O and LSE rows back to their tokens; the padding rows were not written
    for (int l = 0; l < L; ++l) {
      const DecodeLayer& y = run.layers[size_t(l)];
      const DecodeLayer& full = proto.layers[size_t(l)];
      for (size_t i = size_t(real) * rq; i < size_t(nq) * rq; ++i)
        if (!std::isnan(strata::core::to_float(static_cast<const T*>(y.o)[i])))
          return "layer " + std::to_string(l) + ": a padding row of O was written";
      for (int i = 0; i < real; ++i) {
        std::memcpy(static_cast<T*>(full.o) + size_t(tokens[size_t(i)]) * rq,
                    static_cast<const T*>(y.o) + size_t(i) * rq, rq * sizeof(T));
        for (int hh = 0; hh < H; ++hh)
          full.lse[size_t(hh) * size_t(total) + size_t(tokens[size_t(i)])] =
              y.lse[size_t(hh) * size_t(nq) + size_t(i)];
      }
    }
    for (int s = 0; s < B; ++s) done[size_t(s)] = seqlens[size_t(s)];
  }
  if (stored_bytes) {  // what the caches hold after the last step: every written element
    *stored_bytes = 0;
    for (int l = 0; l < L; ++l)
      for (const Vec<T>* x : {&kc[size_t(l)], &vc[size_t(l)]})
        for (T e : *x) *stored_bytes += std::isnan(strata::core::to_float(e)) ? 0 : sizeof(T);
  }
  return "";
}

/// The stacks the variant checks build (tests/variants/*_check.hpp), served by decode_stack:
/// each layer's inputs are the training stack's, its O and LSE buffers receive the outputs.
template <class T>
std::string decode_depth(const strata::api::DepthStack& st, const DecodeSchedule& sch,
                         const Spoil& spoil = {}, int64_t* stored = nullptr) {
  DecodeStack proto;
  proto.method = DecodeMethod::kDepth;
  proto.local = st.local;
  for (const strata::api::DepthStackLayer& x : st.layers) {
    DecodeLayer y;
    y.q = x.q, y.k = x.k, y.v = x.v;  // raw: the depth pass normalises and rotates
    y.o = x.attn.o, y.lse = x.attn.lse;
    y.gamma_q = x.gamma_q, y.gamma_k = x.gamma_k, y.sources = x.sources;
    proto.layers.push_back(y);
  }
  return decode_stack<T>(proto, full_problem(st.layers[0].attn), sch, spoil, stored);
}

template <class T>
std::string decode_value_residual(const strata::api::ValueResidualStack& st,
                                  const DecodeSchedule& sch, const Spoil& spoil = {},
                                  int64_t* stored = nullptr) {
  DecodeStack proto;
  const bool res = st.kind == strata::api::ValueResidualKind::kResFormer;
  proto.method = res ? DecodeMethod::kResFormer : DecodeMethod::kSVFormer;
  proto.granularity = st.granularity;
  for (size_t l = 0; l < st.layers.size(); ++l) {
    const strata::api::ValueResidualLayer& x = st.layers[l];
    DecodeLayer y;
    y.q = x.attn.q, y.k = x.attn.k;
    y.v = res || l == 0 ? x.attn.v : nullptr;  // SVFormer layers l >= 1 have no V
    y.o = x.attn.o, y.lse = x.attn.lse;
    y.lambda_self = x.lambda_self, y.lambda_first = x.lambda_first;
    proto.layers.push_back(y);
  }
  return decode_stack<T>(proto, full_problem(st.layers[0].attn), sch, spoil, stored);
}

template <class T>
std::string decode_exo(const strata::api::ExoStack& st, const DecodeSchedule& sch,
                       const Spoil& spoil = {}, int64_t* stored = nullptr) {
  DecodeStack proto;
  proto.method = DecodeMethod::kExoFormer;
  proto.exo = st.options;
  for (int p = 0; p < strata::api::kExoStreams; ++p)
    proto.anchors.anchor[size_t(p)] = st.anchors.anchor[size_t(p)],
    proto.anchors.gamma[size_t(p)] = st.anchors.gamma[size_t(p)];
  for (const strata::api::ExoStackLayer& x : st.layers) {
    DecodeLayer y;
    y.q = x.mix.p[0].ptr, y.k = x.mix.p[1].ptr, y.v = x.mix.p[2].ptr, y.g = x.mix.p[3].ptr;
    y.o = x.attn.o, y.lse = x.attn.lse;
    y.mix = x.mix;
    if (!st.options.dynamic) y.mix.s = nullptr;
    proto.layers.push_back(y);
  }
  return decode_stack<T>(proto, full_problem(st.layers[0].attn), sch, spoil, stored);
}

template <class T>
std::string decode_gated(const strata::attention::FlashFwdParams& a, const strata::api::GateArgs& g,
                         const DecodeSchedule& sch, const Spoil& spoil = {},
                         int64_t* stored = nullptr) {
  DecodeStack proto;
  proto.method = DecodeMethod::kGated;
  proto.gate_kind = g.kind;
  DecodeLayer y;
  y.q = a.q, y.k = a.k, y.v = a.v, y.g = g.gate, y.o = a.o, y.lse = a.lse;
  proto.layers.push_back(y);
  return decode_stack<T>(proto, full_problem(a), sch, spoil, stored);
}

/// MEA: the cache holds the H_c component heads (the stack's K_c, V_c); the layer's output is
/// attn.o at the KeyValue site and `out` = GN_o(O) at the Output site.
template <class T>
std::string decode_mea(const strata::api::MeaStack& st, const DecodeSchedule& sch,
                       const Spoil& spoil = {}, int64_t* stored = nullptr) {
  DecodeStack proto;
  proto.method = DecodeMethod::kMea;
  proto.mea = st.options;
  proto.h_kv = st.layers[0].attn.h_k;
  const bool kv = st.options.site == strata::core::NormSite::kKeyValue;
  for (const strata::api::MeaLayerParams& x : st.layers) {
    DecodeLayer y;
    y.q = x.q, y.k = x.kc, y.v = x.vc;  // raw: RoPE is the stack's
    y.o = kv ? x.attn.o : x.out, y.lse = x.attn.lse;
    y.mea = {x.a_k, x.a_v, x.gamma_k, x.beta_k, x.gamma_v, x.beta_v, x.gamma_o, x.beta_o};
    proto.layers.push_back(y);
  }
  FullProblem fp = full_problem(st.layers[0].attn);
  fp.h_k = st.layers[0].h_c;  // the cache's heads
  return decode_stack<T>(proto, fp, sch, spoil, stored);
}

}  // namespace kernel_test
