// What every trainer-step example shares: buffers the kernels can use on both executors, one
// packed (varlen) self-attention layer's tensors and Params, random fills, the loss gradient and
// the optimizer step. A trainer keeps these in its own framework; the method files
// (resformer.hpp, depth.hpp, exoformer.hpp, mea.hpp, gated.hpp) are the part to copy.
//
// The task of every example: a student stack whose method parameters (lambda, gains, A, gates)
// start at the paper's initialisation learns a teacher stack's, from the teacher's outputs on
// the same inputs (the projections q, k, v are fixed inputs here; in a model they come from
// linear layers whose gradients are the dq, dk, dv the backward writes). Loss: the mean squared
// error over every layer's output.
#pragma once

#include <strata/api/builders.hpp>
#include <strata/api/flash.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "executor_memory.hpp"  // kernel_test::Vec: host vectors (simulator), managed memory (nvcc)

namespace trainer {

using bf16 = __nv_bfloat16;
using kernel_test::Vec;
using strata::Status;
using strata::attention::FlashBwdParams;

/// The batch every example trains on: two packed sequences, GQA 4 query / 2 KV heads, d = 64.
struct Shape {
  std::vector<int> lens{40, 24};
  int h = 4, h_k = 2, d = 64;
  int total() const {
    int t = 0;
    for (int n : lens) t += n;
    return t;
  }
};

inline void fill(Vec<bf16>& x, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> n(0.f, scale);
  for (bf16& e : x) e = strata::core::from_float<bf16>(n(g));
}
inline void fill(Vec<float>& x, uint64_t seed, float mean, float scale) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> n(mean, scale);
  for (float& e : x) e = n(g);
}

/// One causal self-attention layer over the packed batch: its own q, k, v (the projections, or a
/// method's pass outputs), out, lse, the backward's dout, dq, dk, dv and workspace, and the Params
/// that point at them (FlashAttention's varlen layout, contiguous [total, heads, d], built by
/// api::packed_params).
struct Layer {
  strata::api::PackedBatch batch;  // the offsets on the host (validation reads them)
  Vec<int> cu;                     // and where the kernels read them
  Vec<bf16> q, k, v, out, dout, dq, dk, dv;
  Vec<float> lse, dsum;
  FlashBwdParams p;

  explicit Layer(const Shape& s) : batch(strata::api::PackedBatch::of(s.lens)) {
    cu.assign(batch.cu_q.begin(), batch.cu_q.end());
    const size_t nq = size_t(batch.total_q) * s.h * s.d, nk = size_t(batch.total_k) * s.h_k * s.d;
    for (Vec<bf16>* x : {&q, &out, &dout, &dq}) x->assign(nq, bf16{});
    for (Vec<bf16>* x : {&k, &v, &dk, &dv}) x->assign(nk, bf16{});
    lse.assign(size_t(batch.total_q) * s.h, 0.f), dsum.assign(lse.size(), 0.f);
    p = strata::api::packed_params(batch, cu.data(), cu.data(), {.h = s.h, .h_k = s.h_k, .d = s.d},
                                   {.q = q.data(),
                                    .k = k.data(),
                                    .v = v.data(),
                                    .o = out.data(),
                                    .lse = lse.data(),
                                    .dout = dout.data(),
                                    .dq = dq.data(),
                                    .dk = dk.data(),
                                    .dv = dv.data(),
                                    .dsum = dsum.data()},  // deterministic backward: no dq_accum
                                   {.causal = true});
  }
  Layer(const Layer&) = delete;  // p points into this layer's own buffers
};

/// The mean squared error of `out` against `target` over `n_total` elements (all layers), and
/// its gradient into `dout` (the kernels' upstream gradient, in the activations' dtype).
inline double mse(const Vec<bf16>& out, const Vec<bf16>& target, double n_total, Vec<bf16>& dout) {
  double loss = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double e =
        double(strata::core::to_float(out[i])) - double(strata::core::to_float(target[i]));
    loss += 0.5 * e * e / n_total;
    dout[i] = strata::core::from_float<bf16>(float(e / n_total));
  }
  return loss;
}

/// Adam on one fp32 parameter tensor (the step a trainer's optimizer takes with the gradient
/// the backward wrote).
struct Adam {
  float lr = 2e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  int t = 0;
  std::vector<std::vector<double>> m, v;
  /// Step on every (parameter, gradient) pair of this iteration, in the same order each time.
  void step(const std::vector<std::pair<Vec<float>*, const Vec<float>*>>& params) {
    ++t;
    m.resize(params.size()), v.resize(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      Vec<float>& w = *params[i].first;
      const Vec<float>& g = *params[i].second;
      m[i].resize(w.size()), v[i].resize(w.size());
      for (size_t j = 0; j < w.size(); ++j) {
        m[i][j] = b1 * m[i][j] + (1 - b1) * g[j];
        v[i][j] = b2 * v[i][j] + (1 - b2) * double(g[j]) * g[j];
        const double mh = m[i][j] / (1 - std::pow(b1, t)), vh = v[i][j] / (1 - std::pow(b2, t));
        w[j] -= float(lr * mh / (std::sqrt(vh) + eps));
      }
    }
  }
};

/// The layers as the pointers Method::outputs returns.
inline std::vector<Layer*> pointers(const std::vector<std::unique_ptr<Layer>>& layers) {
  std::vector<Layer*> v;
  for (const auto& y : layers) v.push_back(y.get());
  return v;
}

/// The training loop's view of a method: its parameters with their gradients, its forward and
/// backward over the stack, and the layers whose outputs the loss reads. The loop itself
/// (targets, loss, optimizer) is the same for every method.
class Method {
 public:
  using Params = std::vector<std::pair<Vec<float>*, const Vec<float>*>>;
  virtual ~Method() = default;
  virtual Params params() = 0;                ///< (parameter, its gradient) pairs
  virtual Status forward() = 0;               ///< every layer's out (launched, not waited for)
  virtual Status backward() = 0;              ///< every gradient, from every layer's dout
  virtual std::vector<Layer*> outputs() = 0;  ///< the layers whose out the loss reads

  /// The teacher: every parameter moved from its initial value by N(0, scale).
  void make_teacher(uint64_t seed, float scale) {
    for (auto& [w, g] : params()) {
      Vec<float> noise(w->size());
      fill(noise, seed++, 0.f, scale);
      teacher_.emplace_back(w->size());
      for (size_t i = 0; i < w->size(); ++i) teacher_.back()[i] = (*w)[i] + noise[i];
    }
  }

  /// The targets: the teacher's outputs on the same inputs.
  std::string make_targets() {
    Params ps = params();
    std::vector<std::vector<float>> init;
    for (size_t i = 0; i < ps.size(); ++i) {
      init.emplace_back(ps[i].first->begin(), ps[i].first->end());
      ps[i].first->assign(teacher_[i].begin(), teacher_[i].end());
    }
    if (std::string e = run(forward(), "teacher forward"); !e.empty()) return e;
    for (Layer* y : outputs()) target_.push_back(y->out);
    for (size_t i = 0; i < ps.size(); ++i) ps[i].first->assign(init[i].begin(), init[i].end());
    return {};
  }

  /// One trainer step: forward, the loss and its gradient, backward, the optimizer step on every
  /// parameter. *loss is the loss before the update.
  std::string step(double* loss) {
    if (std::string e = run(forward(), "forward"); !e.empty()) return e;
    const std::vector<Layer*> ys = outputs();
    *loss = 0;
    const double n = double(ys.size()) * ys[0]->out.size();
    for (size_t l = 0; l < ys.size(); ++l) *loss += mse(ys[l]->out, target_[l], n, ys[l]->dout);
    if (std::string e = run(backward(), "backward"); !e.empty()) return e;
    opt_.step(params());
    return {};
  }

  /// Largest distance of a learned parameter from the teacher's.
  double parameter_error() {
    double e = 0;
    Params ps = params();
    for (size_t i = 0; i < ps.size(); ++i)
      for (size_t j = 0; j < teacher_[i].size(); ++j)
        e = std::max(e, std::fabs(double((*ps[i].first)[j]) - teacher_[i][j]));
    return e;
  }

 private:
  /// The Status of the launches, then the device's (the host reads the results next).
  static std::string run(const Status& s, const char* what) {
    if (!s.ok()) return std::string(what) + ": " + s.message();
    return kernel_test::sync_device();
  }
  std::vector<std::vector<float>> teacher_;
  std::vector<Vec<bf16>> target_;
  Adam opt_;
};

/// A method whose API stack helper (api::ValueResidualStack, DepthStack, ExoStack, MeaStack)
/// runs its forward and backward over the layers.
template <class Stack>
class StackMethod : public Method {
 public:
  Status forward() override { return stack_.forward(); }
  Status backward() override { return stack_.backward(); }

 protected:
  Stack stack_;
};

}  // namespace trainer
