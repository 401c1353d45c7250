/// \file
/// strata/reference/reference.hpp — umbrella header of the fp64 host reference ("executable spec")
/// of the attention methods in SPEC.md: forward and hand-derived backward at layer-stack level, in
/// the names and order of operations of tests/oracle/CONTRACT.md.
///
/// Each method offers, overloaded on its Config type:
///   XInputs  allocate_inputs(const XConfig&)                  zero tensors of the contract's
///   shapes XForward forward(const XConfig&, const XInputs&)          out.l, lse.l (+ aux) and
///   saved state XInputs  backward(const XConfig&, const XInputs&, const XForward&, const
///   std::vector<Tensor>& dout)
///                                                             ∂(Σ_l Σ out.l ⊙ dout.l)/∂(every
///                                                             input)
///   visit_inputs / visit_outputs / visit_aux(cfg, ..., f)     f(name, tensor) in CONTRACT.md names
#pragma once

#include "attention.hpp"       // IWYU pragma: export (vanilla, AttentionConfig, row helpers)
#include "depth.hpp"           // IWYU pragma: export
#include "exoformer.hpp"       // IWYU pragma: export
#include "gated.hpp"           // IWYU pragma: export
#include "mea.hpp"             // IWYU pragma: export
#include "ops.hpp"             // IWYU pragma: export
#include "tensor.hpp"          // IWYU pragma: export
#include "value_residual.hpp"  // IWYU pragma: export
