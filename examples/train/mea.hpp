// MEA (SPEC §4; Peng et al.): the layer's H_c component heads K_c, V_c are composed into H_kv
// heads by learned A^K, A^V [H_c, H_kv] (K' = sum_c A^K[c, h] K_c[c], V' likewise; H_c < H_kv:
// virtual heads), normalised by a per-head GroupNorm (site KeyValue: on K', V', affines
// [H_kv, d]) and attended with RoPE on q and K'. Layers are independent. Learnable here: A^K,
// A^V and the four GroupNorm affines of each layer; the backward (the attention's, then the
// pass's) writes dq, dK_c, dV_c and all of their gradients.
#pragma once

#include <strata/api/mea.hpp>

#include <memory>
#include <vector>

#include "trainer.hpp"

namespace trainer {

class Mea : public StackMethod<strata::api::MeaStack> {
 public:
  static constexpr int kLayers = 2, kComponents = 1;  // H_c = 1 cached head for H_kv = 2

  Mea() {
    const int T = shape_.total(), d = shape_.d, hkv = shape_.h_k;
    stack_.options.site = strata::core::NormSite::kKeyValue;
    w_.resize(kLayers), dw_.resize(kLayers);
    for (int l = 0; l < kLayers; ++l) {
      layer_.push_back(std::make_unique<Layer>(shape_));  // its q, k, v receive q_rot, K', V'
      q_.emplace_back(size_t(T) * shape_.h * d), dq_.emplace_back(size_t(T) * shape_.h * d);
      for (auto* x : {&kc_, &vc_, &dkc_, &dvc_}) x->emplace_back(size_t(T) * kComponents * d);
      fill(q_[l], 10 * l + 1), fill(kc_[l], 10 * l + 2), fill(vc_[l], 10 * l + 3);
      // A^K, A^V: the component head tiled over the composite heads; GroupNorm affines 1 and 0
      for (int i = 0; i < 2; ++i) w_[l].emplace_back(size_t(kComponents) * hkv, 1.f);
      for (int i = 0; i < 4; ++i) w_[l].emplace_back(size_t(hkv) * d, i % 2 ? 0.f : 1.f);
      for (const Vec<float>& x : w_[l]) dw_[l].emplace_back(x.size(), 0.f);
      strata::api::MeaLayerParams y;
      y.attn = layer_[l]->p;  // attn.h_k: the H_kv composite heads
      y.q_rot = layer_[l]->q.data(), y.k_attn = layer_[l]->k.data(), y.v_attn = layer_[l]->v.data();
      y.h_c = kComponents;
      y.q = q_[l].data(), y.kc = kc_[l].data(), y.vc = vc_[l].data();
      y.dq = dq_[l].data(), y.dkc = dkc_[l].data(), y.dvc = dvc_[l].data();
      y.a_k = w_[l][0].data(), y.a_v = w_[l][1].data();
      y.gamma_k = w_[l][2].data(), y.beta_k = w_[l][3].data();
      y.gamma_v = w_[l][4].data(), y.beta_v = w_[l][5].data();
      y.da_k = dw_[l][0].data(), y.da_v = dw_[l][1].data();
      y.dgamma_k = dw_[l][2].data(), y.dbeta_k = dw_[l][3].data();
      y.dgamma_v = dw_[l][4].data(), y.dbeta_v = dw_[l][5].data();
      stack_.layers.push_back(y);
    }
    stack_.workspace_bytes = strata::api::workspace_bytes(stack_);
    workspace_.assign((stack_.workspace_bytes + 3) / 4, 0.f);
    stack_.workspace = workspace_.data();
    make_teacher(700, 0.3f);
  }

  Params params() override {
    Params v;
    for (int l = 0; l < kLayers; ++l)
      for (size_t i = 0; i < w_[l].size(); ++i) v.push_back({&w_[l][i], &dw_[l][i]});
    return v;
  }
  std::vector<Layer*> outputs() override { return pointers(layer_); }

 private:
  Shape shape_;
  std::vector<std::unique_ptr<Layer>> layer_;
  std::vector<Vec<bf16>> q_, kc_, vc_, dq_, dkc_, dvc_;
  // per layer: A^K, A^V, gamma_k, beta_k, gamma_v, beta_v and their gradients
  std::vector<std::vector<Vec<float>>> w_, dw_;
  Vec<float> workspace_;
};

}  // namespace trainer
