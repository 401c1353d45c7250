/// \file
/// Byte model of a fused token-local pass: element sizes and the minimum traffic per token.
///
/// A "token-local" pass (a depth mix, a value-residual mix, an anchor mix, a head-level
/// composition, an output gate) touches each token's rows independently, so its minimum memory
/// traffic is linear in the token count: every input row it needs is read once, every output row
/// written once, and the per-layer parameters (lambda, gains, mixing matrices) are read once per
/// launch. That minimum is what the simulator's byte counters of a fused kernel are compared
/// against, so every function of strata::cost that returns a Traffic documents exactly which rows
/// it counts.
///
/// Plain host C++ (no CUDA include), header-only, usable in constexpr contexts.
#pragma once

#include <cstdint>

namespace strata::cost {

/// Element sizes in bytes of the three kinds of storage a pass touches. Activations are bf16 or
/// fp16 (2 bytes) or fp32 (4). SPEC section 7.7 fixes the cross-layer gradient accumulators (dV_0,
/// the source-layer dk and dv of Depth-Attention, ExoFormer's anchor gradients) and all parameter
/// gradients to fp32; parameters are counted at `param` bytes.
struct Storage {
  int64_t act = 2;    ///< bytes of one activation element (q, k, v, O, gate, ...)
  int64_t acc = 4;    ///< bytes of one cross-layer gradient accumulator element (fp32, SPEC 7.7)
  int64_t param = 4;  ///< bytes of one parameter element (lambda, gamma, beta, mixing matrices)
};

/// bf16 activations, fp32 accumulators and parameters.
inline constexpr Storage kBf16{2, 4, 4};
/// fp16 activations, fp32 accumulators and parameters.
inline constexpr Storage kFp16{2, 4, 4};
/// fp32 everywhere.
inline constexpr Storage kFp32{4, 4, 4};

/// Minimum memory traffic of a pass. The per-token part scales with the number of tokens; the
/// fixed part (parameters read, parameter-gradient reductions written) is paid once per launch.
struct Traffic {
  int64_t read = 0;         ///< bytes read per token
  int64_t write = 0;        ///< bytes written per token
  int64_t read_fixed = 0;   ///< bytes read once per launch (per-layer parameters)
  int64_t write_fixed = 0;  ///< bytes written once per launch (reduced parameter gradients)

  /// Bytes moved per token (read + write), without the fixed part.
  constexpr int64_t per_token() const { return read + write; }
  /// Bytes moved by one launch over `tokens` tokens.
  constexpr int64_t total(int64_t tokens) const {
    return tokens * (read + write) + read_fixed + write_fixed;
  }
  /// Adds another pass's traffic (passes run one after the other, e.g. over the layers).
  constexpr Traffic& operator+=(const Traffic& o) {
    read += o.read;
    write += o.write;
    read_fixed += o.read_fixed;
    write_fixed += o.write_fixed;
    return *this;
  }
  /// Sum of two passes' traffic.
  friend constexpr Traffic operator+(Traffic a, const Traffic& b) { return a += b; }
  /// Field-wise equality.
  friend constexpr bool operator==(const Traffic&, const Traffic&) = default;
};

}  // namespace strata::cost
