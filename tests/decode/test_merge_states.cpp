// Merging attention states by their LSE (api::merge_attention_states): exactly the fp64 merge of
// the states as stored (one rounding), in place too, with states and rows without keys; and
// cascade attention end to end — a batch's decode queries as one non-causal chunk over a shared
// prefix's pages (read once for all of them), each sequence over its own suffix, merged — against
// the fp64 attention over prefix + suffix. Every bad field is named.
#include <strata/api/kv_cache.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common.hpp"
#include "flash_harness.hpp"

namespace {

using kernel_test::Vec;
using strata::api::AttentionState;
using strata::api::MergeStatesParams;
namespace att = strata::attention;
using bf16 = __nv_bfloat16;

/// The fp64 merge of the states as stored, for row (t, h), element e.
double merge_ref(const MergeStatesParams& p, int64_t t, int h, int e, double* lse) {
  double m = -INFINITY;
  for (int i = 0; i < p.num_states; ++i)
    m = std::max(m, double(p.states[i].lse[int64_t(h) * p.total + t]));
  if (m == -INFINITY) return *lse = -INFINITY, 0.0;
  double sum = 0, o = 0;
  for (int i = 0; i < p.num_states; ++i) {
    const AttentionState& s = p.states[i];
    const double w = std::exp(double(s.lse[int64_t(h) * p.total + t]) - m);
    sum += w;
    o += w * double(strata::core::to_float(static_cast<const bf16*>(
                 s.o)[t * s.o_row_stride + int64_t(h) * s.o_head_stride + e]));
  }
  *lse = m + std::log(sum);
  return o / sum;
}

TEST(MergeStates, ExactlyTheMergeOfTheStoredStatesAndInPlace) {
  const int total = 5, h = 3, d = 64, n = 3;
  strata_test::Rng rng(7);
  std::vector<Vec<bf16>> o(n);
  std::vector<Vec<float>> lse(n);
  MergeStatesParams p;
  p.dtype = att::Dtype::kBf16, p.total = total, p.h = h, p.d = d, p.num_states = n;
  for (int i = 0; i < n; ++i) {
    o[size_t(i)].resize(size_t(total) * h * d);
    for (auto& x : o[size_t(i)]) x = strata::core::from_float<bf16>(2.f * rng.uniform());
    lse[size_t(i)].resize(size_t(total) * h);
    for (auto& x : lse[size_t(i)]) x = 4.f * rng.uniform();
    p.states[i] = {o[size_t(i)].data(), h * d, d, lse[size_t(i)].data()};
  }
  // state 1 saw no keys for token 1; no state saw any for token 3 (O = 0, LSE = -inf)
  for (int hh = 0; hh < h; ++hh) {
    lse[1][size_t(hh) * total + 1] = -INFINITY;
    for (int i = 0; i < n; ++i) lse[size_t(i)][size_t(hh) * total + 3] = -INFINITY;
  }
  Vec<bf16> out(size_t(total) * h * d, strata::core::from_float<bf16>(NAN));
  Vec<float> out_lse(size_t(total) * h, NAN);
  p.o = out.data(), p.o_row_stride = h * d, p.o_head_stride = d, p.lse = out_lse.data();
  ASSERT_TRUE(strata::api::merge_attention_states(p).ok());
  const double u = std::ldexp(1.0, -8);
  for (int t = 0; t < total; ++t)
    for (int hh = 0; hh < h; ++hh)
      for (int e = 0; e < d; ++e) {
        double want_lse;
        const double want = merge_ref(p, t, hh, e, &want_lse);
        const double got = strata::core::to_float(out[(size_t(t) * h + hh) * d + e]);
        EXPECT_LE(std::fabs(got - want), u * std::fabs(want) + 1e-6) << t << " " << hh << " " << e;
        const float gl = out_lse[size_t(hh) * total + t];
        if (std::isinf(want_lse))
          EXPECT_EQ(gl, -INFINITY);
        else
          EXPECT_NEAR(gl, want_lse, 1e-5 * (1 + std::fabs(want_lse)));
      }
  // in place: into state 0's O and LSE, bitwise the out-of-place result
  p.o = o[0].data(), p.lse = lse[0].data();
  ASSERT_TRUE(strata::api::merge_attention_states(p).ok());
  EXPECT_EQ(std::memcmp(o[0].data(), out.data(), out.size() * sizeof(bf16)), 0);
  EXPECT_EQ(std::memcmp(lse[0].data(), out_lse.data(), out_lse.size() * sizeof(float)), 0);
}

/// A cache of `seqs` sequences in NHD pages of 16 tokens, page order shuffled, holding `rows`
/// K and V rows (fp64 values, stored in bf16).
struct PagedRows {
  Vec<bf16> k, v;
  std::vector<int> lens, table;
  att::KvCache c;
  PagedRows(const std::vector<std::vector<std::vector<double>>>& kr,
            const std::vector<std::vector<std::vector<double>>>& vr, int h_k, int d,
            uint64_t seed) {
    const int page = 16, B = int(kr.size());
    int pages = 0, max_pages = 1;
    for (const auto& s : kr) {
      lens.push_back(int(s.size()));
      pages += (int(s.size()) + page - 1) / page;
      max_pages = std::max(max_pages, (int(s.size()) + page - 1) / page);
    }
    std::vector<int> order(static_cast<size_t>(pages));
    for (int i = 0; i < pages; ++i) order[size_t(i)] = i;
    strata_test::Rng rng(seed);
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.next_u32() % i]);
    c.dtype = att::Dtype::kBf16, c.h_k = h_k, c.d = d, c.page_size = page;
    c.num_pages = std::max(pages, 1), c.b = B, c.indexing = att::CacheIndexing::kBlockTable;
    c.max_pages = c.block_table_stride = max_pages;
    table.assign(size_t(B) * max_pages, 0);
    k.assign(size_t(c.num_pages) * page * h_k * d, strata::core::from_float<bf16>(NAN));
    v = k;
    c.k = att::nhd_cache(k.data(), page, h_k, d), c.v = att::nhd_cache(v.data(), page, h_k, d);
    size_t next = 0;
    for (int s = 0; s < B; ++s)
      for (int j = 0; j < (lens[size_t(s)] + page - 1) / page; ++j)
        table[size_t(s) * max_pages + size_t(j)] = order[next++];
    c.cache_seqlens = c.cache_seqlens_host = lens.data();
    c.block_table = c.block_table_host = table.data();
    for (int s = 0; s < B; ++s)
      for (int pos = 0; pos < lens[size_t(s)]; ++pos) {
        const int64_t slot = c.slot(s, pos);
        for (int i = 0; i < h_k * d; ++i) {
          k[size_t(slot) * h_k * d + size_t(i)] =
              strata::core::from_float<bf16>(float(kr[size_t(s)][size_t(pos)][size_t(i)]));
          v[size_t(slot) * h_k * d + size_t(i)] =
              strata::core::from_float<bf16>(float(vr[size_t(s)][size_t(pos)][size_t(i)]));
        }
      }
  }
};

/// Cascade decode: `B` sequences share a `prefix`-token prefix; sequence s then has suffix[s]
/// tokens of its own, its new token the last of them.
void check_cascade(int prefix, const std::vector<int>& suffix) {
  const int B = int(suffix.size()), h = 8, h_k = 2, d = 64, G = h / h_k;
  strata_test::Rng rng(uint64_t(prefix) * 31 + uint64_t(B));
  auto rows = [&](int n) {  // n rows of h_k d values, rounded to bf16 as the cache stores them
    std::vector<std::vector<double>> r(size_t(n), std::vector<double>(size_t(h_k) * d));
    for (auto& row : r)
      for (double& x : row)
        x = strata::core::to_float(strata::core::from_float<bf16>(2.f * rng.uniform()));
    return r;
  };
  const auto pk = rows(prefix), pv = rows(prefix);
  std::vector<std::vector<std::vector<double>>> sk, sv;
  for (int n : suffix) sk.push_back(rows(n)), sv.push_back(rows(n));
  PagedRows pre({pk}, {pv}, h_k, d, 3), own(sk, sv, h_k, d, 4);
  Vec<bf16> q(size_t(B) * h * d);
  for (auto& x : q) x = strata::core::from_float<bf16>(rng.uniform());
  const float scale = 0.125f;

  auto attention = [&](att::KvCache& c, std::vector<int>& cu, bool causal, Vec<bf16>& o,
                       Vec<float>& lse) {
    strata::api::PagedAttentionParams p;
    p.cache = c, p.q = q.data(), p.q_row_stride = h * d, p.q_head_stride = d;
    o.assign(size_t(B) * h * d, strata::core::from_float<bf16>(NAN));
    lse.assign(size_t(B) * h, NAN);
    p.o = o.data(), p.o_row_stride = h * d, p.o_head_stride = d, p.lse = lse.data();
    p.cu_seqlens_q = p.cu_seqlens_q_host = cu.data(), p.total_q = B;
    p.max_seqlen_q = cu.back() == B && cu.size() == 2 ? B : 1;
    p.h = h, p.softmax_scale = scale, p.is_causal = causal;
    return strata::api::paged_attention(p);
  };
  // the shared prefix: every sequence's query as one non-causal chunk, the prefix read once
  std::vector<int> cu_pre = {0, B}, cu_own;
  for (int s = 0; s <= B; ++s) cu_own.push_back(s);
  Vec<bf16> o_pre, o_own, o;
  Vec<float> l_pre, l_own, l;
  const strata::Status sp = attention(pre.c, cu_pre, false, o_pre, l_pre);
  ASSERT_TRUE(sp.ok()) << sp.message();
  ASSERT_TRUE(attention(own.c, cu_own, true, o_own, l_own).ok());
  MergeStatesParams m;
  m.dtype = att::Dtype::kBf16, m.total = B, m.h = h, m.d = d, m.num_states = 2;
  m.states[0] = {o_pre.data(), h * d, d, l_pre.data()};
  m.states[1] = {o_own.data(), h * d, d, l_own.data()};
  o.assign(o_pre.size(), strata::core::from_float<bf16>(NAN)), l.assign(l_pre.size(), NAN);
  m.o = o.data(), m.o_row_stride = h * d, m.o_head_stride = d, m.lse = l.data();
  ASSERT_TRUE(strata::api::merge_attention_states(m).ok());

  // fp64: each query over prefix + its suffix. The states are rounded to bf16 before the merge:
  // within 3 u of the largest |V| (two state roundings and the output's).
  const double u = std::ldexp(1.0, -8);
  for (int s = 0; s < B; ++s)
    for (int hh = 0; hh < h; ++hh) {
      const int kv = hh / G;
      std::vector<double> x;
      std::vector<const std::vector<double>*> vs;
      for (int j = 0; j < prefix + suffix[size_t(s)]; ++j) {
        const auto& kr = j < prefix ? pk[size_t(j)] : sk[size_t(s)][size_t(j - prefix)];
        vs.push_back(j < prefix ? &pv[size_t(j)] : &sv[size_t(s)][size_t(j - prefix)]);
        double dot = 0;
        for (int e = 0; e < d; ++e)
          dot += double(strata::core::to_float(q[(size_t(s) * h + hh) * d + e])) *
                 kr[size_t(kv) * d + size_t(e)];
        x.push_back(dot * scale);
      }
      const double mx = *std::max_element(x.begin(), x.end());
      double sum = 0;
      for (double& w : x) sum += (w = std::exp(w - mx));
      EXPECT_NEAR(l[size_t(hh) * B + s], mx + std::log(sum), 1e-4) << "seq " << s;
      for (int e = 0; e < d; ++e) {
        double want = 0;
        for (size_t j = 0; j < x.size(); ++j) want += x[j] / sum * (*vs[j])[size_t(kv) * d + e];
        EXPECT_NEAR(strata::core::to_float(o[(size_t(s) * h + hh) * d + e]), want, 3 * u * 2.0)
            << "seq " << s << " head " << hh << " e " << e;
      }
    }
}

TEST(MergeStates, CascadeSharedPrefixThenOwnSuffixIsTheFullAttention) {
  check_cascade(40, {1, 7, 20});  // a prefix of three pages, one partly filled
  check_cascade(2, {3, 1, 16});   // more queries than prefix tokens: no causal placement needed
}

TEST(MergeStatesValidation, EveryBadFieldIsNamed) {
  Vec<bf16> o(64 * 2 * 4);
  Vec<float> lse(8);
  MergeStatesParams good;
  good.dtype = att::Dtype::kBf16, good.total = 4, good.h = 2, good.d = 64, good.num_states = 2;
  good.states[0] = good.states[1] = {o.data(), 128, 64, lse.data()};
  good.o = o.data(), good.o_row_stride = 128, good.o_head_stride = 64;
  ASSERT_TRUE(strata::api::validate(good).ok());
  struct Bad {
    const char* needle;
    void (*spoil)(MergeStatesParams&);
  };
  const Bad bad[] = {
      {"num_states = 0", [](MergeStatesParams& p) { p.num_states = 0; }},
      {"num_states = 9: must be in [1, kMaxMergeStates = 8]",
       [](MergeStatesParams& p) { p.num_states = 9; }},
      {"states[1].o is null", [](MergeStatesParams& p) { p.states[1].o = nullptr; }},
      {"states[0].lse is null", [](MergeStatesParams& p) { p.states[0].lse = nullptr; }},
      {"states[1].o strides (64, 64) overlap",
       [](MergeStatesParams& p) { p.states[1].o_row_stride = 64; }},
      {"o is null", [](MergeStatesParams& p) { p.o = nullptr; }},
      {"h = 0", [](MergeStatesParams& p) { p.h = 0; }},
      {"total = -1", [](MergeStatesParams& p) { p.total = -1; }},
      {"d = 80", [](MergeStatesParams& p) { p.d = 80; }},
  };
  for (const Bad& b : bad) {
    MergeStatesParams p = good;
    b.spoil(p);
    const strata::Status s = strata::api::merge_attention_states(p);
    EXPECT_NE(std::string(s.message()).find(b.needle), std::string::npos)
        << "wanted \"" << b.needle << "\", got: " << s.message();
  }
}

}  // namespace
