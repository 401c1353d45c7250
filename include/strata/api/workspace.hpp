/// \file
/// The workspace convention of every API. A call that needs scratch memory of its own (whose
/// size and layout are the implementation's, unlike the shape-given tensors o, lse, dsum) takes
/// it as a pair of fields on its params or stack:
///   void* / float* workspace;  size_t workspace_bytes;
/// `api::workspace_bytes(...)`, overloaded on the call's arguments (less the stream), says how
/// many bytes the call needs (the backward's, which covers the forward's); allocate that many,
/// 16-byte aligned (cudaMalloc's 256 are), and pass them with their size. Every launcher checks
/// the pair before it writes anything, naming the field: null where bytes are needed, a size
/// below the need, or a misaligned pointer. A need of 0 takes no workspace.
///
///   QkNormRopeParams p;  ...                        workspace_bytes(p)
///   gated_backward(attn, gate)                      workspace_bytes(attn, gate)
///   resformer_forward / backward(attn, args)        workspace_bytes(attn, args)
///   mea_backward(y, options, workspace, bytes)      workspace_bytes(y, options)
///   DepthStack / ExoStack / MeaStack / ValueResidualStack / DecodeStack st;  workspace_bytes(st)
///   paged_attention(p)                              workspace_bytes(p)
///
/// flash_bwd's dq_accum has its own size field (dq_accum_bytes, flash_bwd_dq_accum_bytes): its
/// FlashAttention name and layout are kept.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "strata/status.hpp"

namespace strata::api::detail {

/// The convention's check of one (workspace, workspace_bytes) pair against the call's need;
/// `name` names the pointer field ("workspace", "gate.workspace", ...).
inline Status check_workspace(const void* workspace, size_t workspace_bytes, size_t need,
                              const std::string& name = "workspace") {
  if (need == 0) return Status::Ok();
  if (!workspace)
    return Status::InvalidArgument(name + " is null: the call needs " + std::to_string(need) +
                                   " bytes (api::workspace_bytes)");
  if (reinterpret_cast<uintptr_t>(workspace) % 16)
    return Status::InvalidArgument(name + " is not 16-byte aligned");
  if (workspace_bytes < need)
    return Status::InvalidArgument(name + "_bytes = " + std::to_string(workspace_bytes) +
                                   ": less than the " + std::to_string(need) +
                                   " bytes the call needs (api::workspace_bytes)");
  return Status::Ok();
}

}  // namespace strata::api::detail
