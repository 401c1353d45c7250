// ResFormer and SVFormer stacks (L >= 4) forward and backward in the simulator through
// api::ValueResidualStack, against the fp64 reference (strata/reference/value_residual.hpp) with
// FlashAttention's rule on every element of every layer's O, LSE, dQ, dK, dV, of dV_0 and of
// dlambda: max|kernel - ref64| <= 2 max|naive_same_dtype - ref64| + atol.
#include <gtest/gtest.h>

#include <strata/api/value_residual.hpp>
#include <strata/reference/value_residual.hpp>

#include <functional>
#include <memory>

#include "../sim/common.hpp"
#include "variant_check.hpp"

namespace {

using namespace kernel_test;
using strata::api::ValueResidualKind;
using strata::core::MixGranularity;
using bf16 = __nv_bfloat16;
using fp16 = __half;

struct StackCase {
  Case attn;  // lens_k must be empty (self-attention: V_0 has the keys' tokens)
  int layers = 4;
  ValueResidualKind kind = ValueResidualKind::kResFormer;
  MixGranularity granularity = MixGranularity::kScalar;
  std::string describe() const {
    return std::string(kind == ValueResidualKind::kResFormer ? "resformer" : "svformer") +
           (granularity == MixGranularity::kHeadwise ? " headwise" : " scalar") + " L " +
           std::to_string(layers) + " " + attn.describe();
  }
};

template <class T, int D>
Verdict run_stack(const StackCase& sc) {
  const int L = sc.layers;
  const size_t nL = static_cast<size_t>(L);
  const bool res = sc.kind == ValueResidualKind::kResFormer;
  const bool per_head = sc.granularity == MixGranularity::kHeadwise;
  std::vector<std::unique_ptr<Problem<T>>> pr;
  for (int l = 0; l < L; ++l) {
    Case c = sc.attn;
    c.seed = sc.attn.seed * 131 + uint64_t(l);
    pr.push_back(std::make_unique<Problem<T>>(c, D));
  }
  const ref::AttentionConfig& ac = pr[0]->c;
  const int Hk = ac.num_kv_heads;
  const int nlam = per_head ? Hk : 1;
  const int64_t nq = pr[0]->nq, nk = pr[0]->nk;
  const size_t nkv = size_t(nk * Hk * D);
  const double u = double(core::kUnitRoundoff<T>);

  // lambda per layer (fp32, exact in double); dlambda outputs poisoned
  Rng rng(sc.attn.seed + 7);
  std::vector<std::vector<float>> ls(nL), lf(nL), dls(nL), dlf(nL);
  for (int l = 1; l < L; ++l)
    for (int i = 0; i < nlam; ++i) {
      ls[size_t(l)].push_back(float(0.5 + 0.3 * rng.normal()));
      lf[size_t(l)].push_back(float(0.5 + 0.3 * rng.normal()));
      dls[size_t(l)].push_back(NAN);
      dlf[size_t(l)].push_back(NAN);
    }

  // fp64 reference
  std::vector<ref::Tensor> out64(nL), lse64(nL), dq64, dk64, dv64(nL), dls64(nL), dlf64(nL);
  std::vector<ref::Tensor> douts;
  for (int l = 0; l < L; ++l) douts.push_back(pr[size_t(l)]->dout);
  if (res) {
    ref::ResFormerConfig rc;
    rc.attn = ac, rc.num_layers = L;
    rc.granularity = per_head ? ref::LambdaGranularity::Head : ref::LambdaGranularity::Scalar;
    ref::ResFormerInputs in = ref::allocate_inputs(rc);
    for (int l = 0; l < L; ++l) {
      in.q[size_t(l)] = pr[size_t(l)]->q, in.k[size_t(l)] = pr[size_t(l)]->k;
      in.v[size_t(l)] = pr[size_t(l)]->v;
      for (int i = 0; l > 0 && i < nlam; ++i) {
        in.lambda_self[size_t(l)].data[size_t(i)] = ls[size_t(l)][size_t(i)];
        in.lambda_first[size_t(l)].data[size_t(i)] = lf[size_t(l)][size_t(i)];
      }
    }
    const ref::ResFormerForward f = ref::forward(rc, in);
    ref::ResFormerInputs g = ref::backward(rc, in, f, douts);
    out64 = f.out, lse64 = f.lse, dq64 = g.q, dk64 = g.k, dv64 = g.v;
    dls64 = g.lambda_self, dlf64 = g.lambda_first;
  } else {
    ref::SVFormerConfig vc;
    vc.attn = ac, vc.num_layers = L;
    ref::SVFormerInputs in = ref::allocate_inputs(vc);
    for (int l = 0; l < L; ++l)
      in.q[size_t(l)] = pr[size_t(l)]->q, in.k[size_t(l)] = pr[size_t(l)]->k;
    in.v0 = pr[0]->v;
    const ref::SVFormerForward f = ref::forward(vc, in);
    ref::SVFormerInputs g = ref::backward(vc, in, f, douts);
    out64 = f.out, lse64 = f.lse, dq64 = g.q, dk64 = g.k;
    dv64[0] = g.v0;
  }

  // naive same-dtype stack: V' rounded to T, each layer's unfused attention in T, the
  // cross-layer sums in double, gradients rounded to T
  std::vector<ref::Tensor> outn(nL), lsen(nL), dqn(nL), dkn(nL), dvn(nL);
  std::vector<std::vector<double>> dlsn(nL), dlfn(nL), dl_mag(nL);
  std::vector<double> acc(nkv, 0.0);
  std::vector<ref::Tensor> vmix(nL);
  for (int l = 0; l < L; ++l) {
    ref::Tensor vm = pr[0]->v;
    if (res && l > 0)
      for (int64_t t = 0; t < nk; ++t)
        for (int h = 0; h < Hk; ++h)
          for (int i = 0; i < D; ++i) {
            const int li = per_head ? h : 0;
            vm.row(t, h)[i] =
                round_to<T>(ls[size_t(l)][size_t(li)] * pr[size_t(l)]->v.row(t, h)[i] +
                            lf[size_t(l)][size_t(li)] * pr[0]->v.row(t, h)[i]);
          }
    vmix[size_t(l)] = vm;
    naive_attention<T>(ac, pr[size_t(l)]->q, pr[size_t(l)]->k, vm, outn[size_t(l)],
                       lsen[size_t(l)]);
  }
  for (int l = L - 1; l >= 0; --l) {
    ref::Tensor g;
    naive_backward<T>(ac, pr[size_t(l)]->q, pr[size_t(l)]->k, vmix[size_t(l)], pr[size_t(l)]->dout,
                      dqn[size_t(l)], dkn[size_t(l)], g);
    if (l == 0) {
      dvn[0] = g;
      for (size_t i = 0; i < nkv; ++i) dvn[0].data[i] = round_to<T>(g.data[i] + acc[i]);
      break;
    }
    if (!res) {
      for (size_t i = 0; i < nkv; ++i) acc[i] += g.data[i];
      continue;
    }
    dvn[size_t(l)] = g;
    dlsn[size_t(l)].assign(size_t(nlam), 0.0), dlfn[size_t(l)].assign(size_t(nlam), 0.0);
    dl_mag[size_t(l)].assign(size_t(nlam), 0.0);
    for (int64_t t = 0; t < nk; ++t)
      for (int h = 0; h < Hk; ++h)
        for (int i = 0; i < D; ++i) {
          const size_t x = size_t((t * Hk + h) * D + i);
          const int li = per_head ? h : 0;
          dvn[size_t(l)].data[x] = round_to<T>(ls[size_t(l)][size_t(li)] * g.data[x]);
          acc[x] += lf[size_t(l)][size_t(li)] * g.data[x];
          const double vl = pr[size_t(l)]->v.data[x], v0 = pr[0]->v.data[x];
          dlsn[size_t(l)][size_t(li)] += vl * g.data[x];
          dlfn[size_t(l)][size_t(li)] += v0 * g.data[x];
          dl_mag[size_t(l)][size_t(li)] += (std::fabs(vl) + std::fabs(v0)) * std::fabs(g.data[x]);
        }
  }

  // the kernels, through the stack helper
  strata::api::ValueResidualStack st;
  st.kind = sc.kind, st.granularity = sc.granularity;
  std::vector<float> dv_first(size_t(nkv) + 1, NAN), work(size_t(nk * Hk * 2) + 1, NAN);
  st.dv_first = dv_first.data(), st.workspace = work.data();
  for (int l = 0; l < L; ++l) {
    strata::api::ValueResidualLayer layer;
    layer.attn = pr[size_t(l)]->p;
    if (res && l > 0) {
      layer.lambda_self = ls[size_t(l)].data(), layer.lambda_first = lf[size_t(l)].data();
      layer.dlambda_self = dls[size_t(l)].data(), layer.dlambda_first = dlf[size_t(l)].data();
    }
    st.layers.push_back(layer);
  }
  Verdict v;
  if (const auto s = st.forward(); !s.ok()) v.status = std::string("forward: ") + s.message();
  if (const auto s = st.backward(); v.status.empty() && !s.ok())
    v.status = std::string("backward: ") + s.message();
  if (!v.status.empty()) return v;

  const size_t nqo = size_t(nq * ac.num_heads * D);
  for (int l = 0; l < L; ++l) {
    const Problem<T>& P = *pr[size_t(l)];
    const std::string tag = "layer " + std::to_string(l) + " ";
    v.check(tag + "O", values(P.o, nqo), out64[size_t(l)].data, outn[size_t(l)].data, 1e-5);
    v.check(tag + "LSE", lse_rows(P.lse, nq, ac.num_heads), lse64[size_t(l)].data,
            lsen[size_t(l)].data, 1e-5);
    v.check(tag + "dQ", values(P.dq, nqo), dq64[size_t(l)].data, dqn[size_t(l)].data,
            grad_atol(u, dq64[size_t(l)].data));
    v.check(tag + "dK", values(P.dk, nkv), dk64[size_t(l)].data, dkn[size_t(l)].data,
            grad_atol(u, dk64[size_t(l)].data));
    if (l == 0 || res)
      v.check(tag + "dV", values(P.dv, nkv), dv64[size_t(l)].data, dvn[size_t(l)].data,
              grad_atol(u, dv64[size_t(l)].data));
    if (!res && l > 0)  // SVFormer layers l >= 1 have no dV: their buffer stays poisoned
      for (size_t i = 0; i < nkv; ++i)
        if (!std::isnan(core::to_float(P.dv[i]))) v.where = tag + "dV written", v.nan = true;
    if (res && l > 0)
      for (int i = 0; i < nlam; ++i) {
        // a sum over every element: atol is one unit roundoff of the sum of magnitudes
        const double atol = u * dl_mag[size_t(l)][size_t(i)] + 1e-5;
        v.check(tag + "dlambda_self", {double(dls[size_t(l)][size_t(i)])},
                {dls64[size_t(l)].data[size_t(i)]}, {dlsn[size_t(l)][size_t(i)]}, atol);
        v.check(tag + "dlambda_first", {double(dlf[size_t(l)][size_t(i)])},
                {dlf64[size_t(l)].data[size_t(i)]}, {dlfn[size_t(l)][size_t(i)]}, atol);
      }
  }
  return v;
}

template <class T>
void expect_stack(const StackCase& sc) {
  const Verdict v =
      with_head_dim<T>(sc.attn, [&]<class U, int D>(const Case&) { return run_stack<U, D>(sc); });
  if (getenv("STRATA_VERBOSE"))
    printf("%s: worst %.3f at %s\n", sc.describe().c_str(), v.worst, v.where.c_str());
  EXPECT_TRUE(v.pass()) << sc.describe() << ": worst ratio " << v.worst << " at " << v.where << " "
                        << v.status;
}

StackCase stack_case(ValueResidualKind kind, MixGranularity g, std::vector<int> lens, int h,
                     int h_k, int d, bool causal) {
  StackCase sc;
  sc.kind = kind, sc.granularity = g;
  sc.attn.lens_q = std::move(lens);
  sc.attn.h = h, sc.attn.h_k = h_k, sc.attn.d = d, sc.attn.causal = causal;
  return sc;
}

TEST(ResFormer, StackLengthsOneSeventeenAndRaggedTiles) {
  for (bool causal : {true, false})
    expect_stack<bf16>(stack_case(ValueResidualKind::kResFormer, MixGranularity::kScalar,
                                  {1, 17, 129}, 2, 1, 64, causal));
}

TEST(ResFormer, HeadwiseLambdaGqaDimsDtypes) {
  expect_stack<fp16>(stack_case(ValueResidualKind::kResFormer, MixGranularity::kHeadwise,
                                {17, 0, 70}, 4, 2, 128, true));
  expect_stack<bf16>(stack_case(ValueResidualKind::kResFormer, MixGranularity::kHeadwise, {40, 33},
                                4, 1, 96, false));
  StackCase sc =
      stack_case(ValueResidualKind::kResFormer, MixGranularity::kScalar, {65, 1}, 4, 4, 64, true);
  sc.attn.window_left = 9;
  expect_stack<fp16>(sc);
}

TEST(SVFormer, StackSharesLayerZerosValue) {
  expect_stack<bf16>(stack_case(ValueResidualKind::kSVFormer, MixGranularity::kScalar, {1, 17, 129},
                                4, 2, 64, true));
  expect_stack<fp16>(
      stack_case(ValueResidualKind::kSVFormer, MixGranularity::kScalar, {50, 0}, 4, 1, 128, false));
}

TEST(ValueResidual, AllSchedules) {
  strata_test::SimGuard guard;
  for (const auto& s : strata_test::all_schedules()) {
    strata::sim::set_schedule(s);
    expect_stack<bf16>(stack_case(ValueResidualKind::kResFormer, MixGranularity::kHeadwise, {20, 9},
                                  4, 2, 64, true));
  }
}

TEST(ValueResidual, RandomizedStacks) {
  // seeded random valid stacks per method: 1-3 sequences (some empty), GQA 1/2/4, any head dim,
  // causal or not, a window or not, 4-6 layers, either dtype
  Rng rng(777);
  for (int i = 0; i < 24; ++i) {
    bool bf16_case = true;
    Case c = random_case(rng, 40, uint64_t(500 + i), bf16_case);
    c.lens_k.clear();
    if (!c.varlen) c.lens_q.assign(c.lens_q.size(), c.lens_q[0]);
    StackCase sc;
    sc.attn = c;
    sc.layers = 4 + i % 3;
    sc.kind = i % 2 ? ValueResidualKind::kSVFormer : ValueResidualKind::kResFormer;
    sc.granularity = i % 4 < 2 ? MixGranularity::kScalar : MixGranularity::kHeadwise;
    if (bf16_case)
      expect_stack<bf16>(sc);
    else
      expect_stack<fp16>(sc);
  }
}

// ---- validation: every field, a clear Status naming it, and nothing written -----------------

struct ApiFixture {
  static constexpr int L = 4;
  std::vector<std::unique_ptr<Problem<bf16>>> pr;
  std::vector<float> ls, lf, dls, dlf, dv_first, work;
  strata::api::ValueResidualStack st;
  ApiFixture() {
    for (int l = 0; l < L; ++l) {
      Case c = fixed_case(20, 1, 4, 2, 64, true);
      c.seed = uint64_t(l + 3);
      pr.push_back(std::make_unique<Problem<bf16>>(c, 64));
    }
    ls.assign(2, 0.5f), lf.assign(2, 0.5f), dls.assign(2, NAN), dlf.assign(2, NAN);
    dv_first.assign(size_t(20 * 2 * 64), NAN), work.assign(size_t(20 * 2 * 2), NAN);
    st.kind = ValueResidualKind::kResFormer;
    st.granularity = MixGranularity::kHeadwise;
    st.dv_first = dv_first.data(), st.workspace = work.data();
    for (int l = 0; l < L; ++l) {
      strata::api::ValueResidualLayer layer;
      layer.attn = pr[size_t(l)]->p;
      layer.lambda_self = ls.data(), layer.lambda_first = lf.data();
      layer.dlambda_self = dls.data(), layer.dlambda_first = dlf.data();
      st.layers.push_back(layer);
    }
  }
  /// Every output of every layer still holds its NaN poison.
  bool untouched() const {
    auto nan_bf16 = [](const std::vector<bf16>& x) {
      for (bf16 y : x)
        if (!std::isnan(core::to_float(y))) return false;
      return true;
    };
    auto nan_f32 = [](const std::vector<float>& x) {
      for (float y : x)
        if (!std::isnan(y)) return false;
      return true;
    };
    for (const auto& p : pr)
      if (!nan_bf16(p->o) || !nan_bf16(p->dq) || !nan_bf16(p->dk) || !nan_bf16(p->dv) ||
          !nan_f32(p->lse))
        return false;
    return nan_f32(dls) && nan_f32(dlf) && nan_f32(dv_first) && nan_f32(work);
  }
};

TEST(ValueResidualApi, EveryFieldIsValidatedAndNothingIsWritten) {
  using Stack = strata::api::ValueResidualStack;
  struct Bad {
    const char* field;
    bool backward;
    std::function<void(Stack&)> spoil;
  };
  const std::vector<Bad> bad = {
      {"layers is empty", false, [](Stack& s) { s.layers.clear(); }},
      {"v is null", false, [](Stack& s) { s.layers[0].attn.v = nullptr; }},  // V_0 of the stack
      {"lambda_self", false, [](Stack& s) { s.layers[2].lambda_self = nullptr; }},
      {"lambda_first", false, [](Stack& s) { s.layers[3].lambda_first = nullptr; }},
      {"granularity", false, [](Stack& s) { s.granularity = MixGranularity::kElementwise; }},
      {"total_k, h_k, d and dtype", false, [](Stack& s) { s.layers[1].attn.d = 128; }},
      {"h_k", false, [](Stack& s) { s.layers[3].attn.h_k = 3; }},
      {"dv_first", true, [](Stack& s) { s.dv_first = nullptr; }},
      {"dlambda_self", true, [](Stack& s) { s.layers[1].dlambda_self = nullptr; }},
      {"dlambda_first", true, [](Stack& s) { s.layers[3].dlambda_first = nullptr; }},
      {"workspace", true, [](Stack& s) { s.workspace = nullptr; }},
      {"dq", true, [](Stack& s) { s.layers[2].attn.dq = nullptr; }},
      {"dsum", true, [](Stack& s) { s.layers[0].attn.dsum = nullptr; }},
  };
  for (const Bad& b : bad) {
    ApiFixture f;
    b.spoil(f.st);
    const strata::Status s = b.backward ? f.st.backward() : f.st.forward();
    EXPECT_FALSE(s.ok()) << b.field;
    EXPECT_NE(std::string(s.message()).find(b.field), std::string::npos)
        << b.field << ": " << s.message();
    EXPECT_TRUE(f.untouched()) << b.field;
  }
}

TEST(ValueResidualApi, PerLayerEntryPointsValidateToo) {
  ApiFixture f;
  strata::api::ValueResidualArgs a = f.st.layer_args(1);
  a.v_first = static_cast<const char*>(a.v_first) + 2;  // misaligned
  strata::Status s = strata::api::resformer_forward(f.st.layers[1].attn, a);
  EXPECT_NE(std::string(s.message()).find("v_first is not 16-byte aligned"), std::string::npos)
      << s.message();
  a = f.st.layer_args(1);
  a.v_first_row_stride = 12;
  s = strata::api::resformer_backward(f.st.layers[1].attn, a);
  EXPECT_NE(std::string(s.message()).find("v_first_row_stride"), std::string::npos) << s.message();
  s = strata::api::svformer_backward(f.st.layers[1].attn, nullptr);
  EXPECT_NE(std::string(s.message()).find("dv_first"), std::string::npos) << s.message();
  EXPECT_TRUE(f.untouched());
}

}  // namespace
