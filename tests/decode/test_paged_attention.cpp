// Attention over a KV cache in the simulator: decode (one token per sequence), chunked prefill
// and mixed batches, against the fp64 reference with FlashAttention's rule. The cache is filled by
// kv_append from the packed K and V of the reference problem, through every indexing mode; paged
// and contiguous caches give bitwise-identical outputs, split and unsplit agree, decoding a
// sequence token by token or in chunks matches the full forward, and every bad field is named.
#include <strata/api/kv_cache.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "../common/refusal.hpp"
#include "common.hpp"
#include "flash_harness.hpp"

namespace {

using kernel_test::Case;
using kernel_test::Errors;
using kernel_test::Problem;
using kernel_test::Vec;
using strata::api::CacheIndexing;
using strata::api::KvCache;
using strata::api::PagedAttentionParams;
namespace att = strata::attention;

/// How the cache of a run is laid out.
struct CacheSpec {
  CacheIndexing mode = CacheIndexing::kBlockTable;
  int page_size = 16;
  bool hnd_k = false, hnd_v = true;
  uint64_t shuffle = 1;  ///< seed of the physical page order
  int num_splits = 1;
};

/// A cache holding the problem's K and V (sequence s's tokens at positions 0 .. lens_k[s]), the
/// indexing arrays (device and host copies: the simulator's device memory is host memory) and
/// the attention params over it.
template <class T>
struct CacheRun {
  Vec<T> kc, vc;
  std::vector<int> seqlens, batch_idx, table, indptr, indices, last;
  std::vector<int64_t> slots;
  Vec<float> workspace;
  PagedAttentionParams p;

  CacheRun(Problem<T>& pr, const Case& cs, int d, const CacheSpec& spec) {
    const int B = int(cs.lens_q.size());
    const std::vector<int>& lk = cs.lens_k.empty() ? cs.lens_q : cs.lens_k;
    KvCache& c = p.cache;
    c.dtype = pr.p.dtype, c.h_k = cs.h_k, c.d = d, c.b = B, c.indexing = spec.mode;
    int max_k = 1, total_pages = 0;
    for (int n : lk) max_k = std::max(max_k, n);
    if (spec.mode == CacheIndexing::kContiguous) {
      c.page_size = max_k + 3, c.num_pages = B + 1;
      for (int s = 0; s < B; ++s) batch_idx.push_back(B - s);  // slot 0 unused
    } else {
      c.page_size = spec.page_size;
      for (int n : lk) total_pages += (n + spec.page_size - 1) / spec.page_size;
      c.num_pages = total_pages + 2;
    }
    std::vector<int> order(size_t(c.num_pages));
    std::iota(order.begin(), order.end(), 0);
    strata_test::Rng rng(spec.shuffle);
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.next_u32() % i]);
    c.max_pages = std::max(1, (max_k + c.page_size - 1) / c.page_size);
    c.block_table_stride = c.max_pages + 1;
    table.assign(size_t(B) * size_t(c.block_table_stride), -1);
    indptr = {0};
    size_t next = 0;
    for (int s = 0; s < B; ++s) {
      seqlens.push_back(lk[size_t(s)]);
      const int pages = (lk[size_t(s)] + c.page_size - 1) / c.page_size;
      for (int j = 0; j < pages && spec.mode != CacheIndexing::kContiguous; ++j) {
        table[size_t(s) * size_t(c.block_table_stride) + size_t(j)] = order[next];
        indices.push_back(order[next++]);
      }
      indptr.push_back(int(indices.size()));
      last.push_back(pages ? lk[size_t(s)] - (pages - 1) * c.page_size : 0);
    }
    indices.push_back(0);  // never an empty array
    c.cache_seqlens = c.cache_seqlens_host = seqlens.data();
    if (spec.mode == CacheIndexing::kContiguous)
      c.cache_batch_idx = c.cache_batch_idx_host = batch_idx.data();
    c.block_table = c.block_table_host = table.data();
    c.indptr = c.indptr_host = indptr.data();
    c.indices = c.indices_host = indices.data();
    c.last_page_len = c.last_page_len_host = last.data();
    const size_t elems = size_t(c.num_pages) * size_t(c.page_size) * size_t(cs.h_k) * size_t(d);
    const T nan = strata::core::from_float<T>(NAN);
    kc.assign(elems, nan), vc.assign(elems, nan);
    c.k = spec.hnd_k ? att::hnd_cache(kc.data(), c.page_size, cs.h_k, d)
                     : att::nhd_cache(kc.data(), c.page_size, cs.h_k, d);
    c.v = spec.hnd_v ? att::hnd_cache(vc.data(), c.page_size, cs.h_k, d)
                     : att::nhd_cache(vc.data(), c.page_size, cs.h_k, d);
    // the packed K, V of the problem appended at each token's slot
    for (int s = 0; s < B; ++s)
      for (int pos = 0; pos < lk[size_t(s)]; ++pos) slots.push_back(c.slot(s, pos));
    att::KvAppendParams a;
    a.cache = c;
    a.k_new = pr.ks.data(), a.v_new = pr.vs.data();
    a.k_new_row_stride = a.v_new_row_stride = int64_t(cs.h_k) * d;
    a.k_new_head_stride = a.v_new_head_stride = d;
    a.total_new = int(slots.size());
    a.slot_mapping = a.slot_mapping_host = slots.data();
    const strata::Status st = strata::api::kv_append(a);
    EXPECT_TRUE(st.ok()) << st.message();

    p.q = pr.qs.data(), p.q_row_stride = int64_t(cs.h) * d, p.q_head_stride = d;
    p.o = pr.o.data(), p.o_row_stride = int64_t(cs.h) * d, p.o_head_stride = d;
    p.lse = pr.lse.data();
    p.cu_seqlens_q = p.cu_seqlens_q_host = pr.cuq.data();
    p.total_q = int(pr.nq), p.max_seqlen_q = pr.p.seqlen_q, p.h = cs.h;
    p.softmax_scale = pr.p.softmax_scale, p.is_causal = cs.causal, p.window_left = cs.window_left;
    p.num_splits = spec.num_splits;
    workspace.assign(strata::api::workspace_bytes(p) / 4 + 4, NAN);
    p.workspace = workspace.data(), p.workspace_bytes = workspace.size() * sizeof(float);
  }
};

template <class T, int D>
Errors run_paged(const Case& cs, const CacheSpec& spec, Vec<T>* o_out = nullptr) {
  Problem<T> pr(cs, D);
  CacheRun<T> run(pr, cs, D, spec);
  Errors e;
  if (const strata::Status st = strata::api::paged_attention(run.p); !st.ok()) {
    e.status = st.message();
    return e;
  }
  if (o_out) *o_out = pr.o;
  return kernel_test::forward_errors(pr, cs, D);
}

template <class T>
Errors run_any(const Case& cs, const CacheSpec& spec, Vec<T>* o = nullptr) {
  return kernel_test::with_head_dim<T>(
      cs, [&]<class U, int D>(const Case& x) { return run_paged<U, D>(x, spec, o); });
}

Case make_case(std::vector<int> lens_q, std::vector<int> lens_k, int h, int h_k, int d,
               bool causal = true, int window = -1, uint64_t seed = 1) {
  Case c;
  c.lens_q = std::move(lens_q), c.lens_k = std::move(lens_k);
  c.h = h, c.h_k = h_k, c.d = d, c.causal = causal, c.window_left = window, c.seed = seed;
  return c;
}

/// The error as a fraction of FlashAttention's bound (1 is the limit), printed with STRATA_VERBOSE.
double bound_fraction(const Errors& e, const std::string& what) {
  const double f = std::max(e.o_kernel / (2 * e.o_naive + std::max(1e-5, e.o_atol)),
                            e.lse_kernel / (2 * e.lse_naive + 1e-5));
  if (std::getenv("STRATA_VERBOSE")) std::printf("%-60s %.3f of the bound\n", what.c_str(), f);
  return f;
}

#define EXPECT_PASSES(e, what)                                                              \
  EXPECT_TRUE((e).pass() && bound_fraction(e, what) <= 1.0)                                 \
      << (what) << ": " << (e).status << " O " << (e).o_kernel << " (naive " << (e).o_naive \
      << ") LSE " << (e).lse_kernel << " (naive " << (e).lse_naive << ")"                   \
      << ((e).nan ? " NaN" : "") << ((e).lse_inf_mismatch ? " inf mismatch" : "")

TEST(PagedAttention, DecodeEveryHeadDimDtypeAndGqaRatio) {
  for (int d : {64, 96, 128})
    for (int g : {1, 2, 4, 8}) {
      // decode: one new token per sequence over caches of 1 .. 200 tokens
      const Case cs = make_case({1, 1, 1, 1}, {1, 17, 130, 200}, 2 * g, 2, d, true, -1, d + g);
      const CacheSpec spec{CacheIndexing::kBlockTable, 16, false, true, uint64_t(g), 1};
      const std::string what = "decode d " + std::to_string(d) + " G " + std::to_string(g);
      const Errors eb = run_any<__nv_bfloat16>(cs, spec);
      EXPECT_PASSES(eb, what + " bf16");
      const Errors eh = run_any<__half>(cs, spec);
      EXPECT_PASSES(eh, what + " fp16");
    }
}

TEST(PagedAttention, ChunkedPrefillMixedBatchesWindowsAndSplits) {
  struct Run {
    Case cs;
    CacheSpec spec;
  };
  const Run runs[] = {
      // mixed decode and prefill, an empty chunk, a chunk that is the whole cache
      {make_case({3, 16, 0, 1, 5}, {3, 40, 5, 200, 70}, 8, 2, 64),
       {CacheIndexing::kPageList, 16, true, false, 3, 1}},
      {make_case({3, 16, 0, 1, 5}, {3, 40, 5, 200, 70}, 8, 2, 64),
       {CacheIndexing::kBlockTable, 1, false, false, 4, 3}},
      {make_case({16, 1}, {100, 129}, 4, 1, 128, true, 20),
       {CacheIndexing::kContiguous, 0, false, true, 5, 1}},
      {make_case({16, 1}, {100, 129}, 4, 1, 128, true, 20),
       {CacheIndexing::kBlockTable, 64, true, true, 6, 4}},
      // a chunk of 40 tokens with G = 4: packed rows span three query tiles
      {make_case({40, 2}, {300, 2}, 8, 2, 96), {CacheIndexing::kPageList, 64, false, true, 7, 2}},
      // not causal: every new token sees the whole cache
      {make_case({4, 1}, {33, 64}, 4, 4, 64, false),
       {CacheIndexing::kBlockTable, 16, true, true, 8, 1}},
      // more splits than key tiles: empty splits merge to nothing
      {make_case({1, 1}, {5, 70}, 2, 1, 64), {CacheIndexing::kBlockTable, 16, false, false, 9, 7}},
  };
  for (const Run& r : runs) {
    const Errors e = run_any<__nv_bfloat16>(r.cs, r.spec);
    EXPECT_PASSES(e, r.cs.describe() + " splits " + std::to_string(r.spec.num_splits));
  }
}

TEST(PagedAttention, PagedAndContiguousCachesAreBitwiseIdentical) {
  const Case cs = make_case({1, 7, 1}, {90, 33, 1}, 8, 2, 64, true, -1, 21);
  Vec<__nv_bfloat16> first, o;
  ASSERT_TRUE(
      run_any(cs, CacheSpec{CacheIndexing::kContiguous, 0, false, false, 1, 1}, &first).pass());
  for (int page : {1, 16, 64})
    for (CacheIndexing m : {CacheIndexing::kBlockTable, CacheIndexing::kPageList}) {
      const CacheSpec spec{m, page, page == 16, page != 64, uint64_t(page) + 3, 1};
      ASSERT_TRUE(run_any(cs, spec, &o).pass());
      EXPECT_TRUE(std::equal(o.begin(), o.end(), first.begin(),
                             [](auto a, auto b) { return std::memcmp(&a, &b, sizeof a) == 0; }))
          << "page size " << page << " mode " << int(m);
    }
}

/// Without splits the paged kernel walks a row's keys in the training forward's tiles of 64 (d =
/// 64, 96) with the same products, exponents and roundings: decoding a token gives bitwise the O
/// and LSE the forward gives it in prefill, for decode steps, chunks, GQA packing and windows.
TEST(PagedAttention, DecodeReproducesTheTrainingForwardBitwise) {
  using T = __nv_bfloat16;
  const auto bits = [](const auto& a, const auto& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof a[0]) == 0;
  };
  const Case cases[] = {
      make_case({1, 1, 1}, {1, 70, 200}, 8, 2, 64, true, -1, 5),  // decode, G = 4
      make_case({1, 1}, {129, 64}, 8, 8, 96, true, -1, 6),        // decode, no GQA
      make_case({5, 16}, {70, 150}, 4, 1, 64, true, -1, 7),       // chunks, G = 4
      make_case({20, 3}, {100, 129}, 4, 2, 96, true, 20, 8),      // chunks, window
      make_case({9, 1}, {33, 64}, 4, 4, 64, false, -1, 9),        // not causal
  };
  for (const Case& cs : cases) {
    kernel_test::with_head_dim<T>(cs, [&]<class U, int D>(const Case& c) {
      Problem<U> fwd(c, D);
      const strata::Status sf = strata::api::flash_fwd(fwd.p);
      ASSERT_TRUE(sf.ok()) << sf.message();
      Problem<U> dec(c, D);
      CacheRun<U> run(dec, c, D, CacheSpec{CacheIndexing::kBlockTable, 16, false, true, 3, 1});
      const strata::Status sp = strata::api::paged_attention(run.p);
      ASSERT_TRUE(sp.ok()) << sp.message();
      EXPECT_TRUE(kernel_test::forward_errors(dec, c, D).pass()) << c.describe();  // written
      EXPECT_TRUE(bits(dec.o, fwd.o)) << c.describe() << ": O";
      EXPECT_TRUE(bits(dec.lse, fwd.lse)) << c.describe() << ": LSE";
    });
  }
}

TEST(PagedAttention, AllSchedulesOnASplitChunkedBatch) {
  strata_test::SimGuard guard;
  const Case cs = make_case({5, 1}, {70, 3}, 4, 2, 64, true, -1, 4);
  for (const strata::sim::Schedule& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    const Errors e =
        run_any<__nv_bfloat16>(cs, CacheSpec{CacheIndexing::kBlockTable, 16, false, true, 2, 2});
    EXPECT_PASSES(e, "schedule " + s.to_string());
  }
}

/// Decodes one 40-token sequence (GQA 4) chunk by chunk: append the chunk's K and V, then attend
/// its queries over the cache; every token's output is checked against the full causal forward.
TEST(PagedAttention, TokenByTokenAndChunksMatchTheFullForward) {
  using T = __nv_bfloat16;
  constexpr int D = 64, L = 40;
  const Case full = make_case({L}, {L}, 8, 2, D, true, -1, 33);
  Problem<T> pr(full, D);  // q, k, v of the whole sequence; its o is filled chunk by chunk
  for (int chunk : {1, 3, 16}) {
    std::fill(pr.o.begin(), pr.o.end(), strata::core::from_float<T>(NAN));
    std::fill(pr.lse.begin(), pr.lse.end(), NAN);
    const int page = 16, pages = 4;
    Vec<T> kc(size_t(pages) * page * 2 * D), vc(kc.size());
    std::vector<int> table = {2, 0, 3, 1}, seqlen = {0}, cu = {0, 0};
    std::vector<int64_t> slots;
    KvCache c;
    c.dtype = att::Dtype::kBf16, c.h_k = 2, c.d = D, c.page_size = page, c.num_pages = pages;
    c.k = att::nhd_cache(kc.data(), page, 2, D), c.v = att::hnd_cache(vc.data(), page, 2, D);
    c.b = 1, c.block_table = c.block_table_host = table.data(), c.max_pages = 4;
    c.block_table_stride = 4, c.cache_seqlens = c.cache_seqlens_host = seqlen.data();
    Vec<float> lse_chunk(size_t(8) * L);
    for (int t0 = 0; t0 < L; t0 += chunk) {
      const int n = std::min(chunk, L - t0);
      seqlen[0] = t0 + n;  // the cache holds the chunk once it is appended
      slots.clear();
      for (int pos = t0; pos < t0 + n; ++pos) slots.push_back(c.slot(0, pos));
      att::KvAppendParams a;
      a.cache = c;
      a.k_new = pr.ks.data() + size_t(t0) * 2 * D, a.v_new = pr.vs.data() + size_t(t0) * 2 * D;
      a.k_new_row_stride = a.v_new_row_stride = 2 * D,
      a.k_new_head_stride = a.v_new_head_stride = D;
      a.total_new = n, a.slot_mapping = a.slot_mapping_host = slots.data();
      ASSERT_TRUE(strata::api::kv_append(a).ok());
      PagedAttentionParams p;
      p.cache = c;
      cu[1] = n;
      p.q = pr.qs.data() + size_t(t0) * 8 * D, p.q_row_stride = 8 * D, p.q_head_stride = D;
      p.o = pr.o.data() + size_t(t0) * 8 * D, p.o_row_stride = 8 * D, p.o_head_stride = D;
      p.lse = lse_chunk.data();
      p.cu_seqlens_q = p.cu_seqlens_q_host = cu.data();
      p.total_q = n, p.max_seqlen_q = n, p.h = 8, p.softmax_scale = pr.p.softmax_scale;
      const strata::Status st = strata::api::paged_attention(p);
      ASSERT_TRUE(st.ok()) << st.message();
      for (int h = 0; h < 8; ++h)  // LSE [h, total_q] of the chunk into the sequence's layout
        for (int i = 0; i < n; ++i)
          pr.lse[size_t(h) * L + size_t(t0 + i)] = lse_chunk[size_t(h) * n + size_t(i)];
    }
    const Errors e = kernel_test::forward_errors(pr, full, D);
    EXPECT_PASSES(e, "chunks of " + std::to_string(chunk));
  }
}

TEST(PagedAttentionPlan, SplitCountsHandComputed) {
  using strata::api::paged_attention_num_splits;
  // 8 blocks (one sequence, 8 KV heads), 512 key tiles, 132 SMs: the eligible split counts with
  // the best wave efficiency are 16, 32, 64, 128 (8 s / 132 = 0.970 of a wave; 33 and 66 would
  // fill whole waves but give the same tiles per split as 32 and 65); 14 is the first at >= 85% of
  // that (112 / 132 = 0.848), 13 is not (0.788).
  EXPECT_EQ(paged_attention_num_splits(8, 512, 132), 14);
  // 105 blocks (< 0.8 x 132): one split is 0.795 of a wave, as are 2, 3 and 4; 5 gives 3.98 waves
  EXPECT_EQ(paged_attention_num_splits(105, 512, 132), 5);
  EXPECT_EQ(paged_attention_num_splits(106, 512, 132), 1);  // already 80% of a wave
  EXPECT_EQ(paged_attention_num_splits(8, 1, 132), 1);      // one key tile: nothing to split
  EXPECT_EQ(paged_attention_num_splits(8, 3, 132), 3);      // capped by the key tiles
  // from a problem: 2 sequences x 4 KV heads, decode with G = 4 (one query tile), 4k context
  PagedAttentionParams p;
  p.cache.b = 2, p.cache.h_k = 4, p.h = 16, p.max_seqlen_q = 1;
  EXPECT_EQ(paged_attention_num_splits(p, 4096, 132), paged_attention_num_splits(8, 64, 132));
}

TEST(PagedAttentionValidation, EveryBadFieldIsNamedAndNothingIsWritten) {
  using T = __nv_bfloat16;
  struct Bad {
    const char* needle;
    void (*spoil)(CacheRun<T>&);
  };
  const Bad cases[] = {
      {"cache.b = 0", [](CacheRun<T>& r) { r.p.cache.b = 0; }},
      {"cache.cache_seqlens is null", [](CacheRun<T>& r) { r.p.cache.cache_seqlens = nullptr; }},
      {"cache.block_table is null", [](CacheRun<T>& r) { r.p.cache.block_table = nullptr; }},
      {"cache.max_pages = 0", [](CacheRun<T>& r) { r.p.cache.max_pages = 0; }},
      {"block_table_stride", [](CacheRun<T>& r) { r.p.cache.block_table_stride = 1; }},
      {"beyond max_pages * page_size", [](CacheRun<T>& r) { r.seqlens[1] = 10000; }},
      {"not a page of the cache", [](CacheRun<T>& r) { r.table[0] = r.p.cache.num_pages; }},
      {"a page this sequence already uses",
       [](CacheRun<T>& r) {
         r.table[size_t(r.p.cache.block_table_stride) + 1] =
             r.table[size_t(r.p.cache.block_table_stride)];
       }},
      {"cache.page_size = 300", [](CacheRun<T>& r) { r.p.cache.page_size = 300; }},
      {"cache.k.data is null", [](CacheRun<T>& r) { r.p.cache.k.data = nullptr; }},
      {"h = 3", [](CacheRun<T>& r) { r.p.h = 3; }},
      {"total_q is negative", [](CacheRun<T>& r) { r.p.total_q = -1; }},
      {"softmax_scale", [](CacheRun<T>& r) { r.p.softmax_scale = 0.f; }},
      {"window_left = -2", [](CacheRun<T>& r) { r.p.window_left = -2; }},
      {"window_left = 2147483647: window_left + max_seqlen_q overflows int32",
       [](CacheRun<T>& r) { r.p.window_left = INT_MAX; }},
      {"cache.h_k = 70000: must be in [1, 65535]", [](CacheRun<T>& r) { r.p.cache.h_k = 70000; }},
      {"cache.cache_seqlens[0] = 2147483520: beyond max_pages * page_size (or kMaxSeqlen)",
       [](CacheRun<T>& r) { r.seqlens[0] = INT_MAX - 127; }},
      {"num_splits = 0", [](CacheRun<T>& r) { r.p.num_splits = 0; }},
      {"num_splits = 257", [](CacheRun<T>& r) { r.p.num_splits = 257; }},
      {"cu_seqlens_q is null", [](CacheRun<T>& r) { r.p.cu_seqlens_q = nullptr; }},
      {"more than max_seqlen_q", [](CacheRun<T>& r) { r.p.max_seqlen_q = 2; }},
      {"append them first", [](CacheRun<T>& r) { r.seqlens[1] = 2; }},
      {"q is null", [](CacheRun<T>& r) { r.p.q = nullptr; }},
      {"o_row_stride = 4", [](CacheRun<T>& r) { r.p.o_row_stride = 4; }},
      {"lse is null", [](CacheRun<T>& r) { r.p.lse = nullptr; }},
      {"max_seqlen_q = 0", [](CacheRun<T>& r) { r.p.max_seqlen_q = 0; }},
      {"workspace_bytes = 0", [](CacheRun<T>& r) { r.p.num_splits = 2, r.p.workspace_bytes = 0; }},
      {"workspace is null: the call needs",
       [](CacheRun<T>& r) { r.p.num_splits = 2, r.p.workspace = nullptr; }},
  };
  const Case cs = make_case({1, 7}, {20, 33}, 4, 2, 64);
  for (const Bad& b : cases) {
    Problem<T> pr(cs, 64);
    CacheRun<T> run(pr, cs, 64, CacheSpec{});
    b.spoil(run);
    EXPECT_TRUE(strata_test::refused(strata::api::paged_attention(run.p), b.needle));
    EXPECT_TRUE(strata_test::all_nan(pr.lse)) << b.needle << ": lse was written";
  }
  // the page-list checks
  const Bad list_cases[] = {
      {"cache.indptr is null", [](CacheRun<T>& r) { r.p.cache.indptr = nullptr; }},
      {"cache.last_page_len[1] = 0", [](CacheRun<T>& r) { r.last[1] = 0; }},
      {"cache.indices[0] = -1", [](CacheRun<T>& r) { r.indices[0] = -1; }},
      {"cache.indptr[2] decreases", [](CacheRun<T>& r) { r.indptr[2] = 0; }},
  };
  for (const Bad& b : list_cases) {
    Problem<T> pr(cs, 64);
    CacheRun<T> run(pr, cs, 64, CacheSpec{CacheIndexing::kPageList});
    b.spoil(run);
    EXPECT_TRUE(strata_test::refused(strata::api::paged_attention(run.p), b.needle));
    EXPECT_TRUE(strata_test::all_nan(pr.lse)) << b.needle << ": lse was written";
  }
}

}  // namespace

TEST(PagedAttentionPlan, SplitsAndWorkspaceOfTheShapeAndEveryBadField) {
  namespace api = strata::api;
  // decode of 4 sequences, 8 query / 2 KV heads (one 64-row tile each): 8 blocks on 132 SMs,
  // caches of 4096 tokens (64 key tiles): FlashAttention-2's rule as computed by num_splits
  api::PagedAttentionShape shape{4, 4, 1, 4096, 8, 2, 128};
  api::PagedAttentionPlan plan;
  ASSERT_TRUE(api::plan_paged_attention(shape, 132, &plan).ok());
  EXPECT_EQ(plan.num_splits, api::paged_attention_num_splits(8, 64, 132));
  EXPECT_GT(plan.num_splits, 1);
  EXPECT_EQ(plan.workspace_bytes, size_t(plan.num_splits) * 4 * 8 * (128 + 1) * 4);
  // a full wave: no split, no workspace
  shape.b = 128;
  ASSERT_TRUE(api::plan_paged_attention(shape, 132, &plan).ok());
  EXPECT_EQ(plan.num_splits, 1);
  EXPECT_EQ(plan.workspace_bytes, 0u);
  // max_splits bounds the count
  shape.b = 1;
  ASSERT_TRUE(api::plan_paged_attention(shape, 132, &plan, 3).ok());
  EXPECT_LE(plan.num_splits, 3);
  struct Bad {
    const char* needle;
    api::PagedAttentionShape shape;
    int sms, max_splits;
  };
  const Bad bad[] = {
      {"shape.b = 0", {0, 4, 1, 64, 8, 2, 64}, 132, 128},
      {"shape.h = 6", {1, 4, 1, 64, 6, 4, 64}, 132, 128},
      {"max_seqlen_q >= 1 with tokens", {1, 4, 0, 64, 8, 2, 64}, 132, 128},
      {"shape.d = 80", {1, 4, 1, 64, 8, 2, 80}, 132, 128},
      {"num_sms = 0", {1, 4, 1, 64, 8, 2, 64}, 0, 128},
      {"max_splits = 300", {1, 4, 1, 64, 8, 2, 64}, 132, 300},
  };
  for (const Bad& b : bad) {
    EXPECT_TRUE(strata_test::refused(api::plan_paged_attention(b.shape, b.sms, &plan, b.max_splits),
                                     b.needle));
  }
  EXPECT_FALSE(api::plan_paged_attention(shape, 132, nullptr).ok());
}
