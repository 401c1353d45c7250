// tests/reference/case_util.hpp — random cases for the reference, shared by the dump tool and the
// tests: a portable normal generator, the contract's input distributions, and the stack loss.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include <strata/reference/reference.hpp>

namespace strata::reference::testing {

// std::normal_distribution differs between standard libraries; Box–Muller over mt19937_64 does
// not, so a seed names the same case everywhere.
class Normal {
 public:
  explicit Normal(uint64_t seed) : gen_(seed) {}
  double uniform_open() {  // (0, 1): 53 random bits, offset by half a step so log() is finite
    return (static_cast<double>(gen_() >> 11) + 0.5) * 0x1.0p-53;
  }
  double operator()() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = uniform_open(), u2 = uniform_open();
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(2.0 * std::numbers::pi * u2);
    has_spare_ = true;
    return r * std::cos(2.0 * std::numbers::pi * u2);
  }

 private:
  std::mt19937_64 gen_;
  double spare_ = 0;
  bool has_spare_ = false;
};

inline bool starts_with(const std::string& s, const std::string& p) {
  return s.rfind(p, 0) == 0;
}

// The contract's input distributions, chosen by name so that every tensor stays O(1):
// gains 1 + 0.1N, GN biases 0.1N, λ 0.5 + 0.2N, dynamic scales σ(N), HLC matrices N/sqrt(H_c),
// everything else N(0, 1).
inline void fill_input(const std::string& name, Tensor& t, Normal& rng) {
  for (auto& x : t.data) {
    const double n = rng();
    if (starts_with(name, "gamma") || starts_with(name, "gn_gamma"))
      x = 1.0 + 0.1 * n;
    else if (starts_with(name, "gn_beta"))
      x = 0.1 * n;
    else if (starts_with(name, "lambda"))
      x = 0.5 + 0.2 * n;
    else if (starts_with(name, "s."))
      x = sigmoid(n);
    else if (starts_with(name, "a_k") || starts_with(name, "a_v"))
      x = n / std::sqrt(static_cast<double>(t.dim(0)));  // a_* is [H_c, H_kv]
    else
      x = n;
  }
}

template <class Config>
struct Case {
  Config cfg;
  decltype(allocate_inputs(std::declval<const Config&>())) inputs;
  std::vector<Tensor> dout;  // cotangent of out.l, N(0, 1)
};

template <class Config>
Case<Config> make_case(const Config& cfg, uint64_t seed) {
  Case<Config> c{cfg, allocate_inputs(cfg), {}};
  Normal rng(seed);
  visit_inputs(c.cfg, c.inputs,
               [&](const std::string& name, Tensor& t) { fill_input(name, t, rng); });
  auto fwd = forward(c.cfg, c.inputs);
  visit_outputs(c.cfg, fwd, [&](const std::string&, Tensor& out) {
    Tensor d = zeros_like(out);
    for (auto& x : d.data) x = rng();
    c.dout.push_back(std::move(d));
  });
  return c;
}

// loss = Σ_l Σ out.l ⊙ dout.l
template <class Config, class Inputs>
double stack_loss(const Config& cfg, const Inputs& inputs, const std::vector<Tensor>& dout) {
  auto fwd = forward(cfg, inputs);
  double loss = 0;
  size_t l = 0;
  visit_outputs(cfg, fwd, [&](const std::string&, Tensor& out) {
    for (int64_t e = 0; e < out.numel(); ++e) loss += out[e] * dout[l][e];
    ++l;
  });
  return loss;
}

}  // namespace strata::reference::testing
