// The C ABI of MEA (SPEC §4, §7.5): one layer of api::mea_forward / mea_backward, both GroupNorm
// sites. MEA layers are independent, so a layer is the whole problem.
#include <strata/api/mea.hpp>

#include <string>

#include "capi_common.hpp"

using namespace strata_capi;

namespace {

/// A contiguous activation in the attention's dtype whose leading dimensions are q's and whose
/// heads are `heads`.
Status activation(const StrataTensor& t, const char* name, const StrataTensor& q, int64_t heads,
                  int32_t dtype) {
  if (Status s = check_given(t, name); !s.ok()) return s;
  if (Status s = check_dtype(t, name, dtype); !s.ok()) return s;
  bool ok = t.ndim == q.ndim && t.shape[t.ndim - 2] == heads &&
            t.shape[t.ndim - 1] == q.shape[q.ndim - 1];
  for (int i = 0; ok && i < t.ndim - 2; ++i) ok = t.shape[i] == q.shape[i];
  if (!ok)
    return invalid(std::string(name) + ": shape " + shape_str(t) + ", expected q's tokens with " +
                   std::to_string(heads) + " heads of q's head_dim");
  if (!contiguous(t)) return invalid(std::string(name) + " must be contiguous");
  return Status::Ok();
}

Status mea_problem(const StrataAttention& a, const StrataMea& m, bool backward, bool need_workspace,
                   strata::api::MeaLayerParams* y, strata::api::MeaOptions* o, int64_t* offset) {
  *y = strata::api::MeaLayerParams{};
  if (Status s = attention_params(a, backward, &y->attn, offset, need_workspace); !s.ok()) return s;
  if (m.site != 0 && m.site != 1) return invalid("site: 0 (KeyValue) or 1 (Output)");
  o->site = m.site ? strata::core::NormSite::kOutput : strata::core::NormSite::kKeyValue;
  o->rope = m.rope != 0, o->rope_theta = m.rope_theta, o->gn_eps = m.gn_eps;
  const bool out_site = m.site == 1;
  const FlashBwdParams& at = y->attn;
  const int32_t dt = a.q.dtype;
  if (given(a.cu_seqlens_q) && a.cu_seqlens_q.data != a.cu_seqlens_k.data)
    return invalid("cu_seqlens_k: MEA is self-attention over one token layout");
  if (at.seqlen_k != at.seqlen_q || at.total_k != at.total_q)
    return invalid("kc: MEA is self-attention (the component heads have q's tokens)");
  if (Status s = check_given(m.kc, "kc"); !s.ok()) return s;
  const int64_t h_c = m.kc.ndim >= 2 ? m.kc.shape[m.kc.ndim - 2] : 0;
  y->h_c = int(h_c);
  if (Status s = activation(m.q, "q", a.q, at.h, dt); !s.ok()) return s;
  if (Status s = activation(m.kc, "kc", a.q, h_c, dt); !s.ok()) return s;
  if (Status s = activation(m.vc, "vc", a.q, h_c, dt); !s.ok()) return s;
  if (Status s = activation(a.q, "q_rot", a.q, at.h, dt); !s.ok()) return s;
  if (Status s = activation(a.k, "k_attn", a.q, at.h_k, dt); !s.ok()) return s;
  if (Status s = activation(a.v, "v_attn", a.q, at.h_k, dt); !s.ok()) return s;
  y->q = m.q.data, y->kc = m.kc.data, y->vc = m.vc.data;
  y->q_rot = a.q.data, y->k_attn = a.k.data, y->v_attn = a.v.data;  // the pass writes them
  if (Status s = matrix(m.a_k, "a_k", h_c, at.h_k); !s.ok()) return s;
  if (Status s = matrix(m.a_v, "a_v", h_c, at.h_k); !s.ok()) return s;
  y->a_k = static_cast<const float*>(m.a_k.data), y->a_v = static_cast<const float*>(m.a_v.data);
  if (!out_site) {
    const struct {
      const StrataTensor& t;
      const char* name;
      const float** p;
    } gn[] = {{m.gamma_k, "gamma_k", &y->gamma_k},
              {m.beta_k, "beta_k", &y->beta_k},
              {m.gamma_v, "gamma_v", &y->gamma_v},
              {m.beta_v, "beta_v", &y->beta_v}};
    for (const auto& g : gn) {
      if (Status s = matrix(g.t, g.name, at.h_k, at.d); !s.ok()) return s;
      *g.p = static_cast<const float*>(g.t.data);
    }
  } else {
    if (Status s = matrix(m.gamma_o, "gamma_o", at.h, at.d); !s.ok()) return s;
    if (Status s = matrix(m.beta_o, "beta_o", at.h, at.d); !s.ok()) return s;
    y->gamma_o = static_cast<const float*>(m.gamma_o.data);
    y->beta_o = static_cast<const float*>(m.beta_o.data);
    if (Status s = activation(m.kc_rot, "kc_rot", a.q, h_c, dt); !s.ok()) return s;
    if (Status s = activation(m.out, "out", a.q, at.h, dt); !s.ok()) return s;
    y->kc_rot = m.kc_rot.data, y->out = m.out.data;
  }
  if (!backward) return Status::Ok();
  if (Status s = activation(m.dq, "dq", a.q, at.h, dt); !s.ok()) return s;
  if (Status s = activation(m.dkc, "dkc", a.q, h_c, dt); !s.ok()) return s;
  if (Status s = activation(m.dvc, "dvc", a.q, h_c, dt); !s.ok()) return s;
  y->dq = m.dq.data, y->dkc = m.dkc.data, y->dvc = m.dvc.data;
  if (Status s = matrix(m.da_k, "da_k", h_c, at.h_k); !s.ok()) return s;
  if (Status s = matrix(m.da_v, "da_v", h_c, at.h_k); !s.ok()) return s;
  y->da_k = static_cast<float*>(m.da_k.data), y->da_v = static_cast<float*>(m.da_v.data);
  const int64_t gh = out_site ? at.h : at.h_k;
  const struct {
    const StrataTensor& t;
    const char* name;
    float** p;
  } dgn[] = {{out_site ? m.dgamma_o : m.dgamma_k, out_site ? "dgamma_o" : "dgamma_k",
              out_site ? &y->dgamma_o : &y->dgamma_k},
             {out_site ? m.dbeta_o : m.dbeta_k, out_site ? "dbeta_o" : "dbeta_k",
              out_site ? &y->dbeta_o : &y->dbeta_k},
             {m.dgamma_v, "dgamma_v", &y->dgamma_v},
             {m.dbeta_v, "dbeta_v", &y->dbeta_v}};
  for (int i = 0; i < (out_site ? 2 : 4); ++i) {
    if (Status s = matrix(dgn[i].t, dgn[i].name, gh, at.d); !s.ok()) return s;
    *dgn[i].p = static_cast<float*>(dgn[i].t.data);
  }
  return Status::Ok();
}

}  // namespace

extern "C" {

int strata_mea_fwd(const StrataAttention* a, const StrataMea* m) {
  return guarded([&]() -> Status {
    strata::api::MeaLayerParams y;
    strata::api::MeaOptions o;
    int64_t offset = 0;
    if (Status s = mea_problem(*a, *m, false, false, &y, &o, &offset);
        !s.ok() || empty_problem(y.attn))
      return s;
    return strata::api::mea_forward(y, o, stream_of(*a));
  });
}

int strata_mea_bwd_workspace_bytes(const StrataAttention* a, const StrataMea* m, int64_t* bytes) {
  return guarded([&]() -> Status {
    strata::api::MeaLayerParams y;
    strata::api::MeaOptions o;
    int64_t offset = 0;
    if (Status s = mea_problem(*a, *m, true, false, &y, &o, &offset); !s.ok()) return s;
    *bytes = empty_problem(y.attn) ? 0 : offset + int64_t(strata::api::workspace_bytes(y, o));
    return Status::Ok();
  });
}

int strata_mea_bwd(const StrataAttention* a, const StrataMea* m) {
  return guarded([&]() -> Status {
    strata::api::MeaLayerParams y;
    strata::api::MeaOptions o;
    int64_t offset = 0;
    if (Status s = mea_problem(*a, *m, true, true, &y, &o, &offset);
        !s.ok() || empty_problem(y.attn))
      return s;
    const int64_t bytes = int64_t(strata::api::workspace_bytes(y, o));
    void* ws = nullptr;
    if (Status s = variant_workspace(*a, offset, bytes, &ws); !s.ok()) return s;
    return strata::api::mea_backward(y, o, ws, size_t(bytes), stream_of(*a));
  });
}

}  // extern "C"
