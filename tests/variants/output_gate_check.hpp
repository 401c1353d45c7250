// Gated Attention layers run through api::gated_forward / gated_backward and checked against the
// fp64 reference with FlashAttention's rule (shared by the tests and examples/layer_stack).
#pragma once

#include <strata/api/output_gate.hpp>
#include <strata/reference/gated.hpp>

#include <string>
#include <vector>

#include "variant_check.hpp"

namespace kernel_test {

using strata::core::GateKind;

struct GateCase {
  Case attn;  // self-attention: lens_k empty
  int layers = 4;
  GateKind kind = GateKind::kElementwise;
  double gate_spread = 2.0;  // gate logits ~ N(0, spread): some gates nearly closed
  std::string describe() const {
    return std::string(kind == GateKind::kHeadwise ? "headwise" : "elementwise") + " L " +
           std::to_string(layers) + " " + attn.describe();
  }
};

template <class T, int D>
Verdict run_gated(const GateCase& gc) {
  const int L = gc.layers;
  const bool headwise = gc.kind == GateKind::kHeadwise;
  Verdict v;
  for (int l = 0; l < L; ++l) {
    Case c = gc.attn;
    c.seed = gc.attn.seed * 71 + uint64_t(l);
    Problem<T> pr(c, D);
    const ref::AttentionConfig& ac = pr.c;
    const int H = ac.num_heads;
    const int64_t nq = pr.nq;
    const size_t nrow = size_t(nq * H), nel = nrow * D, ng = headwise ? nrow : nel;

    // gate logits as stored in T
    Rng rng(c.seed + 99);
    std::vector<T> gs(ng), dgs(ng + 8, core::from_float<T>(NAN));
    std::vector<T> work(nel + 8, core::from_float<T>(NAN));
    ref::GatedConfig rc;
    rc.attn = ac, rc.num_layers = 1;
    rc.gate = headwise ? ref::GateKind::Headwise : ref::GateKind::Elementwise;
    rc.local.qk_norm = rc.local.rope = false;
    ref::GatedInputs in = ref::allocate_inputs(rc);
    in.q[0] = pr.q, in.k[0] = pr.k, in.v[0] = pr.v;
    for (size_t i = 0; i < ng; ++i) {
      gs[i] = core::from_float<T>(float(gc.gate_spread * rng.normal()));
      in.g[0].data[i] = core::to_float(gs[i]);
    }
    const ref::GatedForward f = ref::forward(rc, in);
    const ref::GatedInputs g64 = ref::backward(rc, in, f, {pr.dout});

    // naive same-dtype: Y and y' rounded, dO = dy' sigma(g) rounded, unfused backward in T
    ref::Tensor yn, lsen, dqn, dkn, dvn;
    naive_attention<T>(ac, pr.q, pr.k, pr.v, yn, lsen);
    ref::Tensor yg = yn, dOn = pr.dout;
    std::vector<double> dgn(ng, 0.0);
    for (size_t e = 0; e < nel; ++e) {
      const size_t gi = headwise ? e / D : e;
      const double sg = 1.0 / (1.0 + std::exp(-in.g[0].data[gi]));
      yg.data[e] = round_to<T>(yn.data[e] * sg);
      dOn.data[e] = round_to<T>(pr.dout.data[e] * sg);
      dgn[gi] += pr.dout.data[e] * yn.data[e] * sg * (1 - sg);
    }
    for (double& x : dgn) x = round_to<T>(x);
    naive_backward<T>(ac, pr.q, pr.k, pr.v, dOn, dqn, dkn, dvn);

    strata::api::GateArgs ga;
    ga.gate = gs.data(), ga.kind = gc.kind;
    ga.gate_row_stride = headwise ? H : int64_t(H) * D;
    ga.gate_head_stride = headwise ? 1 : D;
    ga.dgate = dgs.data(), ga.workspace = work.data();
    if (const auto s = strata::api::gated_forward(pr.p, ga); !s.ok())
      v.status = std::string("forward: ") + s.message();
    if (const auto s = strata::api::gated_backward(pr.p, ga); v.status.empty() && !s.ok())
      v.status = std::string("backward: ") + s.message();
    if (!v.status.empty()) return v;

    const double u = double(core::kUnitRoundoff<T>);
    const size_t nkv = size_t(pr.nk * ac.num_kv_heads * D);
    const std::string tag = "layer " + std::to_string(l) + " ";
    v.check(tag + "y'", values(pr.o, nel), f.out[0].data, yg.data, 1e-5);
    v.check(tag + "LSE", lse_rows(pr.lse, nq, H), f.lse[0].data, lsen.data, 1e-5);
    v.check(tag + "dQ", values(pr.dq, nel), g64.q[0].data, dqn.data, grad_atol(u, g64.q[0].data));
    v.check(tag + "dK", values(pr.dk, nkv), g64.k[0].data, dkn.data, grad_atol(u, g64.k[0].data));
    v.check(tag + "dV", values(pr.dv, nkv), g64.v[0].data, dvn.data, grad_atol(u, g64.v[0].data));
    v.check(tag + "dg", values(dgs, ng), g64.g[0].data, dgn, grad_atol(u, g64.g[0].data));
  }
  return v;
}

}  // namespace kernel_test
