// Outputs are typed as outputs (issue 16): every buffer a call only reads is `const` in the struct
// that describes it, so writing through it does not compile, and every buffer a call writes is
// non-const, so a caller (or Strata itself) writes it without a cast.
//
// STRATA_CASE = 0 (the control, built with the project): writes through the output fields of
// the same structs compile. STRATA_CASE = n > 0 (tests/compile_fail/CMakeLists.txt): case n
// writes through one input field and must fail to compile with a const diagnostic, inside the
// function named for that case.
#include <cstdint>

#include <strata/api/decode.hpp>
#include <strata/api/depth_attention.hpp>
#include <strata/api/exoformer.hpp>
#include <strata/api/mea.hpp>
#include <strata/api/output_gate.hpp>
#include <strata/api/qk_norm_rope.hpp>
#include <strata/api/value_residual.hpp>

namespace api = strata::api;
using u16 = std::uint16_t;

#ifndef STRATA_CASE
#define STRATA_CASE 0
#endif

#if STRATA_CASE == 0
// the outputs of every method: the attention's, the passes' (which the attention then reads)
void write_outputs(api::FlashBwdParams& p, api::DepthStackLayer& d, api::ExoStackLayer& e,
                   api::MeaLayerParams& m, api::GateArgs& g, api::ValueResidualArgs& r,
                   api::QkRows& x) {
  *static_cast<u16*>(p.o) = 0, *p.lse = 0.f, *static_cast<u16*>(p.dq) = 0;
  *static_cast<u16*>(p.dk) = 0, *static_cast<u16*>(p.dv) = 0, *p.dsum = 0.f;
  *static_cast<u16*>(d.q_rot) = 0, *static_cast<u16*>(d.khat) = 0;
  *static_cast<u16*>(d.vhat) = 0, *static_cast<u16*>(d.dq) = 0, *d.dgamma_q = 0.f;
  for (void* out : e.mix.out) *static_cast<u16*>(out) = 0;
  *static_cast<u16*>(e.mix.dp[0].ptr) = 0, *e.mix.dlambda1[0] = 0.f;
  *static_cast<u16*>(m.q_rot) = 0, *static_cast<u16*>(m.k_attn) = 0;
  *static_cast<u16*>(m.v_attn) = 0, *static_cast<u16*>(m.dkc) = 0, *m.da_k = 0.f;
  *static_cast<u16*>(g.dgate) = 0;
  *r.dv_first = 0.f, *r.dlambda_self = 0.f;
  *static_cast<u16*>(x.y) = 0, *static_cast<u16*>(x.dx) = 0, *x.dgamma = 0.f;
}
#elif STRATA_CASE == 1
void write_attention_q(api::FlashFwdParams& p) {
  *static_cast<u16*>(p.q) = 0;
}
#elif STRATA_CASE == 2
void write_attention_dout(api::FlashBwdParams& p) {
  *static_cast<u16*>(p.dout) = 0;
}
#elif STRATA_CASE == 3
void write_depth_raw_q(api::DepthStackLayer& y) {
  *static_cast<u16*>(y.q) = 0;
}
#elif STRATA_CASE == 4
void write_depth_gain(api::DepthStackLayer& y) {
  y.gamma_q[0] = 1.f;
}
#elif STRATA_CASE == 5
void write_exo_projection(api::ExoStackLayer& y) {
  *static_cast<u16*>(y.mix.p[0].ptr) = 0;
}
#elif STRATA_CASE == 6
void write_mea_component_keys(api::MeaLayerParams& y) {
  *static_cast<u16*>(y.kc) = 0;
}
#elif STRATA_CASE == 7
void write_gate_logits(api::GateArgs& g) {
  *static_cast<u16*>(g.gate) = 0;
}
#elif STRATA_CASE == 8
void write_resformer_v_first(api::ValueResidualArgs& a) {
  *static_cast<u16*>(a.v_first) = 0;
}
#elif STRATA_CASE == 9
void write_qk_pass_input(api::QkRows& x) {
  *static_cast<u16*>(x.x) = 0;
}
#elif STRATA_CASE == 10
void write_decode_new_keys(api::DecodeLayer& y) {
  *static_cast<u16*>(y.k) = 0;
}
#endif
