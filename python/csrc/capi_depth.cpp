// The C ABI of Depth-Attention (SPEC §1, §7.2): one layer, the depth pass around the attention.
// A stack is the caller's: the layer's k^ and v^ are sources of later layers, whose backward
// shares come back as this layer's dkhat_acc / dvhat_acc (in strata_torch, through autograd).
#include <strata/api/depth_attention.hpp>

#include <string>

#include "capi_common.hpp"

using namespace strata_capi;

namespace {

/// A contiguous [.., heads, d] operand like `like` in the attention's dtype.
Status dense(const StrataTensor& t, const std::string& name, const StrataTensor& like,
             const char* like_name, int32_t dtype) {
  if (Status s = check_given(t, name); !s.ok()) return s;
  if (Status s = check_dtype(t, name.c_str(), dtype); !s.ok()) return s;
  if (Status s = same_shape(t, name.c_str(), like, like_name); !s.ok()) return s;
  if (!contiguous(t)) return invalid(name + " must be contiguous");
  if (reinterpret_cast<uintptr_t>(t.data) % 16) return invalid(name + " is not 16-byte aligned");
  return Status::Ok();
}

/// The pass's arguments for (a, x); `attn` already converted.
Status depth_layer(const StrataAttention& a, const StrataDepth& x, const FlashBwdParams& attn,
                   bool backward, strata::variants::DepthLayer* p) {
  *p = strata::variants::DepthLayer{};
  const int32_t dt = a.q.dtype;
  // the attention's operands are the pass's outputs: contiguous, as the pass writes them
  if (Status s = dense(a.q, "q_rot", x.q, "q", dt); !s.ok()) return s;
  if (Status s = dense(a.k, "khat", x.k, "k", dt); !s.ok()) return s;
  if (Status s = dense(a.v, "vhat", x.v, "v", dt); !s.ok()) return s;
  if (Status s = dense(x.q, "q", a.q, "q_rot", dt); !s.ok()) return s;
  if (Status s = dense(x.k, "k", a.k, "khat", dt); !s.ok()) return s;
  if (Status s = dense(x.v, "v", x.k, "k", dt); !s.ok()) return s;
  if (given(a.cu_seqlens_q) && a.cu_seqlens_q.data != a.cu_seqlens_k.data)
    return invalid("cu_seqlens_k: Depth-Attention is self-attention over one token layout");
  if (attn.seqlen_k != attn.seqlen_q || attn.total_k != attn.total_q)
    return invalid("k: Depth-Attention is self-attention (k has q's tokens)");
  p->total = attn.total_q, p->h = attn.h, p->h_k = attn.h_k;
  p->cu_seqlens = attn.cu_seqlens_q, p->b = attn.b, p->seqlen = attn.seqlen_q;
  p->local.qk_norm = given(x.gamma_q) || given(x.gamma_k);
  p->local.rope = x.rope != 0;
  p->local.eps = x.eps, p->local.rope_theta = x.rope_theta;
  if (p->local.qk_norm && !(x.eps > 0.f)) return invalid("eps must be positive");
  if (p->local.rope && !(x.rope_theta > 1.f)) return invalid("rope_theta must be above 1");
  p->q = x.q.data, p->k = x.k.data, p->v = x.v.data;
  p->q_rot = a.q.data, p->khat = a.k.data, p->vhat = a.v.data;
  if (p->local.qk_norm) {
    if (Status s = check_f32_block(x.gamma_q, "gamma_q", attn.d); !s.ok()) return s;
    if (Status s = check_f32_block(x.gamma_k, "gamma_k", attn.d); !s.ok()) return s;
    p->gamma_q = static_cast<const float*>(x.gamma_q.data);
    p->gamma_k = static_cast<const float*>(x.gamma_k.data);
  }
  if (x.num_sources < 0 || x.num_sources > strata::core::kMaxSources)
    return invalid("sources: " + std::to_string(x.num_sources) + " sources, at most " +
                   std::to_string(strata::core::kMaxSources));
  p->num_sources = x.num_sources;
  const int64_t acc = int64_t(attn.total_q) * attn.h_k * attn.d;
  for (int c = 0; c < x.num_sources; ++c) {
    const std::string n = "sources[" + std::to_string(c) + "]";
    if (Status s = dense(x.src_khat[c], n + ".khat", x.k, "k", dt); !s.ok()) return s;
    if (Status s = dense(x.src_vhat[c], n + ".vhat", x.k, "k", dt); !s.ok()) return s;
    if (x.src_khat[c].data == a.k.data || x.src_vhat[c].data == a.v.data)
      return invalid(n + ": the layer's own k^ / v^ cannot be its source");
    p->src_khat[c] = x.src_khat[c].data, p->src_vhat[c] = x.src_vhat[c].data;
    if (!backward) continue;
    if (Status s = check_f32_block(x.src_dkhat_acc[c], (n + ".dkhat").c_str(), acc); !s.ok())
      return s;
    if (Status s = check_f32_block(x.src_dvhat_acc[c], (n + ".dvhat").c_str(), acc); !s.ok())
      return s;
    p->src_dkhat_acc[c] = static_cast<float*>(x.src_dkhat_acc[c].data);
    p->src_dvhat_acc[c] = static_cast<float*>(x.src_dvhat_acc[c].data);
  }
  if (!backward) return Status::Ok();
  p->dq_rot = attn.dq, p->dkhat = attn.dk, p->dvhat = attn.dv;
  if (Status s = dense(a.dq, "dq_rot", a.q, "q", dt); !s.ok()) return s;
  if (Status s = dense(a.dk, "dkhat", a.k, "k", dt); !s.ok()) return s;
  if (Status s = dense(a.dv, "dvhat", a.v, "v", dt); !s.ok()) return s;
  for (const auto& [t, name] : {std::pair{&x.dkhat_acc, "dkhat_acc"}, {&x.dvhat_acc, "dvhat_acc"}})
    if (given(*t))
      if (Status s = check_f32_block(*t, name, acc); !s.ok()) return s;
  p->dkhat_acc = given(x.dkhat_acc) ? static_cast<const float*>(x.dkhat_acc.data) : nullptr;
  p->dvhat_acc = given(x.dvhat_acc) ? static_cast<const float*>(x.dvhat_acc.data) : nullptr;
  if (Status s = dense(x.dq, "dq", x.q, "q", dt); !s.ok()) return s;
  if (Status s = dense(x.dk, "dk", x.k, "k", dt); !s.ok()) return s;
  if (Status s = dense(x.dv, "dv", x.v, "v", dt); !s.ok()) return s;
  p->dq = x.dq.data, p->dk = x.dk.data, p->dv = x.dv.data;
  if (p->local.qk_norm) {
    if (Status s = check_f32_block(x.dgamma_q, "dgamma_q", attn.d); !s.ok()) return s;
    if (Status s = check_f32_block(x.dgamma_k, "dgamma_k", attn.d); !s.ok()) return s;
    p->dgamma_q = static_cast<float*>(x.dgamma_q.data);
    p->dgamma_k = static_cast<float*>(x.dgamma_k.data);
  }
  return Status::Ok();
}

Status depth_problem(const StrataAttention& a, const StrataDepth& x, bool backward,
                     bool need_workspace, FlashBwdParams* attn, strata::variants::DepthLayer* p,
                     int64_t* bytes) {
  int64_t offset = 0;
  if (Status s = attention_params(a, backward, attn, &offset, need_workspace); !s.ok()) return s;
  if (empty_problem(*attn)) {
    if (bytes) *bytes = 0;
    return Status::Ok();
  }
  if (Status s = depth_layer(a, x, *attn, backward, p); !s.ok()) return s;
  if (!backward) return Status::Ok();
  const int64_t pass = int64_t(strata::api::detail::depth_workspace_bytes(p->local, *attn));
  if (bytes) *bytes = offset + pass;
  if (!need_workspace) return Status::Ok();
  void* ws = nullptr;
  if (Status s = variant_workspace(a, offset, pass, &ws); !s.ok()) return s;
  p->partial = static_cast<float*>(ws);
  return Status::Ok();
}

}  // namespace

extern "C" {

int strata_depth_fwd(const StrataAttention* a, const StrataDepth* x) {
  return guarded([&]() -> Status {
    FlashBwdParams attn;
    strata::variants::DepthLayer p;
    if (Status s = depth_problem(*a, *x, false, false, &attn, &p, nullptr);
        !s.ok() || empty_problem(attn))
      return s;
    if (Status s =
            strata::api::detail::launch_depth_pass(p, attn.dtype, attn.d, false, stream_of(*a));
        !s.ok())
      return s;
    return strata::api::flash_fwd(static_cast<const FlashFwdParams&>(attn), stream_of(*a));
  });
}

int strata_depth_bwd_workspace_bytes(const StrataAttention* a, const StrataDepth* x,
                                     int64_t* bytes) {
  return guarded([&]() -> Status {
    FlashBwdParams attn;
    strata::variants::DepthLayer p;
    return depth_problem(*a, *x, true, false, &attn, &p, bytes);
  });
}

int strata_depth_bwd(const StrataAttention* a, const StrataDepth* x) {
  return guarded([&]() -> Status {
    FlashBwdParams attn;
    strata::variants::DepthLayer p;
    if (Status s = depth_problem(*a, *x, true, true, &attn, &p, nullptr);
        !s.ok() || empty_problem(attn))
      return s;
    if (Status s = strata::api::flash_bwd(attn, stream_of(*a)); !s.ok()) return s;
    return strata::api::detail::launch_depth_pass(p, attn.dtype, attn.d, true, stream_of(*a));
  });
}

}  // extern "C"
