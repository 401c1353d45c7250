// ResFormer (SPEC §2; Zhou et al.): layer l >= 1 attends with V'_l = lambda_self V_l +
// lambda_first V_0, lambda learnable per KV head (Identity-ResFormer's 0.5, 0.5 at init). The
// backward runs L-1 .. 0; dL/dV_0 from every layer is summed in the stack's fp32 accumulator
// (dv_first) and finished into layer 0's dv. The optimizer steps on the lambdas.
#pragma once

#include <strata/api/value_residual.hpp>

#include <memory>
#include <vector>

#include "trainer.hpp"

namespace trainer {

class ResFormer : public StackMethod<strata::api::ValueResidualStack> {
 public:
  static constexpr int kLayers = 3;

  ResFormer() {
    for (int l = 0; l < kLayers; ++l) {
      layer_.push_back(std::make_unique<Layer>(shape_));
      fill(layer_[l]->q, 10 * l + 1), fill(layer_[l]->k, 10 * l + 2),
          fill(layer_[l]->v, 10 * l + 3);
      for (auto* x : {&lam_self_, &lam_first_}) x->emplace_back(shape_.h_k, 0.5f);
      for (auto* x : {&dlam_self_, &dlam_first_}) x->emplace_back(shape_.h_k, 0.f);
    }
    stack_.kind = strata::api::ValueResidualKind::kResFormer;
    stack_.granularity = strata::core::MixGranularity::kHeadwise;  // one lambda per KV head
    for (int l = 0; l < kLayers; ++l) {
      strata::api::ValueResidualLayer y;
      y.attn = layer_[l]->p;
      if (l > 0) {  // layer 0 is plain attention; its V is V_0
        y.lambda_self = lam_self_[l].data(), y.lambda_first = lam_first_[l].data();
        y.dlambda_self = dlam_self_[l].data(), y.dlambda_first = dlam_first_[l].data();
      }
      stack_.layers.push_back(y);
    }
    dv_first_.assign(size_t(strata::api::value_residual_accumulator_size(layer_[0]->p)), 0.f);
    stack_.workspace_bytes = strata::api::workspace_bytes(stack_);
    workspace_.assign((stack_.workspace_bytes + 3) / 4, 0.f);
    stack_.dv_first = dv_first_.data(), stack_.workspace = workspace_.data();
    make_teacher(100, 0.3f);
  }

  Params params() override {
    Params v;
    for (int l = 1; l < kLayers; ++l)
      v.push_back({&lam_self_[l], &dlam_self_[l]}), v.push_back({&lam_first_[l], &dlam_first_[l]});
    return v;
  }
  std::vector<Layer*> outputs() override { return pointers(layer_); }

 private:
  Shape shape_;
  std::vector<std::unique_ptr<Layer>> layer_;
  std::vector<Vec<float>> lam_self_, lam_first_, dlam_self_, dlam_first_;  // [h_k] per layer
  Vec<float> dv_first_, workspace_;  // the fp32 dL/dV_0 accumulator, the backward's scratch
};

}  // namespace trainer
