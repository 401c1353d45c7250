/// \file
/// Buffers a stack's token-local pass writes and its attention then reads (Depth-Attention's
/// q_rot, k^, v^; ExoFormer's q~, k~, v~, g~; MEA's q_rot, k_attn, v_attn). The attention's
/// Params type them `const void*` (for the attention they are inputs), so a layer names each in
/// a non-const field of its own, and the stack points the attention's field at it: that field is
/// the stack's to set, left null or given the same buffer. No cast removes a const.
#pragma once

#include <string>

#include "strata/status.hpp"

namespace strata::api::detail {

/// Points the attention's input field `in` (named `in_name`) at the pass's output `out`
/// (named `out_name`); refuses an `in` that names another buffer, and a null `out` where the
/// pass writes rows (`required`).
inline Status bind_pass_output(const void*& in, void* out, const std::string& in_name,
                               const std::string& out_name, bool required = true) {
  if (!out && required) return Status::InvalidArgument(out_name + " is null (the pass writes it)");
  if (in && in != out)
    return Status::InvalidArgument(in_name + ": the stack points it at " + out_name +
                                   ", which the pass writes; leave it null (or the same buffer)");
  in = out;
  return Status::Ok();
}

}  // namespace strata::api::detail
