// ExoFormer (SPEC §3; Su): every stream P in (q, k, v, g) of layer l is mixed with the stack's
// exogenous anchor, P~ = lambda1_P o RMSNorm_gamma_P(anchor_P) + lambda2_P o P (the static
// variant), then QK-norm and RoPE on q~, k~, and gated attention with gate logits g~. Learnable
// here: the eight lambdas of each layer (elementwise [heads, d], init 0.5), the QK-norm gains and
// the four anchor RMSNorm gains the layers share. The backward runs L-1 .. 0, the attention's,
// then the mix pass's, whose share of each anchor's gradient the stack sums over the layers in
// fp32 (anchors.acc) and finishes through the anchor RMSNorm at layer 0.
#pragma once

#include <strata/api/exoformer.hpp>

#include <memory>
#include <vector>

#include "trainer.hpp"

namespace trainer {

class ExoFormer : public StackMethod<strata::api::ExoStack> {
 public:
  static constexpr int kLayers = 2, kStreams = 4;  // streams q, k, v, g

  ExoFormer() {
    const int T = shape_.total(), d = shape_.d;
    stack_.options.granularity = strata::core::MixGranularity::kElementwise;
    stack_.options.dynamic = false;  // static (the dynamic variant adds s [T, 8] and ds)
    for (int s = 0; s < kStreams; ++s) {
      const size_t n = size_t(T) * heads(s) * d;
      anchor_.emplace_back(n), danchor_.emplace_back(n), acc_.emplace_back(n, 0.f);
      fill(anchor_[s], 500 + s);
      anchor_gain_.emplace_back(d, 1.f), danchor_gain_.emplace_back(d, 0.f);
      stack_.anchors.anchor[s] = {anchor_[s].data(), int64_t(heads(s)) * d, d};
      stack_.anchors.gamma[s] = anchor_gain_[s].data();
      stack_.anchors.acc[s] = acc_[s].data();
      stack_.anchors.danchor[s] = {danchor_[s].data(), int64_t(heads(s)) * d, d};
      stack_.anchors.dgamma[s] = danchor_gain_[s].data();
    }
    p_.resize(kLayers), dp_.resize(kLayers);
    for (auto* x : {&lam1_, &lam2_, &dlam1_, &dlam2_}) x->resize(kLayers);
    for (int l = 0; l < kLayers; ++l) {
      layer_.push_back(std::make_unique<Layer>(shape_));  // its q, k, v receive q~, k~, v~
      gate_.emplace_back(size_t(T) * shape_.h * d), dgate_.emplace_back(size_t(T) * shape_.h * d);
      for (auto* x : {&gamma_q_, &gamma_k_}) x->emplace_back(d, 1.f);
      for (auto* x : {&dgamma_q_, &dgamma_k_}) x->emplace_back(d, 0.f);
      strata::api::ExoStackLayer y;
      y.attn = layer_[l]->p;
      y.mix.out = {layer_[l]->q.data(), layer_[l]->k.data(), layer_[l]->v.data(), gate_[l].data()};
      y.gate.dgate = dgate_[l].data();  // dL/dg~
      y.gate.gate_row_stride = int64_t(shape_.h) * d, y.gate.gate_head_stride = d;
      y.gate.workspace_bytes = strata::api::workspace_bytes(y.attn, y.gate);  // the backward's dO
      gate_work_.emplace_back(y.gate.workspace_bytes / 2);
      y.gate.workspace = gate_work_[l].data();
      for (int s = 0; s < kStreams; ++s) {
        const size_t n = size_t(T) * heads(s) * d, nl = size_t(heads(s)) * d;
        p_[l].emplace_back(n), dp_[l].emplace_back(n);
        fill(p_[l][s], 10 * l + s + 1);
        lam1_[l].emplace_back(nl, 0.5f), lam2_[l].emplace_back(nl, 0.5f);
        dlam1_[l].emplace_back(nl, 0.f), dlam2_[l].emplace_back(nl, 0.f);
        y.mix.p[s] = {p_[l][s].data(), int64_t(heads(s)) * d, d};
        y.mix.dp[s] = {dp_[l][s].data(), int64_t(heads(s)) * d, d};
        y.mix.lambda1[s] = lam1_[l][s].data(), y.mix.lambda2[s] = lam2_[l][s].data();
        y.mix.dlambda1[s] = dlam1_[l][s].data(), y.mix.dlambda2[s] = dlam2_[l][s].data();
      }
      y.mix.gamma_q = gamma_q_[l].data(), y.mix.gamma_k = gamma_k_[l].data();
      y.mix.dgamma_q = dgamma_q_[l].data(), y.mix.dgamma_k = dgamma_k_[l].data();
      stack_.layers.push_back(y);
    }
    stack_.workspace_bytes = strata::api::workspace_bytes(stack_);
    workspace_.assign((stack_.workspace_bytes + 3) / 4, 0.f);
    stack_.workspace = workspace_.data();
    make_teacher(900, 0.2f);
  }

  Params params() override {
    Params v;
    for (int l = 0; l < kLayers; ++l) {
      for (int s = 0; s < kStreams; ++s)
        v.push_back({&lam1_[l][s], &dlam1_[l][s]}), v.push_back({&lam2_[l][s], &dlam2_[l][s]});
      v.push_back({&gamma_q_[l], &dgamma_q_[l]}), v.push_back({&gamma_k_[l], &dgamma_k_[l]});
    }
    for (int s = 0; s < kStreams; ++s) v.push_back({&anchor_gain_[s], &danchor_gain_[s]});
    return v;
  }
  std::vector<Layer*> outputs() override { return pointers(layer_); }

 private:
  int heads(int s) const { return s == 1 || s == 2 ? shape_.h_k : shape_.h; }

  Shape shape_;
  std::vector<std::unique_ptr<Layer>> layer_;
  std::vector<std::vector<Vec<bf16>>> p_, dp_;  // [layer][stream] projections P and dL/dP
  std::vector<Vec<bf16>> gate_, dgate_, gate_work_;
  std::vector<std::vector<Vec<float>>> lam1_, lam2_, dlam1_, dlam2_;  // [layer][stream]
  std::vector<Vec<float>> gamma_q_, gamma_k_, dgamma_q_, dgamma_k_;   // [layer]
  std::vector<Vec<float>> anchor_gain_, danchor_gain_, acc_;          // [stream]
  std::vector<Vec<bf16>> anchor_, danchor_;  // anchor_P = E W_anc and its gradient, [stream]
  Vec<float> workspace_;
};

}  // namespace trainer
