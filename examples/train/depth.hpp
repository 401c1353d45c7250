// Depth-Attention (SPEC §1; Zeng, Hao et al.): layer l first attends over its sources' keys k^_j
// at the same token (its KV group's mean query), mixing their values into v^_l, then over the
// sequence with (q_rot, k^_l, v^_l). Learnable here: each layer's QK-norm gains. The backward
// runs L-1 .. 0, each layer's attention backward, then its pass's, which adds the sources' shares
// of dk^_j, dv^_j into their fp32 accumulators (dkhat_acc, dvhat_acc) that the source layers read
// when their turn comes. The optimizer steps on the gains.
#pragma once

#include <strata/api/depth_attention.hpp>

#include <memory>
#include <vector>

#include "trainer.hpp"

namespace trainer {

class Depth : public StackMethod<strata::api::DepthStack> {
 public:
  static constexpr int kLayers = 3;

  Depth() {
    const int d = shape_.d;
    const size_t acc = size_t(shape_.total()) * shape_.h_k * d;
    stack_.local.qk_norm = true, stack_.local.rope = true;  // Qwen3-style QK-norm, RoPE theta 1e4
    for (int l = 0; l < kLayers; ++l) {
      attn_.push_back(std::make_unique<Layer>(shape_)),
          raw_.push_back(std::make_unique<Layer>(shape_));
      fill(raw_[l]->q, 10 * l + 1), fill(raw_[l]->k, 10 * l + 2), fill(raw_[l]->v, 10 * l + 3);
      for (auto* x : {&gamma_q_, &gamma_k_}) x->emplace_back(d, 1.f);  // RMSNorm gains start at 1
      for (auto* x : {&dgamma_q_, &dgamma_k_}) x->emplace_back(d, 0.f);
      for (auto* x : {&dkhat_acc_, &dvhat_acc_}) x->emplace_back(acc, 0.f);
    }
    for (int l = 0; l < kLayers; ++l) {
      strata::api::DepthStackLayer y;
      y.attn = attn_[l]->p;  // the attention: its q, k, v buffers receive the pass's outputs
      y.q_rot = attn_[l]->q.data(), y.khat = attn_[l]->k.data(), y.vhat = attn_[l]->v.data();
      y.q = raw_[l]->q.data(), y.k = raw_[l]->k.data(), y.v = raw_[l]->v.data();
      y.dq = raw_[l]->dq.data(), y.dk = raw_[l]->dk.data(), y.dv = raw_[l]->dv.data();
      y.gamma_q = gamma_q_[l].data(), y.gamma_k = gamma_k_[l].data();
      y.dgamma_q = dgamma_q_[l].data(), y.dgamma_k = dgamma_k_[l].data();
      y.dkhat_acc = dkhat_acc_[l].data(), y.dvhat_acc = dvhat_acc_[l].data();
      for (int j = 0; j < l; ++j) y.sources.push_back(j);  // every earlier layer (at most 8)
      stack_.layers.push_back(y);
    }
    stack_.workspace_bytes = strata::api::workspace_bytes(stack_);
    workspace_.assign((stack_.workspace_bytes + 3) / 4, 0.f);
    stack_.workspace = workspace_.data();
    make_teacher(200, 0.3f);
  }

  Params params() override {
    Params v;
    for (int l = 0; l < kLayers; ++l)
      v.push_back({&gamma_q_[l], &dgamma_q_[l]}), v.push_back({&gamma_k_[l], &dgamma_k_[l]});
    return v;
  }
  std::vector<Layer*> outputs() override { return pointers(attn_); }

 private:
  Shape shape_;
  // per layer: the attention's operands (the pass's outputs) and the raw projections with their
  // gradients
  std::vector<std::unique_ptr<Layer>> attn_, raw_;
  std::vector<Vec<float>> gamma_q_, gamma_k_, dgamma_q_, dgamma_k_, dkhat_acc_, dvhat_acc_;
  Vec<float> workspace_;
};

}  // namespace trainer
