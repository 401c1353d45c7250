// The C ABI of ResFormer's value residual (layers l >= 1; SPEC §2, §7.3).
#include <strata/api/value_residual.hpp>

#include "capi_common.hpp"

using namespace strata_capi;

namespace {

/// The value-residual operands as ValueResidualArgs (attention fields already converted).
Status residual_args(const StrataAttention& a, const StrataValueResidual& r,
                     const FlashBwdParams& p, bool backward, strata::api::ValueResidualArgs* out) {
  *out = strata::api::ValueResidualArgs{};
  const bool varlen = given(a.cu_seqlens_q);
  Rows v0;
  if (Status s = rows_of(r.v_first, "v_first", varlen, true, &v0); !s.ok()) return s;
  if (Status s = check_dtype(r.v_first, "v_first", a.q.dtype); !s.ok()) return s;
  if (Status s = same_shape(r.v_first, "v_first", a.v, "v"); !s.ok()) return s;
  out->v_first = r.v_first.data;
  out->v_first_row_stride = v0.row_stride, out->v_first_head_stride = v0.head_stride;
  if (Status s = residual_lambdas(r, p.h_k, &out->granularity); !s.ok()) return s;
  const int64_t n = numel(r.lambda_self);
  out->lambda_self = static_cast<const float*>(r.lambda_self.data);
  out->lambda_first = static_cast<const float*>(r.lambda_first.data);
  if (!backward) return Status::Ok();
  if (Status s = check_f32_block(r.dv_first, "dv_first", int64_t(p.total_k) * p.h_k * p.d); !s.ok())
    return s;
  if (Status s = check_f32_block(r.dlambda_self, "dlambda_self", n); !s.ok()) return s;
  if (Status s = check_f32_block(r.dlambda_first, "dlambda_first", n); !s.ok()) return s;
  out->dv_first = static_cast<float*>(r.dv_first.data);
  out->dlambda_self = static_cast<float*>(r.dlambda_self.data);
  out->dlambda_first = static_cast<float*>(r.dlambda_first.data);
  return Status::Ok();
}

}  // namespace

extern "C" {

int strata_resformer_fwd(const StrataAttention* a, const StrataValueResidual* r) {
  return guarded([&]() -> Status {
    FlashBwdParams p;
    strata::api::ValueResidualArgs args;
    if (Status s = attention_params(*a, false, &p); !s.ok()) return s;
    if (Status s = residual_args(*a, *r, p, false, &args); !s.ok() || empty_problem(p)) return s;
    return strata::api::resformer_forward(p, args, stream_of(*a));
  });
}

int strata_resformer_bwd_workspace_bytes(const StrataAttention* a, const StrataValueResidual* r,
                                         int64_t* bytes) {
  return guarded([&]() -> Status {
    FlashBwdParams p;
    int64_t offset = 0;
    strata::api::ValueResidualArgs args;
    if (Status s = attention_params(*a, true, &p, &offset, false); !s.ok()) return s;
    if (Status s = residual_args(*a, *r, p, false, &args); !s.ok()) return s;
    *bytes = empty_problem(p) ? 0 : offset + int64_t(strata::api::workspace_bytes(p, args));
    return Status::Ok();
  });
}

int strata_resformer_bwd(const StrataAttention* a, const StrataValueResidual* r) {
  return guarded([&]() -> Status {
    FlashBwdParams p;
    int64_t offset = 0;
    strata::api::ValueResidualArgs args;
    if (Status s = attention_params(*a, true, &p, &offset); !s.ok()) return s;
    if (Status s = residual_args(*a, *r, p, true, &args); !s.ok()) return s;
    if (empty_problem(p)) {  // no tokens: dlambda = 0
      const int64_t n = numel(r->lambda_self);
      if (Status s = strata::api::value_residual_zero(args.dlambda_self, n, stream_of(*a)); !s.ok())
        return s;
      return strata::api::value_residual_zero(args.dlambda_first, n, stream_of(*a));
    }
    void* ws = nullptr;
    const int64_t bytes = int64_t(strata::api::workspace_bytes(p, args));
    if (Status s = variant_workspace(*a, offset, bytes, &ws); !s.ok()) return s;
    args.workspace = static_cast<float*>(ws), args.workspace_bytes = size_t(bytes);
    return strata::api::resformer_backward(p, args, stream_of(*a));
  });
}

}  // extern "C"
