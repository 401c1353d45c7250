/// \file
/// describe(): one line per method's options, for logs and run records ("what did this run
/// compute"), e.g.
///
///   ExoOptions{granularity=elementwise, dynamic=on, rope=on, rope_theta=500000, norm_eps=1e-06,
///              anchor_eps=1e-06}
///
/// One overload per options struct, and per stack (its options, then each layer's own: sources,
/// component heads, ...). Every value is printed as the run uses it (a float in the fewest
/// digits that read back as the same float). The options structs are unpacked by structured
/// bindings, which compile only for the exact number of fields: a field added without a line here
/// breaks the build instead of leaving it out of every log.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "strata/api/builders.hpp"
#include "strata/api/decode.hpp"
#include "strata/api/depth_attention.hpp"
#include "strata/api/exoformer.hpp"
#include "strata/api/flash.hpp"
#include "strata/api/mea.hpp"
#include "strata/api/output_gate.hpp"
#include "strata/api/qk_norm_rope.hpp"
#include "strata/api/value_residual.hpp"

namespace strata::api {

namespace detail {
/// "name=value" pieces joined as Type{a=1, b=2}.
class Fields {
 public:
  explicit Fields(const char* type) : s_(std::string(type) + "{") {}
  Fields& add(const char* name, const std::string& value) {
    if (!first_) s_ += ", ";
    s_.append(name).append("=").append(value);
    first_ = false;
    return *this;
  }
  Fields& on(const char* name, bool v) { return add(name, v ? "on" : "off"); }
  /// The shortest %g form that reads back as the same float (1e-06, not 9.99999997e-07).
  Fields& num(const char* name, float v) {
    char b[32];
    for (int digits = 6; digits <= 9; ++digits) {
      std::snprintf(b, sizeof b, "%.*g", digits, double(v));
      if (std::strtof(b, nullptr) == v) break;
    }
    return add(name, b);
  }
  Fields& num(const char* name, int64_t v) { return add(name, std::to_string(v)); }
  Fields& num(const char* name, int v) { return num(name, int64_t(v)); }
  std::string str() const { return s_ + "}"; }

 private:
  std::string s_;
  bool first_ = true;
};

inline std::string name_of(core::MixGranularity g) {
  return g == core::MixGranularity::kElementwise ? "elementwise"
         : g == core::MixGranularity::kHeadwise  ? "headwise"
         : g == core::MixGranularity::kScalar    ? "scalar"
                                                 : "invalid";
}
inline std::string name_of(core::GateKind k) {
  return k == core::GateKind::kElementwise ? "elementwise"
         : k == core::GateKind::kHeadwise  ? "headwise"
                                           : "invalid";
}
inline std::string name_of(core::NormSite s) {
  return s == core::NormSite::kKeyValue ? "key_value"
         : s == core::NormSite::kOutput ? "output"
                                        : "invalid";
}
inline std::string name_of(Dtype t) {
  return t == Dtype::kBf16 ? "bf16" : t == Dtype::kFp16 ? "fp16" : "invalid";
}
inline std::string name_of(ValueResidualKind k) {
  return k == ValueResidualKind::kResFormer  ? "resformer"
         : k == ValueResidualKind::kSVFormer ? "svformer"
                                             : "invalid";
}
inline std::string name_of(DecodeMethod m) {
  switch (m) {
    case DecodeMethod::kVanilla:
      return "vanilla";
    case DecodeMethod::kGated:
      return "gated";
    case DecodeMethod::kResFormer:
      return "resformer";
    case DecodeMethod::kSVFormer:
      return "svformer";
    case DecodeMethod::kDepth:
      return "depth";
    case DecodeMethod::kExoFormer:
      return "exoformer";
    case DecodeMethod::kMea:
      return "mea";
  }
  return "invalid";
}
inline std::string list(const std::vector<int>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {  // append: g++ 12 warns (-Wrestrict) on "," + string
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s + "]";
}
}  // namespace detail

/// QK-norm + RoPE (Depth-Attention's local pass, Gated Attention's pass).
inline std::string describe(const QkNormRopeOptions& o) {
  const auto& [qk_norm, rope, eps, rope_theta] = o;
  return detail::Fields("QkNormRopeOptions")
      .on("qk_norm", qk_norm)
      .on("rope", rope)
      .num("eps", eps)
      .num("rope_theta", rope_theta)
      .str();
}

inline std::string describe(const ExoOptions& o) {
  const auto& [granularity, dynamic, rope, rope_theta, norm_eps, anchor_eps] = o;
  return detail::Fields("ExoOptions")
      .add("granularity", detail::name_of(granularity))
      .on("dynamic", dynamic)
      .on("rope", rope)
      .num("rope_theta", rope_theta)
      .num("norm_eps", norm_eps)
      .num("anchor_eps", anchor_eps)
      .str();
}

inline std::string describe(const MeaOptions& o) {
  const auto& [site, gn_eps, rope, rope_theta] = o;
  return detail::Fields("MeaOptions")
      .add("site", detail::name_of(site))
      .num("gn_eps", gn_eps)
      .on("rope", rope)
      .num("rope_theta", rope_theta)
      .str();
}

/// The builders' options, as given (softmax_scale 0: d ** -0.5, which the built Params show).
inline std::string describe(const FlashOptions& o) {
  const auto& [causal, window_left, softmax_scale, deterministic] = o;
  return detail::Fields("FlashOptions")
      .on("causal", causal)
      .num("window_left", window_left)
      .num("softmax_scale", softmax_scale)
      .on("deterministic", deterministic)
      .str();
}

namespace detail {
inline Fields attention_fields(const FlashFwdParams& p) {
  Fields f("Attention");
  f.add("dtype", name_of(p.dtype)).num("b", p.b).num("h", p.h).num("h_k", p.h_k).num("d", p.d);
  f.add("layout", p.cu_seqlens_q ? "varlen" : "fixed");
  f.num("seqlen_q", p.seqlen_q).num("seqlen_k", p.seqlen_k).num("total_q", p.total_q);
  f.on("causal", p.is_causal).num("window_left", p.window_left);
  return f.num("softmax_scale", p.softmax_scale);
}
}  // namespace detail

/// The attention problem of Params: storage, shape, batch layout, mask and scale.
inline std::string describe(const FlashFwdParams& p) {
  return detail::attention_fields(p).str();
}
/// The same and the backward's mode.
inline std::string describe(const FlashBwdParams& p) {
  return detail::attention_fields(p).on("deterministic", p.deterministic).str();
}

/// Gated Attention's option (the gate's granularity).
inline std::string describe(const GateArgs& g) {
  return detail::Fields("GateArgs").add("kind", detail::name_of(g.kind)).str();
}

/// ResFormer's option (lambda's granularity).
inline std::string describe(const ValueResidualArgs& a) {
  return detail::Fields("ValueResidualArgs")
      .add("granularity", detail::name_of(a.granularity))
      .str();
}

inline std::string describe(const ValueResidualStack& st) {
  return detail::Fields("ValueResidualStack")
      .add("kind", detail::name_of(st.kind))
      .add("granularity", detail::name_of(st.granularity))
      .num("layers", int64_t(st.layers.size()))
      .str();
}

/// Depth-Attention: the local pass's options and each layer's sources.
inline std::string describe(const DepthStack& st) {
  detail::Fields f("DepthStack");
  f.add("local", describe(st.local)).num("layers", int64_t(st.layers.size()));
  std::string sources = "[";
  for (size_t l = 0; l < st.layers.size(); ++l) {
    if (l) sources += ',';
    sources += detail::list(st.layers[l].sources);
  }
  return f.add("sources", sources + "]").str();
}

inline std::string describe(const ExoStack& st) {
  return detail::Fields("ExoStack")
      .add("options", describe(st.options))
      .num("layers", int64_t(st.layers.size()))
      .str();
}

/// MEA: the options and each layer's component heads h_c over its composite heads h_k.
inline std::string describe(const MeaStack& st) {
  detail::Fields f("MeaStack");
  f.add("options", describe(st.options)).num("layers", int64_t(st.layers.size()));
  std::vector<int> h_c;
  for (const MeaLayerParams& y : st.layers) h_c.push_back(y.h_c);
  return f.add("h_c", detail::list(h_c)).str();
}

/// A decode step: the method, its options and the attention's mask and splits.
inline std::string describe(const DecodeStack& st) {
  detail::Fields f("DecodeStack");
  f.add("method", detail::name_of(st.method));
  switch (st.method) {
    case DecodeMethod::kGated:
      f.add("gate_kind", detail::name_of(st.gate_kind));
      break;
    case DecodeMethod::kResFormer:
      f.add("granularity", detail::name_of(st.granularity));
      break;
    case DecodeMethod::kDepth:
      f.add("local", describe(st.local));
      break;
    case DecodeMethod::kExoFormer:
      f.add("exo", describe(st.exo));
      break;
    case DecodeMethod::kMea:
      f.add("mea", describe(st.mea)).num("h_kv", st.h_kv);
      break;
    default:
      break;
  }
  return f.on("causal", st.is_causal)
      .num("window_left", st.window_left)
      .num("softmax_scale", st.softmax_scale)
      .num("num_splits", st.plan ? st.plan->num_splits : st.num_splits)
      .num("layers", int64_t(st.layers.size()))
      .str();
}

}  // namespace strata::api
