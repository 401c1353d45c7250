// Gated Attention (SPEC §5; Qiu et al.): out = Attention(q, k, v) o sigmoid(g), with the gate
// logits g = x W_theta of the layer's input (elementwise, position G1). Layers are independent.
// Learnable here: W_theta [C, h * d] of each layer. The forward computes the logits (a GEMM,
// here on the host) and runs the gated attention; the backward writes dq, dk, dv and dL/dg, from
// which dW = x^T dL/dg (the projection's backward, a GEMM in a framework).
#pragma once

#include <strata/api/output_gate.hpp>

#include <memory>
#include <vector>

#include "trainer.hpp"

namespace trainer {

class Gated : public Method {
 public:
  static constexpr int kLayers = 2, kInput = 16;  // C: the gate projection's input width

  Gated() {
    const int T = shape_.total(), n = shape_.h * shape_.d;
    x_.assign(size_t(T) * kInput, 0.f);
    fill(x_, 7, 0.f, 1.f);
    for (int l = 0; l < kLayers; ++l) {
      layer_.push_back(std::make_unique<Layer>(shape_));
      fill(layer_[l]->q, 10 * l + 1), fill(layer_[l]->k, 10 * l + 2),
          fill(layer_[l]->v, 10 * l + 3);
      w_.emplace_back(size_t(kInput) * n, 0.f);  // zero: sigmoid(0) = 1/2 everywhere at init
      dw_.emplace_back(size_t(kInput) * n, 0.f);
      gate_.emplace_back(size_t(T) * n), dgate_.emplace_back(size_t(T) * n);
      strata::api::GateArgs g;
      g.gate = gate_[l].data(), g.gate_row_stride = n, g.gate_head_stride = shape_.d;
      g.kind = strata::core::GateKind::kElementwise;
      g.dgate = dgate_[l].data();
      g.workspace_bytes = strata::api::workspace_bytes(layer_[l]->p, g);  // the backward's dO
      scratch_.emplace_back(g.workspace_bytes / 2);
      g.workspace = scratch_[l].data();
      args_.push_back(g);
    }
    make_teacher(300, 0.5f);
  }

  Params params() override {
    Params v;
    for (int l = 0; l < kLayers; ++l) v.push_back({&w_[l], &dw_[l]});
    return v;
  }
  Status forward() override {
    const int T = shape_.total(), n = shape_.h * shape_.d;
    for (int l = 0; l < kLayers; ++l) {
      for (int t = 0; t < T; ++t)  // g = x W
        for (int j = 0; j < n; ++j) {
          float s = 0;
          for (int c = 0; c < kInput; ++c)
            s += x_[size_t(t) * kInput + c] * w_[l][size_t(c) * n + j];
          gate_[l][size_t(t) * n + j] = strata::core::from_float<bf16>(s);
        }
      if (Status s = strata::api::gated_forward(layer_[l]->p, args_[l]); !s.ok()) return s;
    }
    return Status::Ok();
  }
  Status backward() override {
    for (int l = 0; l < kLayers; ++l)
      if (Status s = strata::api::gated_backward(layer_[l]->p, args_[l]); !s.ok()) return s;
    if (std::string e = kernel_test::sync_device(); !e.empty())
      return Status(strata::StatusCode::kInvalidArgument, e);
    const int T = shape_.total(), n = shape_.h * shape_.d;
    for (int l = 0; l < kLayers; ++l) {  // dW = x^T dL/dg
      dw_[l].assign(dw_[l].size(), 0.f);
      for (int t = 0; t < T; ++t)
        for (int c = 0; c < kInput; ++c) {
          const float xc = x_[size_t(t) * kInput + c];
          for (int j = 0; j < n; ++j)
            dw_[l][size_t(c) * n + j] += xc * strata::core::to_float(dgate_[l][size_t(t) * n + j]);
        }
    }
    return Status::Ok();
  }
  std::vector<Layer*> outputs() override { return pointers(layer_); }

 private:
  Shape shape_;
  std::vector<std::unique_ptr<Layer>> layer_;
  Vec<float> x_;                                   // [T, C]: the layers' (shared) input
  std::vector<Vec<float>> w_, dw_;                 // W_theta [C, h * d] per layer
  std::vector<Vec<bf16>> gate_, dgate_, scratch_;  // g = x W, dL/dg, the backward's workspace
  std::vector<strata::api::GateArgs> args_;
};

}  // namespace trainer
