// The variant hook concept (attention/variant.hpp): the conformance check at compile time, the
// vanilla hooks on the host, and a policy that uses every kind of hook — transformed logits with
// their derivative, a V tile transformed on load, an output epilogue that reduces over the row,
// and a dV store applying the load's chain rule — run through the forward and backward kernels
// in the simulator against an fp64 model of the same math, with FlashAttention's rule.
#include <gtest/gtest.h>

#include <cmath>
#include <type_traits>

#include "../sim/common.hpp"
#include "flash_harness.hpp"

namespace {

using namespace kernel_test;
using att::FlashBwdParams;
using att::FlashFwdParams;
using att::RowSite;
using att::TileSite;
using att::VanillaAttention;
using bf16 = __nv_bfloat16;
using fp16 = __half;

/// Soft-capped logits (cap tanh(x / cap), Gemma 2's), V' = v_scale V formed while the V tile is
/// loaded (plain loads and stores instead of cp.async), the L2 norm of every output row written
/// by the epilogue after a quad reduction, and dV = v_scale dV' in the dK/dV store.
struct CappedScaledV : VanillaAttention {
  static constexpr bool kTransformsLogits = true;
  float cap = 5.f;
  float v_scale = 0.5f;     // a power of two: V' is exact in T, so the model sees the same V'
  float* o_norm = nullptr;  // [total_q, h]

  STRATA_HOST_DEVICE float logit(float x, int, int, int) const { return cap * tanhf(x / cap); }
  STRATA_HOST_DEVICE float logit_grad(float x, int, int, int) const {
    const float t = tanhf(x / cap);
    return 1.f - t * t;
  }

  template <int D, int Threads, class T>
  STRATA_DEVICE void load_v(T* dst, int ld, const FlashFwdParams& p, const TileSite& s, int nrows,
                            int tid) const {
    const T* v = att::head_rows(static_cast<const T*>(p.v), s.sb.k_begin, p.v_row_stride, s.h_k,
                                p.v_head_stride);
    for (int e = tid; e < nrows * D; e += Threads) {
      const int r = e / D, c = e % D, row = s.row0 + r;
      const float x = row < s.sb.tk ? core::to_float(v[int64_t(row) * p.v_row_stride + c]) : 0.f;
      dst[r * ld + c] = core::from_float<T>(v_scale * x);
    }
  }

  template <class T, int N, class Sum>
  STRATA_HOST_DEVICE void store_o(const float (&o)[N], const FlashFwdParams& p, const RowSite& r,
                                  Sum sum) const {
    float sq = 0.f;
    for (int j = 0; j < N; ++j) sq += o[j] * o[j];
    sq = sum(sq);  // every lane of the quad calls it, valid row or not
    VanillaAttention::store_o<T>(o, p, r, sum);
    if (r.valid && r.col0 == 0) o_norm[r.token * p.h + r.head] = std::sqrt(sq);
  }

  template <class T, int N, class Sum>
  STRATA_HOST_DEVICE void store_dk_dv(const float (&dk)[N], const float (&dv)[N],
                                      const FlashBwdParams& p, const RowSite& r, Sum sum) const {
    float dv_scaled[N];
    for (int j = 0; j < N; ++j) dv_scaled[j] = v_scale * dv[j];
    VanillaAttention::store_dk_dv<T>(dk, dv_scaled, p, r, sum);
  }
};

// ---- compile-time conformance -------------------------------------------------------------

struct MissesLogitGrad : VanillaAttention {
  STRATA_HOST_DEVICE float logit_grad(float, int, int) const { return 1.f; }  // wrong arity
};
struct NotTriviallyCopyable : VanillaAttention {
  NotTriviallyCopyable() = default;
  NotTriviallyCopyable(const NotTriviallyCopyable&) {}
};
struct ThreeRawVTiles : VanillaAttention {
  static constexpr int kRawVTiles = 3;  // the kernels give a second raw tile, not a third
};
struct LogitReturnsDouble : VanillaAttention {
  STRATA_HOST_DEVICE double logit(float x, int, int, int) const { return x; }
};

static_assert(att::AttentionVariant<VanillaAttention, bf16, 64>);
static_assert(att::AttentionVariant<VanillaAttention, fp16, 96>);
static_assert(att::AttentionVariant<VanillaAttention, bf16, 128>);
static_assert(att::AttentionVariant<CappedScaledV, bf16, 64>);
static_assert(att::AttentionVariant<CappedScaledV, fp16, 128>);
static_assert(!att::AttentionVariant<MissesLogitGrad, bf16, 64>);
static_assert(!att::AttentionVariant<NotTriviallyCopyable, bf16, 64>);
static_assert(!att::AttentionVariant<LogitReturnsDouble, bf16, 64>);
static_assert(!att::AttentionVariant<ThreeRawVTiles, bf16, 64>);

TEST(VariantConcept, AcceptsConformingAndRejectsBrokenPolicies) {
  // the static_asserts above are the test; this repeats them where a reader of the log sees them
  EXPECT_TRUE((att::AttentionVariant<CappedScaledV, bf16, 96>));
  EXPECT_FALSE((att::AttentionVariant<MissesLogitGrad, fp16, 96>));
  EXPECT_FALSE((att::AttentionVariant<NotTriviallyCopyable, fp16, 96>));
  EXPECT_FALSE((att::AttentionVariant<LogitReturnsDouble, fp16, 96>));
}

// ---- the vanilla hooks on the host ----------------------------------------------------------

TEST(VanillaHooks, RowSiteColumnsCoverTheRowOnceOverAQuad) {
  for (int d : {64, 96, 128}) {
    std::vector<int> hits(size_t(d), 0);
    for (int lane = 0; lane < 4; ++lane) {
      int r, col0;
      strata::arch::mma_c_coord(lane, 0, r, col0);
      const RowSite rs{0, 0, col0, true};
      for (int j = 0; j < d / 4; ++j) ++hits[size_t(rs.col(j))];
    }
    for (int c = 0; c < d; ++c) EXPECT_EQ(hits[size_t(c)], 1) << "d " << d << " column " << c;
  }
}

TEST(VanillaHooks, StoresWriteTheirRowOnlyAndNothingWhenInvalid) {
  constexpr int D = 64, N = D / 4, H = 3, rows = 4;
  std::vector<bf16> o(size_t(rows * H * D), core::from_float<bf16>(NAN));
  FlashBwdParams p;
  p.o = o.data(), p.dq = o.data(), p.h = H;
  p.o_row_stride = p.dq_row_stride = H * D, p.o_head_stride = p.dq_head_stride = D;
  const VanillaAttention v;
  for (int lane = 0; lane < 4; ++lane) {
    float frag[N];
    const RowSite rs{2, 1, 2 * lane, true};
    for (int j = 0; j < N; ++j) frag[j] = float(rs.col(j));
    v.store_o<bf16>(frag, p, rs, core::LocalSum{});
    const RowSite invalid{3, 1, 2 * lane, false};
    v.store_dq<bf16>(frag, p, invalid, core::LocalSum{});
  }
  for (int t = 0; t < rows; ++t)
    for (int h = 0; h < H; ++h)
      for (int c = 0; c < D; ++c) {
        const float x = core::to_float(o[size_t((t * H + h) * D + c)]);
        if (t == 2 && h == 1)
          EXPECT_EQ(x, float(c));
        else
          EXPECT_TRUE(std::isnan(x)) << t << ' ' << h << ' ' << c;
      }
}

TEST(VanillaHooks, DkDvStoreUsesEachOperandsStrides) {
  constexpr int D = 64, N = D / 4;
  std::vector<fp16> dk(size_t(2 * 2 * D), core::from_float<fp16>(0.f)),
      dv(size_t(2 * 4 * D), core::from_float<fp16>(0.f));
  FlashBwdParams p;
  p.dk = dk.data(), p.dv = dv.data();
  p.dk_row_stride = 2 * D, p.dk_head_stride = D;  // [2 rows, 2 heads, D]
  p.dv_row_stride = D, p.dv_head_stride = 2 * D;  // head-major: [heads, 2 rows, D]
  float a[N], b[N];
  for (int j = 0; j < N; ++j) a[j] = 1.f + float(j), b[j] = -1.f - float(j);
  VanillaAttention{}.store_dk_dv<fp16>(a, b, p, RowSite{1, 1, 0, true}, core::LocalSum{});
  const RowSite rs{1, 1, 0, true};
  for (int j = 0; j < N; ++j) {
    EXPECT_EQ(core::to_float(dk[size_t(1 * 2 * D + 1 * D + rs.col(j))]), a[j]);
    EXPECT_EQ(core::to_float(dv[size_t(1 * D + 1 * 2 * D + rs.col(j))]), b[j]);
  }
}

TEST(VanillaHooks, MaskLogitsAndPreprocess) {
  FlashBwdParams p;
  p.is_causal = true, p.window_left = 7;
  const att::SeqBounds sb{0, 30, 0, 40};
  const att::Mask m = VanillaAttention{}.mask(p, sb);
  EXPECT_EQ(m.tq, 30);
  EXPECT_EQ(m.tk, 40);
  EXPECT_TRUE(m.causal);
  EXPECT_EQ(m.window_left, 7);
  EXPECT_EQ(VanillaAttention{}.logit(-3.25f, 1, 2, 0), -3.25f);
  EXPECT_EQ(VanillaAttention{}.logit_grad(-3.25f, 1, 2, 0), 1.f);

  constexpr int D = 96;
  std::vector<bf16> o(size_t(2 * 2 * D)), d_o(size_t(2 * 2 * D));
  double want = 0;
  for (size_t i = 0; i < o.size(); ++i) {
    o[i] = core::from_float<bf16>(float(i % 7) - 3.f);
    d_o[i] = core::from_float<bf16>(0.25f * float(i % 5));
  }
  for (int e = 0; e < D; ++e)
    want += double(core::to_float(o[size_t(3 * D + e)])) * core::to_float(d_o[size_t(3 * D + e)]);
  p.o = o.data(), p.dout = d_o.data();
  p.o_row_stride = p.do_row_stride = 2 * D, p.o_head_stride = p.do_head_stride = D;
  EXPECT_EQ(double(VanillaAttention{}.preprocess<bf16, D>(p, 1, 1)), want);
}

TEST(CappedScaledVHooks, LogitDerivativeMatchesFiniteDifferences) {
  const CappedScaledV v;
  for (float x : {-40.f, -3.f, -0.1f, 0.f, 0.7f, 4.f, 12.f}) {
    const double h = 1e-3;
    const double fd =
        (double(v.cap) * std::tanh((x + h) / v.cap) - double(v.cap) * std::tanh((x - h) / v.cap)) /
        (2 * h);
    EXPECT_NEAR(v.logit_grad(x, 0, 0, 0), fd, 1e-5) << x;
    EXPECT_NEAR(v.logit(x, 0, 0, 0), v.cap * std::tanh(x / v.cap), 1e-5);
  }
}

// ---- the kernels with CappedScaledV against an fp64 model -----------------------------------

/// The variant's attention, forward and backward, in double with an optional rounding to the
/// storage type after every step a framework would materialise (S, the capped logits, P, O, dP,
/// dS and the gradients): `round` = identity is the fp64 reference, round_to<T> the naive
/// same-dtype computation of FlashAttention's rule.
struct Model {
  ref::Tensor o, lse, norm, dq, dk, dv;
};
template <class Round>
Model capped_model(const ref::AttentionConfig& c, const ref::Tensor& q, const ref::Tensor& k,
                   const ref::Tensor& v, const ref::Tensor& dout, const CappedScaledV& var,
                   Round round) {
  const int H = c.num_heads, d = c.head_dim, G = c.group_size();
  const double scale = c.scale(), cap = var.cap;
  Model m;
  m.o = ref::Tensor({c.num_tokens_q(), H, d});
  m.lse = ref::Tensor({c.num_tokens_q(), H});
  m.norm = ref::Tensor({c.num_tokens_q(), H});
  m.dq = ref::Tensor({c.num_tokens_q(), H, d});
  m.dk = ref::Tensor({c.num_tokens_k(), c.num_kv_heads, d});
  m.dv = ref::Tensor({c.num_tokens_k(), c.num_kv_heads, d});
  for (int b = 0; b < c.num_sequences(); ++b) {
    const int64_t q0 = c.cu_seqlens_q[size_t(b)], k0 = c.cu_seqlens_k[size_t(b)];
    const int tq = int(c.cu_seqlens_q[size_t(b) + 1] - q0),
              tk = int(c.cu_seqlens_k[size_t(b) + 1] - k0);
    const att::Mask mask{tq, tk, c.causal, c.window_left};
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < tq; ++i) {
        const double* qi = q.row(q0 + i, h);
        const double* doi = dout.row(q0 + i, h);
        const size_t n = static_cast<size_t>(tk);
        std::vector<double> x(n), z(n, -INFINITY), p(n, 0.0), dp(n, 0.0);
        double mx = -INFINITY;
        for (int j = 0; j < tk; ++j) {
          if (!mask.connected(i, j)) continue;
          double dot = 0;
          for (int e = 0; e < d; ++e) dot += qi[e] * k.row(k0 + j, h / G)[e];
          x[size_t(j)] = round(dot * scale);
          z[size_t(j)] = round(cap * std::tanh(x[size_t(j)] / cap));
          mx = std::max(mx, z[size_t(j)]);
        }
        double l = 0;
        for (int j = 0; j < tk; ++j)
          if (z[size_t(j)] != -INFINITY) l += std::exp(z[size_t(j)] - mx);
        m.lse.data[size_t((q0 + i) * H + h)] = l > 0 ? mx + std::log(l) : -INFINITY;
        double dsum = 0;
        for (int j = 0; j < tk; ++j) {
          if (z[size_t(j)] == -INFINITY) continue;
          p[size_t(j)] = round(std::exp(z[size_t(j)] - mx) / l);
          double dot = 0;
          for (int e = 0; e < d; ++e) dot += doi[e] * var.v_scale * v.row(k0 + j, h / G)[e];
          dp[size_t(j)] = round(dot);
          dsum += p[size_t(j)] * dp[size_t(j)];
        }
        double sq = 0;
        for (int e = 0; e < d; ++e) {
          double acc = 0;
          for (int j = 0; j < tk; ++j) acc += p[size_t(j)] * var.v_scale * v.row(k0 + j, h / G)[e];
          m.o.row(q0 + i, h)[e] = round(acc);
          sq += acc * acc;
        }
        m.norm.data[size_t((q0 + i) * H + h)] = std::sqrt(sq);
        for (int j = 0; j < tk; ++j) {
          if (z[size_t(j)] == -INFINITY) continue;
          const double t = std::tanh(x[size_t(j)] / cap);
          const double dx = round(p[size_t(j)] * (dp[size_t(j)] - dsum)) * (1 - t * t);
          for (int e = 0; e < d; ++e) {
            m.dq.row(q0 + i, h)[e] += dx * scale * k.row(k0 + j, h / G)[e];
            m.dk.row(k0 + j, h / G)[e] += dx * scale * qi[e];
            m.dv.row(k0 + j, h / G)[e] += var.v_scale * p[size_t(j)] * doi[e];
          }
        }
      }
  }
  for (ref::Tensor* t : {&m.dq, &m.dk, &m.dv})
    for (double& y : t->data) y = round(y);
  return m;
}

struct VariantErrors {
  // O, LSE, dQ, dK, dV
  double kernel[5] = {}, naive[5] = {}, atol[5] = {1e-5, 1e-5, 1e-5, 1e-5, 1e-5};
  double norm_err = 0, norm_tol = 0;
  bool nan = false, inf_mismatch = false;
  std::string status;
  bool pass() const {
    if (!status.empty() || nan || inf_mismatch || norm_err > norm_tol) return false;
    for (int i = 0; i < 5; ++i)
      if (!std::isfinite(naive[i]) || kernel[i] > 2 * naive[i] + atol[i]) return false;
    return true;
  }
  std::string describe() const {
    const char* names[5] = {"O", "LSE", "dQ", "dK", "dV"};
    std::string s = status;
    for (int i = 0; i < 5; ++i)
      s += std::string(" ") + names[i] + " " + std::to_string(kernel[i]) + " (naive " +
           std::to_string(naive[i]) + ")";
    return s + " norm " + std::to_string(norm_err) + " / " + std::to_string(norm_tol) +
           (nan ? " NaN" : "") + (inf_mismatch ? " inf mismatch" : "");
  }
};

template <class T, int D>
VariantErrors run_capped(const Case& cs) {
  Problem<T> pr(cs, D);
  CappedScaledV var;
  std::vector<float> norm(size_t(pr.nq * cs.h) + 1, NAN);
  var.o_norm = norm.data();
  const Model want = capped_model(pr.c, pr.q, pr.k, pr.v, pr.dout, var, [](double x) { return x; });
  const Model naive =
      capped_model(pr.c, pr.q, pr.k, pr.v, pr.dout, var, [](double x) { return round_to<T>(x); });
  VariantErrors e;
  if (const auto st = strata::api::flash_fwd(pr.p, var); !st.ok()) e.status = st.message();
  if (const auto st = strata::api::flash_bwd(pr.p, var); e.status.empty() && !st.ok())
    e.status = st.message();
  if (!e.status.empty()) return e;

  const std::vector<T>* got[5] = {&pr.o, nullptr, &pr.dq, &pr.dk, &pr.dv};
  const ref::Tensor* ref64[5] = {&want.o, &want.lse, &want.dq, &want.dk, &want.dv};
  const ref::Tensor* refn[5] = {&naive.o, &naive.lse, &naive.dq, &naive.dk, &naive.dv};
  for (int g = 2; g < 5; ++g) {  // gradients: one unit roundoff at their scale, as in flash tests
    double mag = 0;
    for (double x : ref64[g]->data) mag = std::max(mag, std::fabs(x));
    e.atol[g] = double(core::kUnitRoundoff<T>) * mag + 1e-5;
  }
  for (int g = 0; g < 5; ++g)
    for (size_t x = 0; x < ref64[g]->data.size(); ++x) {
      double kv;
      if (g == 1) {  // LSE is [h, total_q]
        const size_t t = x / size_t(cs.h), hh = x % size_t(cs.h);
        kv = pr.lse[hh * size_t(pr.nq) + t];
        if (std::isinf(kv) || std::isinf(ref64[g]->data[x])) {
          if (kv != ref64[g]->data[x]) e.inf_mismatch = true;
          continue;
        }
      } else {
        kv = double(core::to_float((*got[g])[x]));
      }
      if (std::isnan(kv)) e.nan = true;
      e.kernel[g] = std::max(e.kernel[g], std::fabs(kv - ref64[g]->data[x]));
      e.naive[g] = std::max(e.naive[g], std::fabs(refn[g]->data[x] - ref64[g]->data[x]));
    }
  // the epilogue's norm is of the fp32 row, the stored O is that row rounded: they differ by at
  // most one unit roundoff of the norm (a wrong reduction or column map is off by far more)
  for (int64_t t = 0; t < pr.nq; ++t)
    for (int hh = 0; hh < cs.h; ++hh) {
      double sq = 0;
      for (int c = 0; c < D; ++c) {
        const double x = core::to_float(pr.o[size_t((t * cs.h + hh) * D + c)]);
        sq += x * x;
      }
      const double got_norm = norm[size_t(t * cs.h + hh)];
      if (std::isnan(got_norm)) e.nan = true;
      e.norm_err = std::max(e.norm_err, std::fabs(got_norm - std::sqrt(sq)));
      e.norm_tol = std::max(e.norm_tol, 1.01 * double(core::kUnitRoundoff<T>) * std::sqrt(sq));
    }
  e.norm_tol += 1e-6;
  return e;
}

/// The case with the backward in the deterministic and in the fast mode (the hooks are the same;
/// the fast mode's dQ reaches store_dq through its convert kernel).
template <class T>
void expect_capped(Case c) {
  for (bool deterministic : {true, false}) {
    c.deterministic = deterministic;
    const VariantErrors e =
        with_head_dim<T>(c, []<class U, int D>(const Case& x) { return run_capped<U, D>(x); });
    if (getenv("STRATA_VERBOSE")) printf("%s:%s\n", c.describe().c_str(), e.describe().c_str());
    EXPECT_TRUE(e.pass()) << c.describe() << ":" << e.describe();
  }
}

TEST(VariantKernels, CappedScaledVLengthsAndMasks) {
  for (int len : {1, 17, 129})
    for (bool causal : {false, true}) expect_capped<bf16>(fixed_case(len, 1, 2, 1, 64, causal));
}

TEST(VariantKernels, CappedScaledVHeadDimsDtypesGqa) {
  expect_capped<fp16>(fixed_case(70, 1, 4, 1, 96, true));
  expect_capped<bf16>(fixed_case(70, 2, 4, 2, 128, false));
  Case c;
  c.lens_q = {33, 0, 70};
  c.lens_k = {40, 9, 70};
  c.h = 4, c.h_k = 2, c.d = 64, c.causal = true, c.window_left = 12;
  expect_capped<fp16>(c);
}

TEST(VariantKernels, CappedScaledVLargeLogitsSaturateTheCap) {
  Case c = fixed_case(60, 1, 2, 1, 64, false);
  c.spread = 30.0;  // logits of ~1e3: tanh saturates, the cap bounds them, gradients vanish
  expect_capped<bf16>(c);
}

TEST(VariantKernels, CappedScaledVAllSchedules) {
  strata_test::SimGuard guard;
  Case c;
  c.lens_q = {40, 3};
  c.h = 2, c.h_k = 1, c.d = 64, c.causal = true;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    expect_capped<bf16>(c);
  }
}

}  // namespace
