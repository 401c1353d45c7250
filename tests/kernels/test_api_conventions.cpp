// The public API's conventions (issue 16): one default per concept (strata/core/defaults.hpp),
// describe() for every method's options, and one workspace convention (api/workspace.hpp).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <strata/api/describe.hpp>

namespace {

namespace api = strata::api;
namespace core = strata::core;
using strata::attention::FlashBwdParams;

// --- one default per concept ---------------------------------------------------------------

TEST(Defaults, EveryOptionsStructTakesTheOneTable) {
  const api::QkNormRopeOptions qk;
  EXPECT_FALSE(qk.qk_norm);  // optional norms: off unless asked
  EXPECT_TRUE(qk.rope);
  EXPECT_EQ(qk.eps, strata::defaults::kRmsNormEps);
  EXPECT_EQ(qk.rope_theta, 10000.f);
  const api::ExoOptions exo;
  EXPECT_TRUE(exo.rope);
  EXPECT_EQ(exo.rope_theta, 500000.f);  // ExoFormer's official train.py
  EXPECT_EQ(exo.norm_eps, 1e-6f);
  EXPECT_EQ(exo.anchor_eps, 1e-6f);
  const api::MeaOptions mea;
  EXPECT_TRUE(mea.rope);
  EXPECT_EQ(mea.rope_theta, 10000.f);
  EXPECT_EQ(mea.gn_eps, 1e-5f);
  // the kernels' argument structs default to the same values as the options they are filled from
  const strata::variants::ExoMix exo_kernel;
  EXPECT_EQ(exo_kernel.rope, exo.rope);
  EXPECT_EQ(exo_kernel.rope_theta, exo.rope_theta);
  EXPECT_EQ(exo_kernel.norm_eps, exo.norm_eps);
  EXPECT_EQ(exo_kernel.anchor_eps, exo.anchor_eps);
  const strata::variants::MeaLayer mea_kernel;
  EXPECT_EQ(mea_kernel.rope, mea.rope);
  EXPECT_EQ(mea_kernel.rope_theta, mea.rope_theta);
  EXPECT_EQ(mea_kernel.eps, mea.gn_eps);
  const strata::variants::MeaPagedArgs mea_decode;
  EXPECT_EQ(mea_decode.rope_theta, mea.rope_theta);
  EXPECT_EQ(mea_decode.eps, mea.gn_eps);
  // a decode stack's Depth pass defaults as the training stack's
  EXPECT_FALSE(api::DecodeStack{}.local.qk_norm);
}

/// A one-layer Depth stack over contiguous buffers (validation only: nothing is launched).
struct DepthOneLayer {
  std::vector<uint16_t> act = std::vector<uint16_t>(size_t(6) * 16 * 2 * 64 + 64);
  std::vector<float> lse = std::vector<float>(32);
  api::DepthStack st;
  DepthOneLayer() {
    api::DepthStackLayer y;
    const size_t n = size_t(16) * 2 * 64;
    uint16_t* a = act.data();
    y.attn = api::contiguous_params(1, 16, 16, {.h = 2, .h_k = 2, .d = 64},
                                    {.o = a, .lse = lse.data()}, {.causal = true});
    y.q = a + n, y.k = a + 2 * n, y.v = a + 3 * n;
    y.q_rot = a + 4 * n, y.khat = a + 5 * n, y.vhat = a + 6 * n;
    st.layers.push_back(y);
  }
};

TEST(Defaults, ADefaultDepthStackNeedsNoGains) {
  DepthOneLayer d;
  EXPECT_TRUE(d.st.validate(false).ok()) << d.st.validate(false).message();
  EXPECT_EQ(api::workspace_bytes(d.st), 0u);  // nor a workspace
  d.st.local.qk_norm = true;                  // asked for: its gains are required
  const std::string m = d.st.validate(false).message();
  EXPECT_NE(m.find("layers[0].gamma_q / gamma_k is null (qk_norm)"), std::string::npos) << m;
  d.st.layers[0].gamma_q = d.st.layers[0].gamma_k = d.lse.data();
  EXPECT_TRUE(d.st.validate(false).ok());
  EXPECT_GT(api::workspace_bytes(d.st), 0u);
}

// --- outputs typed as outputs ------------------------------------------------------------

TEST(Outputs, TheStackPointsTheAttentionAtThePassOutputs) {
  DepthOneLayer d;
  d.st.layers[0].attn.q = d.st.layers[0].q_rot;  // the same buffer: accepted
  EXPECT_TRUE(d.st.validate(false).ok());
  d.st.layers[0].attn.k = d.st.layers[0].k;  // another one: refused by name
  EXPECT_EQ(std::string(d.st.validate(false).message()),
            "layers[0].attn.k: the stack points it at layers[0].khat, which the pass writes; "
            "leave it null (or the same buffer)");
  d.st.layers[0].attn.k = nullptr, d.st.layers[0].vhat = nullptr;
  EXPECT_EQ(std::string(d.st.validate(false).message()),
            "layers[0].vhat is null (the pass writes it)");
}

TEST(Outputs, AStackWithoutTokensNeedsNoOutputBuffers) {
  const api::PackedBatch batch = api::PackedBatch::of({0, 0});
  alignas(16) static uint16_t raw[64];
  api::DepthStack st;
  for (int l = 0; l < 2; ++l) {
    api::DepthStackLayer y;  // raw inputs given, the pass's outputs not
    y.attn = api::packed_params(batch, batch.cu_q.data(), batch.cu_k.data(),
                                {.h = 4, .h_k = 2, .d = 64}, {});
    y.q = y.k = y.v = raw;
    y.sources = api::depth_sources(2, 1, 0)[size_t(l)];  // layer 1 reads layer 0
    st.layers.push_back(y);
  }
  EXPECT_TRUE(st.validate(false).ok()) << st.validate(false).message();
  EXPECT_TRUE(st.forward().ok());
}

// --- describe() ----------------------------------------------------------------------------

TEST(Describe, TheDefaultsOfEveryMethod) {
  EXPECT_EQ(api::describe(api::QkNormRopeOptions{}),
            "QkNormRopeOptions{qk_norm=off, rope=on, eps=1e-06, rope_theta=10000}");
  EXPECT_EQ(api::describe(api::ExoOptions{}),
            "ExoOptions{granularity=elementwise, dynamic=on, rope=on, rope_theta=500000, "
            "norm_eps=1e-06, anchor_eps=1e-06}");
  EXPECT_EQ(api::describe(api::MeaOptions{}),
            "MeaOptions{site=key_value, gn_eps=1e-05, rope=on, rope_theta=10000}");
  EXPECT_EQ(api::describe(api::FlashOptions{}),
            "FlashOptions{causal=off, window_left=-1, softmax_scale=0, deterministic=on}");
  EXPECT_EQ(api::describe(api::GateArgs{}), "GateArgs{kind=elementwise}");
  EXPECT_EQ(api::describe(api::ValueResidualArgs{}), "ValueResidualArgs{granularity=scalar}");
}

TEST(Describe, FloatsReadBackAsTheSameValue) {
  for (float x : {1e-6f, 1e-5f, 0.125f, 500000.f, 123456.789f, 0.1f, 3.14159274f}) {
    api::QkNormRopeOptions o;
    o.eps = x;
    const std::string s = api::describe(o);
    const size_t at = s.find("eps=") + 4;
    EXPECT_EQ(std::strtof(s.c_str() + at, nullptr), x) << s;
  }
}

TEST(Describe, ParamsAndStacks) {
  const FlashBwdParams p = api::contiguous_params(2, 100, 120, {.h = 8, .h_k = 2, .d = 64}, {},
                                                  {.causal = true, .window_left = 32});
  EXPECT_EQ(api::describe(static_cast<const strata::attention::FlashFwdParams&>(p)),
            "Attention{dtype=bf16, b=2, h=8, h_k=2, d=64, layout=fixed, seqlen_q=100, "
            "seqlen_k=120, total_q=200, causal=on, window_left=32, softmax_scale=0.125}");
  EXPECT_NE(api::describe(p).find("softmax_scale=0.125, deterministic=on}"), std::string::npos);
  const api::PackedBatch batch = api::PackedBatch::of({3, 5});
  const FlashBwdParams v = api::packed_params(batch, batch.cu_q.data(), batch.cu_k.data(),
                                              {.h = 4, .d = 128, .dtype = api::Dtype::kFp16}, {});
  EXPECT_NE(api::describe(v).find("dtype=fp16, b=2, h=4, h_k=4, d=128, layout=varlen, seqlen_q=5"),
            std::string::npos)
      << api::describe(v);

  api::DepthStack depth;
  depth.local.qk_norm = true;
  depth.layers.resize(3);
  const auto sources = api::depth_sources(3, 2, 1);
  for (size_t l = 0; l < 3; ++l) depth.layers[l].sources = sources[l];
  EXPECT_EQ(api::describe(depth),
            "DepthStack{local=QkNormRopeOptions{qk_norm=on, rope=on, eps=1e-06, "
            "rope_theta=10000}, layers=3, sources=[[],[0],[0,1]]}");

  api::ExoStack exo;
  exo.options.granularity = core::MixGranularity::kHeadwise, exo.options.dynamic = false;
  exo.layers.resize(2);
  EXPECT_EQ(api::describe(exo),
            "ExoStack{options=ExoOptions{granularity=headwise, dynamic=off, rope=on, "
            "rope_theta=500000, norm_eps=1e-06, anchor_eps=1e-06}, layers=2}");

  api::MeaStack mea;
  mea.options.site = core::NormSite::kOutput, mea.options.rope = false;
  mea.layers.resize(2);
  mea.layers[0].h_c = 4, mea.layers[1].h_c = 2;
  EXPECT_EQ(api::describe(mea),
            "MeaStack{options=MeaOptions{site=output, gn_eps=1e-05, rope=off, rope_theta=10000}, "
            "layers=2, h_c=[4,2]}");

  api::ValueResidualStack vr;
  vr.kind = api::ValueResidualKind::kSVFormer;
  vr.layers.resize(4);
  EXPECT_EQ(api::describe(vr), "ValueResidualStack{kind=svformer, granularity=scalar, layers=4}");

  api::DecodeStack dec;
  dec.method = api::DecodeMethod::kMea;
  dec.h_kv = 8, dec.num_splits = 3, dec.softmax_scale = 0.125f;
  dec.layers.resize(2);
  EXPECT_EQ(api::describe(dec),
            "DecodeStack{method=mea, mea=MeaOptions{site=key_value, gn_eps=1e-05, rope=on, "
            "rope_theta=10000}, h_kv=8, causal=on, window_left=-1, softmax_scale=0.125, "
            "num_splits=3, layers=2}");
  dec.method = api::DecodeMethod(42);
  EXPECT_NE(api::describe(dec).find("method=invalid"), std::string::npos);
}

// --- one workspace convention ----------------------------------------------------------------

TEST(Workspace, OneCheckNamesTheField) {
  using api::detail::check_workspace;
  alignas(16) static float buf[64];
  EXPECT_TRUE(check_workspace(nullptr, 0, 0).ok());  // no need: no workspace
  EXPECT_TRUE(check_workspace(buf, 256, 256).ok());
  EXPECT_EQ(std::string(check_workspace(nullptr, 256, 256).message()),
            "workspace is null: the call needs 256 bytes (api::workspace_bytes)");
  EXPECT_EQ(std::string(check_workspace(buf + 1, 256, 128, "gate.workspace").message()),
            "gate.workspace is not 16-byte aligned");
  EXPECT_EQ(std::string(check_workspace(buf, 100, 128).message()),
            "workspace_bytes = 100: less than the 128 bytes the call needs (api::workspace_bytes)");
}

TEST(Workspace, ZeroWhereACallNeedsNone) {
  // QK-norm + RoPE: partials only with the norm
  api::QkNormRopeParams qk;
  qk.d = 64, qk.q.heads = 2, qk.q.total = 300, qk.k.heads = 1, qk.k.total = 300;
  EXPECT_EQ(api::workspace_bytes(qk), 0u);
  qk.options.qk_norm = true;
  EXPECT_EQ(api::workspace_bytes(qk), size_t(3 + 2) * 64 * sizeof(float));  // 600 and 300 rows
  // SVFormer and a one-layer ResFormer stack
  api::ValueResidualStack vr;
  vr.layers.resize(3);
  vr.layers[0].attn = api::contiguous_params(1, 16, 16, {.h = 2, .d = 64}, {});
  EXPECT_GT(api::workspace_bytes(vr), 0u);
  vr.kind = api::ValueResidualKind::kSVFormer;
  EXPECT_EQ(api::workspace_bytes(vr), 0u);
  vr.kind = api::ValueResidualKind::kResFormer, vr.layers.resize(1);
  EXPECT_EQ(api::workspace_bytes(vr), 0u);
  // paged attention with one split
  api::PagedAttentionParams pa;
  pa.cache.d = 64, pa.h = 4, pa.total_q = 8, pa.num_splits = 1;
  EXPECT_EQ(api::workspace_bytes(pa), 0u);
  pa.num_splits = 2;
  EXPECT_EQ(api::workspace_bytes(pa), size_t(2) * 8 * 4 * 65 * sizeof(float));
  // empty stacks
  EXPECT_EQ(api::workspace_bytes(api::ExoStack{}), 0u);
  EXPECT_EQ(api::workspace_bytes(api::MeaStack{}), 0u);
  EXPECT_EQ(api::workspace_bytes(api::DecodeStack{}), 0u);
}

}  // namespace
