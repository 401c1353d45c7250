// A ResFormer or SVFormer stack run through api::ValueResidualStack and checked against the fp64
// reference with FlashAttention's rule (shared by the tests and examples/layer_stack).
#pragma once

#include <strata/api/value_residual.hpp>
#include <strata/reference/value_residual.hpp>

#include <memory>
#include <string>
#include <vector>

#include "variant_check.hpp"

namespace kernel_test {

using strata::api::ValueResidualKind;
using strata::core::MixGranularity;

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
Verdict run_stack(const StackCase& sc,
                  const ForwardRun<strata::api::ValueResidualStack>& forward = {}) {
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
  std::vector<Vec<float>> ls(nL), lf(nL), dls(nL), dlf(nL);
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
  // the workspace as the API sizes it (dlambda partials, then V' from a 16-byte boundary)
  Vec<float> dv_first(size_t(nkv) + 1, NAN),
      work(
          strata::api::workspace_bytes(pr[0]->p, strata::api::ValueResidualArgs{}) / sizeof(float) +
              4,
          NAN);
  st.dv_first = dv_first.data(), st.workspace = work.data();
  st.workspace_bytes = work.size() * sizeof(float);
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
  v.status = forward_or_train(forward, st);
  if (!v.status.empty()) return v;

  const size_t nqo = size_t(nq * ac.num_heads * D);
  for (int l = 0; l < L; ++l) {
    const Problem<T>& P = *pr[size_t(l)];
    const std::string tag = "layer " + std::to_string(l) + " ";
    v.check(tag + "O", values(P.o, nqo), out64[size_t(l)].data, outn[size_t(l)].data, 1e-5);
    v.check(tag + "LSE", lse_rows(P.lse, nq, ac.num_heads), lse64[size_t(l)].data,
            lsen[size_t(l)].data, 1e-5);
    if (forward) continue;
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

}  // namespace kernel_test
