/// \file
/// strata/reference/tensor.hpp — the fp64 host tensor used by the reference ("executable spec").
///
/// A Tensor is a shape plus a dense, C-ordered (row-major) array of doubles. Nothing more: the
/// reference favours obvious loops over cleverness. Packed varlen tensors with heads are
/// [N, heads, d] (N = total tokens); `row(t, h)` points at the d contiguous values of one token and
/// head, which is the unit every per-row building block in ops.hpp works on.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace strata::reference {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<double> data;

  Tensor() = default;
  explicit Tensor(std::vector<int64_t> s, double fill = 0.0) : shape(std::move(s)) {
    data.assign(static_cast<size_t>(count(shape)), fill);
  }

  static int64_t count(const std::vector<int64_t>& s) {
    int64_t n = 1;
    for (int64_t e : s) n *= e;
    return n;
  }
  // A 0-d tensor (shape {}) holds one value; a default-constructed Tensor (no data) is "absent".
  bool empty() const { return data.empty(); }
  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  int64_t dim(int i) const { return shape.at(static_cast<size_t>(i)); }

  double& operator[](int64_t i) { return data[static_cast<size_t>(i)]; }
  double operator[](int64_t i) const { return data[static_cast<size_t>(i)]; }

  // Rows of a [N, heads, d] tensor.
  double* row(int64_t t, int64_t h) {
    return data.data() + static_cast<size_t>((t * shape[1] + h) * shape[2]);
  }
  const double* row(int64_t t, int64_t h) const {
    return data.data() + static_cast<size_t>((t * shape[1] + h) * shape[2]);
  }
  // Element (i, j) of a 2-d tensor, e.g. a per-token [N, k] tensor or an [H, d] gain.
  double& at(int64_t i, int64_t j) { return data[static_cast<size_t>(i * shape[1] + j)]; }
  double at(int64_t i, int64_t j) const { return data[static_cast<size_t>(i * shape[1] + j)]; }
};

// Same shape, all zeros: the natural initial value of a gradient.
inline Tensor zeros_like(const Tensor& t) {
  return Tensor(t.shape, 0.0);
}

inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument("strata::reference: " + what);
}

inline std::string shape_string(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ',';
    r += std::to_string(s[i]);
  }
  return r + "]";
}

inline void require_shape(const Tensor& t, const std::vector<int64_t>& s, const std::string& name) {
  require(t.shape == s && t.numel() == Tensor::count(s),
          name + " has shape " + shape_string(t.shape) + ", expected " + shape_string(s));
}

}  // namespace strata::reference
