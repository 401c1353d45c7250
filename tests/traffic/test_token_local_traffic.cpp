// Traffic of the fused token-local passes (issue: at most 1.05x the cost model's minimum bytes),
// counted by the simulator's traffic build: every byte a launch loads from or stores to the
// problem's tensors and workspaces, against strata/cost's minimum for the pass.
#include <strata/api/exoformer.hpp>
#include <strata/api/mea.hpp>
#include <strata/api/qk_norm_rope.hpp>
#include <strata/cost/depth.hpp>
#include <strata/cost/exoformer.hpp>
#include <strata/cost/gated.hpp>
#include <strata/cost/mea.hpp>
#include <strata/variants/depth_attention.cuh>
#include <strata/variants/exoformer.cuh>
#include <strata/variants/mea.cuh>

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common.hpp"

static_assert(strata::sim::traffic::kEnabled, "tests/traffic must be compiled as a traffic build");

namespace {

namespace traffic = strata::sim::traffic;
namespace api = strata::api;
namespace att = strata::attention;
namespace cost = strata::cost;
using bf16 = __nv_bfloat16;

template <class T>
void watch(std::vector<T>& v) {
  traffic::watch(v.data(), v.size() * sizeof(T));
}

/// n bf16 activations of a repeating pattern (values in [-period/20, period/20)).
std::vector<bf16> act(size_t n, int period) {
  std::vector<bf16> x(n);
  for (size_t i = 0; i < n; ++i)
    x[i] = strata::core::from_float<bf16>(0.1f * float(int(i % period) - period / 2));
  return x;
}

/// Bytes loaded plus stored by every launch of `run`.
template <class F>
int64_t bytes_moved(F run) {
  strata::sim::reset_counters();
  EXPECT_TRUE(run().ok());
  const strata::sim::Counters c = strata::sim::total_counters();
  return int64_t(c.global_load_bytes + c.global_store_bytes);
}

/// QK-norm + RoPE over `tokens` tokens (varlen: three sequences), H = 4, H_kv = 2, head dim D.
template <int D>
void check_qk_pass(int tokens, bool qk_norm) {
  strata_test::SimGuard guard;
  traffic::clear();
  const int H = 4, Hk = 2;
  const std::vector<int> cu = {0, tokens / 3, tokens / 3, tokens};
  std::vector<bf16> q(size_t(tokens) * H * D), k(size_t(tokens) * Hk * D);
  for (size_t i = 0; i < q.size(); ++i) q[i] = strata::core::from_float<bf16>(float(i % 13) - 6);
  for (size_t i = 0; i < k.size(); ++i) k[i] = strata::core::from_float<bf16>(float(i % 7) - 3);
  std::vector<bf16> qy(q.size()), ky(k.size()), dq(q.size()), dk(k.size());
  std::vector<float> gq(D, 1.1f), gk(D, 0.9f), dgq(D), dgk(D);
  api::QkNormRopeParams p;
  p.d = D, p.options.qk_norm = qk_norm;
  auto side = [&](api::QkRows& s, std::vector<bf16>& x, std::vector<bf16>& y, std::vector<bf16>& dx,
                  int heads, std::vector<float>& g, std::vector<float>& dg) {
    s.x = x.data(), s.y = y.data(), s.dy = y.data(), s.dx = dx.data();
    s.x_row_stride = s.y_row_stride = s.dy_row_stride = s.dx_row_stride = int64_t(heads) * D;
    s.x_head_stride = s.y_head_stride = s.dy_head_stride = s.dx_head_stride = D;
    s.heads = heads, s.total = tokens, s.b = 3, s.cu_seqlens = cu.data();
    s.gamma = g.data(), s.dgamma = dg.data();
  };
  side(p.q, q, qy, dq, H, gq, dgq);
  side(p.k, k, ky, dk, Hk, gk, dgk);
  std::vector<float> work(api::workspace_bytes(p) / sizeof(float) + 1);
  p.workspace = work.data(), p.workspace_bytes = work.size() * sizeof(float);
  for (auto* v : {&q, &k, &qy, &ky, &dq, &dk}) watch(*v);
  for (auto* v : {&gq, &gk, &dgq, &dgk, &work}) watch(*v);

  cost::ModelShape m;
  m.num_heads = H, m.num_kv_heads = Hk, m.head_dim = D;
  const int64_t fwd_min = cost::qk_norm_rope_forward_traffic(m, qk_norm, cost::kBf16).total(tokens);
  const int64_t bwd_min =
      cost::qk_norm_rope_backward_traffic(m, qk_norm, cost::kBf16).total(tokens);
  const int64_t fwd = bytes_moved([&] { return api::qk_norm_rope_forward(p); });
  const int64_t bwd = bytes_moved([&] { return api::qk_norm_rope_backward(p); });
  std::printf(
      "qk_norm_rope d %d tokens %d norm %d: forward %lld / %lld B (%.4fx), backward %lld / "
      "%lld B (%.4fx)\n",
      D, tokens, int(qk_norm), (long long)fwd, (long long)fwd_min, double(fwd) / double(fwd_min),
      (long long)bwd, (long long)bwd_min, double(bwd) / double(bwd_min));
  // never below the minimum (that would mean a missed operand), at most 5% above it
  EXPECT_GE(fwd, fwd_min);
  EXPECT_LE(double(fwd), 1.05 * double(fwd_min));
  EXPECT_GE(bwd, bwd_min);
  EXPECT_LE(double(bwd), 1.05 * double(bwd_min));
  traffic::clear();
}

TEST(TokenLocalTraffic, QkNormRopeWithinFivePercentOfTheMinimum) {
  check_qk_pass<64>(3000, true);
  check_qk_pass<128>(1000, true);
  check_qk_pass<96>(700, false);
}

/// Depth-Attention's fused pass of a layer with two sources that is itself a source, QK-norm and
/// RoPE on: forward and backward (with the dgamma reduction) against cost::depth_fused_*_traffic.
template <int D>
void check_depth_pass(int tokens) {
  namespace sv = strata::variants;
  strata_test::SimGuard guard;
  traffic::clear();
  const int H = 8, Hk = 2, N = 2;
  const std::vector<int> cu = {0, tokens / 2, tokens};
  const size_t nq = size_t(tokens) * H * D, nk = size_t(tokens) * Hk * D;
  std::vector<bf16> q = act(nq, 13), k = act(nk, 7), v = act(nk, 5), q_rot(nq), khat(nk), vhat(nk);
  std::vector<bf16> s0k = act(nk, 3), s0v = act(nk, 11), s1k = act(nk, 9), s1v = act(nk, 4);
  std::vector<bf16> dq_rot = act(nq, 6), dkhat = act(nk, 8), dvhat = act(nk, 10), dq(nq), dk(nk),
                    dv(nk);
  std::vector<float> gq(D, 1.1f), gk(D, 0.9f), dgq(D), dgk(D);
  std::vector<float> acc_k(nk, 0.01f), acc_v(nk, 0.02f), a0k(nk), a0v(nk), a1k(nk), a1v(nk);
  const int blocks =
      int((int64_t(tokens) * Hk + sv::kDepthRowsPerBlock - 1) / sv::kDepthRowsPerBlock);
  std::vector<float> partial(size_t(blocks) * 2 * D);
  sv::DepthLayer p;
  p.local.qk_norm = true;  // RoPE is on by default, QK-norm only when asked
  p.total = tokens, p.h = H, p.h_k = Hk, p.cu_seqlens = cu.data(), p.b = 2;
  p.q = q.data(), p.k = k.data(), p.v = v.data();
  p.q_rot = q_rot.data(), p.khat = khat.data(), p.vhat = vhat.data();
  p.gamma_q = gq.data(), p.gamma_k = gk.data();
  p.num_sources = N;
  p.src_khat[0] = s0k.data(), p.src_vhat[0] = s0v.data();
  p.src_khat[1] = s1k.data(), p.src_vhat[1] = s1v.data();
  p.dq_rot = dq_rot.data(), p.dkhat = dkhat.data(), p.dvhat = dvhat.data();
  p.dkhat_acc = acc_k.data(), p.dvhat_acc = acc_v.data();
  p.src_dkhat_acc[0] = a0k.data(), p.src_dvhat_acc[0] = a0v.data();
  p.src_dkhat_acc[1] = a1k.data(), p.src_dvhat_acc[1] = a1v.data();
  p.dq = dq.data(), p.dk = dk.data(), p.dv = dv.data();
  p.partial = partial.data(), p.dgamma_q = dgq.data(), p.dgamma_k = dgk.data();
  for (auto* b : {&q, &k, &v, &q_rot, &khat, &vhat, &s0k, &s0v, &s1k, &s1v, &dq_rot, &dkhat, &dvhat,
                  &dq, &dk, &dv})
    watch(*b);
  for (auto* b : {&gq, &gk, &dgq, &dgk, &acc_k, &acc_v, &a0k, &a0v, &a1k, &a1v, &partial})
    watch(*b);

  cost::ModelShape m;
  m.num_heads = H, m.num_kv_heads = Hk, m.head_dim = D;
  const int64_t fwd_min = cost::depth_fused_forward_traffic(m, N, true, cost::kBf16).total(tokens);
  // The counter sees a read-modify-write of one element (the sources' accumulators, acc += x) as
  // a single store: g++ checks an address once per basic block. Compare like with like: the
  // model's minimum without those reads (2 N H_kv d fp32 per token).
  const int64_t rmw_reads = int64_t(tokens) * 2 * N * Hk * D * 4;
  const int64_t bwd_min =
      cost::depth_fused_backward_traffic(m, N, true, true, cost::kBf16).total(tokens) - rmw_reads;
  const int64_t fwd = bytes_moved([&] {
    return strata::launch(sv::depth_forward_kernel<bf16, D>, dim3(unsigned(blocks)),
                          dim3(sv::kDepthThreads), 0, 0, p);
  });
  const int64_t bwd = bytes_moved([&] {
    if (auto st = strata::launch(sv::depth_backward_kernel<bf16, D>, dim3(unsigned(blocks)),
                                 dim3(sv::kDepthThreads), 0, 0, p);
        !st.ok())
      return st;
    return strata::launch(sv::depth_dgamma_reduce_kernel<D>, dim3(1), dim3(2 * D), 0, 0,
                          static_cast<const float*>(p.partial), blocks, p.dgamma_q, p.dgamma_k);
  });
  std::printf(
      "depth pass d %d tokens %d, 2 sources: forward %lld / %lld B (%.4fx), backward "
      "%lld / %lld B (%.4fx)\n",
      D, tokens, (long long)fwd, (long long)fwd_min, double(fwd) / double(fwd_min), (long long)bwd,
      (long long)bwd_min, double(bwd) / double(bwd_min));
  EXPECT_GE(fwd, fwd_min);
  EXPECT_LE(double(fwd), 1.05 * double(fwd_min));
  EXPECT_GE(bwd, bwd_min);
  EXPECT_LE(double(bwd), 1.05 * double(bwd_min));
  traffic::clear();
}

TEST(TokenLocalTraffic, DepthPassWithinFivePercentOfTheMinimum) {
  check_depth_pass<64>(1500);
  check_depth_pass<128>(700);
}

/// Tokens whose mix pass has 2 full chunks of blocks and 3 blocks more.
inline int exo_two_stage_tokens() {
  return (2 * strata::variants::kExoChunkBlocks + 3) * strata::variants::kExoTokensPerBlock - 5;
}

/// ExoFormer's fused mix pass of one layer (four streams, H = 4, H_kv = 2, dynamic scales):
/// forward, and backward as a middle layer (accumulate dA^) or as layer 0 (finalize d anchor),
/// with the parameter-gradient reduction, against cost::exoformer_fused_*_traffic.
template <int D>
void check_exo_pass(int tokens, strata::core::MixGranularity g, bool accumulate, bool finalize) {
  namespace sv = strata::variants;
  strata_test::SimGuard guard;
  traffic::clear();
  const int H = 4, Hk = 2;
  const std::vector<int> cu = {0, tokens / 2, tokens};
  sv::ExoMix m;
  m.total = tokens, m.h = H, m.h_k = Hk, m.cu_seqlens = cu.data(), m.b = 2;
  m.granularity = g, m.accumulate = accumulate, m.finalize = finalize;
  std::vector<std::vector<bf16>> acts;
  std::vector<std::vector<float>> fp32;
  acts.reserve(32), fp32.reserve(32);
  auto rows = [&](int heads, int period) -> sv::ExoRows {
    acts.push_back(act(size_t(tokens) * heads * D, period));
    return {acts.back().data(), int64_t(heads) * D, D};
  };
  auto out = [&](int heads) -> sv::ExoRowsOut {
    acts.emplace_back(size_t(tokens) * heads * D);
    return {acts.back().data(), int64_t(heads) * D, D};
  };
  auto floats = [&](size_t n, float v) {
    fp32.emplace_back(n, v);
    return fp32.back().data();
  };
  const int64_t nlam_max = int64_t(H) * D;
  for (int p = 0; p < 4; ++p) {
    const int heads = p == 1 || p == 2 ? Hk : H;
    sv::ExoStream& S = m.stream[p];
    S.p = rows(heads, 7 + p), S.anchor = rows(heads, 5 + p), S.dout = rows(heads, 9 + p);
    S.out = out(heads), S.dp = out(heads), S.danchor = out(heads);
    S.gamma_anchor = floats(D, 1.1f);
    S.lambda1 = floats(size_t(nlam_max), 0.7f), S.lambda2 = floats(size_t(nlam_max), 0.4f);
    S.danchor_acc = floats(size_t(tokens) * heads * D, 0.01f);
    S.dlambda1 = floats(size_t(nlam_max), 0.f), S.dlambda2 = floats(size_t(nlam_max), 0.f);
    S.dgamma_anchor = floats(D, 0.f);
  }
  m.gamma_q = floats(D, 1.2f), m.gamma_k = floats(D, 0.8f);
  m.dgamma_q = floats(D, 0.f), m.dgamma_k = floats(D, 0.f);
  std::vector<float> s(size_t(tokens) * 8);
  for (size_t i = 0; i < s.size(); ++i) s[i] = 0.3f + 0.05f * float(i % 9);
  m.s = s.data(), m.ds = floats(size_t(tokens) * 8, 0.f);
  const int blocks = sv::exo_blocks(tokens);
  m.partial = floats(size_t(sv::exo_workspace_floats(tokens, H, D)), 0.f);
  for (auto& b : acts) watch(b);
  for (auto& b : fp32) watch(b);
  watch(s);

  cost::ModelShape ms;
  ms.num_heads = H, ms.num_kv_heads = Hk, ms.head_dim = D;
  cost::ExoOptions o;
  o.lambda = g;
  const int64_t fwd_min = cost::exoformer_fused_forward_traffic(ms, o, cost::kBf16).total(tokens);
  const int64_t bwd_min =
      cost::exoformer_fused_backward_traffic(ms, o, accumulate, finalize, cost::kBf16)
          .total(tokens);
  const dim3 grid(unsigned(blocks), 4);
  const int64_t fwd = bytes_moved([&] {
    return strata::launch(sv::exo_mix_forward_kernel<bf16, D>, grid, dim3(sv::kExoThreads), 0, 0,
                          m);
  });
  // the backward as the API launches it: the pass, then the reduction (two stages past
  // kExoChunkBlocks blocks)
  const int64_t bwd = bytes_moved([&] {
    return strata::api::detail::launch_exo_mix(m, strata::attention::Dtype::kBf16, D, true, 0);
  });
  // the reduction's result equals the one-stage sum of the same block partials (each warp over
  // every block) up to both sums' fp32 rounding: |two - one| <= 2 n u sum|terms|, n the terms of
  // the output (blocks x the span its lambda covers), sum|terms| the one-stage sum of |partials|
  {
    std::vector<std::vector<float>> two;  // the launcher's outputs, in the order compared below
    std::vector<const float*> one, mag;   // the one-stage sums of the partials and of |partials|
    const auto reduce = [&](const float* partial, std::vector<const float*>* out) {
      sv::ExoMix r = m;
      r.partial = const_cast<float*>(partial);
      const auto own = [&](float*& x, size_t n) {
        if (out == &one) two.emplace_back(x, x + n);
        x = floats(n, NAN);
        out->push_back(x);
      };
      for (int p = 0; p < 4; ++p) {
        own(r.stream[p].dlambda1, size_t(nlam_max)), own(r.stream[p].dlambda2, size_t(nlam_max));
        own(r.stream[p].dgamma_anchor, D);
      }
      own(r.dgamma_q, D), own(r.dgamma_k, D);
      int outputs = 0;
      for (int p = 0; p < 4; ++p) outputs = std::max(outputs, sv::exo_reduce_outputs(m, p, D));
      return strata::launch(
          sv::exo_reduce_kernel<D>,
          dim3(unsigned((outputs + sv::kExoReduceWarps - 1) / sv::kExoReduceWarps), 4),
          dim3(32 * sv::kExoReduceWarps), 0, 0, r, blocks);
    };
    const size_t nblock = size_t(4) * blocks * size_t(sv::exo_partial_floats(H, D));
    std::vector<float> abs_partial(m.partial, m.partial + nblock);
    for (float& x : abs_partial) x = std::fabs(x);
    ASSERT_TRUE(reduce(m.partial, &one).ok());
    ASSERT_TRUE(reduce(abs_partial.data(), &mag).ok());
    using strata::core::MixGranularity;
    const int span = g == MixGranularity::kElementwise ? 1
                     : g == MixGranularity::kHeadwise  ? D
                                                       : H * D;
    int64_t compared = 0;
    for (size_t k = 0; k < two.size(); ++k) {
      const int p = int(k / 3), kind = int(k % 3);  // per stream: dlambda1, dlambda2, dgamma_anchor
      const bool lambda = k < 12 && kind < 2;
      if (k < 12 && kind == 2 && !finalize) continue;  // not an output of this layer
      const int64_t n = lambda ? strata::api::exo_lambda_count(g, p == 1 || p == 2 ? Hk : H, D) : D;
      const double terms = double(blocks) * (lambda ? span : 1);
      for (int64_t i = 0; i < n; ++i) {
        const double tol = 2 * terms * 0x1p-24 * double(mag[k][i]);
        EXPECT_LE(std::fabs(double(two[k][size_t(i)]) - double(one[k][i])), tol)
            << "output " << k << "[" << i << "]: two-stage " << two[k][size_t(i)] << ", one-stage "
            << one[k][i];
      }
      compared += n;
    }
    EXPECT_GT(compared, 0);
  }
  std::printf(
      "exo pass d %d tokens %d lambda %d acc %d fin %d: forward %lld / %lld B (%.4fx), backward "
      "%lld / %lld B (%.4fx)\n",
      D, tokens, int(g), int(accumulate), int(finalize), (long long)fwd, (long long)fwd_min,
      double(fwd) / double(fwd_min), (long long)bwd, (long long)bwd_min,
      double(bwd) / double(bwd_min));
  EXPECT_GE(fwd, fwd_min);
  EXPECT_LE(double(fwd), 1.05 * double(fwd_min));
  EXPECT_GE(bwd, bwd_min);
  EXPECT_LE(double(bwd), 1.05 * double(bwd_min));
  traffic::clear();
}

TEST(TokenLocalTraffic, ExoFormerPassWithinFivePercentOfTheMinimum) {
  using strata::core::MixGranularity;
  check_exo_pass<64>(2048, MixGranularity::kElementwise, true, false);
  check_exo_pass<64>(2048, MixGranularity::kScalar, true, true);
  check_exo_pass<128>(1024, MixGranularity::kHeadwise, false, false);
  // past kExoChunkBlocks blocks: the two-stage reduction (a partial last chunk)
  check_exo_pass<64>(exo_two_stage_tokens(), MixGranularity::kElementwise, true, true);
  check_exo_pass<64>(exo_two_stage_tokens(), MixGranularity::kHeadwise, false, false);
}

/// MEA's fused KeyValue-site pass (HLC of K and V with head GroupNorm, RoPE on K' and q):
/// forward, and backward with the parameter-gradient reduction, against
/// cost::mea_kv_fused_*_traffic; full MEA (H_c = H_kv) and virtual heads (H_c < H_kv).
template <int D>
void check_mea_kv_pass(int tokens, int H, int Hk, int Hc) {
  namespace sv = strata::variants;
  strata_test::SimGuard guard;
  traffic::clear();
  const std::vector<int> cu = {0, tokens / 3, tokens};
  const size_t nq = size_t(tokens) * H * D, nk = size_t(tokens) * Hk * D,
               nc = size_t(tokens) * Hc * D;
  std::vector<bf16> q = act(nq, 13), kc = act(nc, 7), vc = act(nc, 5), q_rot(nq), k_attn(nk),
                    v_attn(nk);
  std::vector<bf16> dq_rot = act(nq, 6), dk_attn = act(nk, 8), dv_attn = act(nk, 10), dq(nq),
                    dkc(nc), dvc(nc);
  const size_t na = size_t(Hc) * size_t(Hk), ng = size_t(Hk) * D;
  std::vector<float> ak(na, 0.5f), av(na, 0.7f), g(ng, 1.1f), b(ng, 0.1f), g2(ng, 0.9f),
      b2(ng, -0.1f);
  std::vector<float> dak(na), dav(na), dg1(ng), db1(ng), dg2(ng), db2(ng);
  const sv::MeaGeometry geo = sv::mea_geometry(tokens, Hk, Hc, D);
  std::vector<float> partial(size_t(geo.blocks) * size_t(sv::mea_partial_floats(Hk, Hc, D)));
  sv::MeaLayer p;
  p.total = tokens, p.h = H, p.h_kv = Hk, p.h_c = Hc, p.cu_seqlens = cu.data(), p.b = 2;
  p.a_k = ak.data(), p.a_v = av.data();
  p.gamma_k = g.data(), p.beta_k = b.data(), p.gamma_v = g2.data(), p.beta_v = b2.data();
  p.q = q.data(), p.kc = kc.data(), p.vc = vc.data();
  p.q_rot = q_rot.data(), p.k_attn = k_attn.data(), p.v_attn = v_attn.data();
  p.dq_rot = dq_rot.data(), p.dk_attn = dk_attn.data(), p.dv_attn = dv_attn.data();
  p.dq = dq.data(), p.dkc = dkc.data(), p.dvc = dvc.data();
  p.partial = partial.data();
  for (auto* v :
       {&q, &kc, &vc, &q_rot, &k_attn, &v_attn, &dq_rot, &dk_attn, &dv_attn, &dq, &dkc, &dvc})
    watch(*v);
  for (auto* v : {&ak, &av, &g, &b, &g2, &b2, &dak, &dav, &dg1, &db1, &dg2, &db2, &partial})
    watch(*v);
  cost::ModelShape m;
  m.num_heads = H, m.num_kv_heads = Hk, m.head_dim = D;
  const int64_t fwd_min = cost::mea_kv_fused_forward_traffic(m, Hc, cost::kBf16).total(tokens);
  const int64_t bwd_min = cost::mea_kv_fused_backward_traffic(m, Hc, cost::kBf16).total(tokens);
  const size_t smem = size_t(sv::mea_smem_floats(geo.m, Hk, Hc, D)) * sizeof(float);
  const int64_t fwd = bytes_moved([&] {
    return strata::launch(sv::mea_forward_kernel<bf16, D>, dim3(unsigned(geo.blocks)),
                          dim3(geo.threads()), smem, 0, p);
  });
  sv::MeaReduce r;
  r.partial = partial.data(), r.blocks = geo.blocks, r.h_kv = Hk, r.h_c = Hc, r.d = D;
  r.da_k = dak.data(), r.da_v = dav.data(), r.dgamma_k = dg1.data(), r.dbeta_k = db1.data();
  r.dgamma_v = dg2.data(), r.dbeta_v = db2.data();
  const int64_t n = sv::mea_partial_floats(Hk, Hc, D);
  const int64_t bwd = bytes_moved([&] {
    if (auto st = strata::launch(sv::mea_backward_kernel<bf16, D>, dim3(unsigned(geo.blocks)),
                                 dim3(geo.threads()), smem, 0, p);
        !st.ok())
      return st;
    return strata::launch(sv::mea_reduce_kernel<256>, dim3(unsigned((n + 255) / 256)), dim3(256), 0,
                          0, r);
  });
  std::printf(
      "mea kv pass d %d tokens %d H %d/%d H_c %d: forward %lld / %lld B (%.4fx), backward %lld / "
      "%lld B (%.4fx)\n",
      D, tokens, H, Hk, Hc, (long long)fwd, (long long)fwd_min, double(fwd) / double(fwd_min),
      (long long)bwd, (long long)bwd_min, double(bwd) / double(bwd_min));
  EXPECT_GE(fwd, fwd_min);
  EXPECT_LE(double(fwd), 1.05 * double(fwd_min));
  EXPECT_GE(bwd, bwd_min);
  EXPECT_LE(double(bwd), 1.05 * double(bwd_min));
  traffic::clear();
}

TEST(TokenLocalTraffic, MeaKeyValuePassWithinFivePercentOfTheMinimum) {
  check_mea_kv_pass<64>(3000, 8, 4, 2);   // virtual heads
  check_mea_kv_pass<128>(2000, 8, 4, 4);  // full MEA
  check_mea_kv_pass<96>(1500, 4, 2, 1);
}

/// MEA's Output-site token-local passes (the attention around them is not counted): forward,
/// RoPE on q and K_c; backward, the HLC backward from dK', dV' with RoPE's backward of dq and K_c,
/// and the GroupNorm's dγ_o, dβ_o from O, dL/dout and the preprocess's row statistics; against
/// cost::mea_output_{prepass_forward,fused_backward}_traffic.
template <int D>
void check_mea_output_passes(int tokens, int H, int Hk, int Hc) {
  strata_test::SimGuard guard;
  traffic::clear();
  std::vector<int> cu = {0, tokens / 3, tokens};
  const size_t nq = size_t(tokens) * H * D, nk = size_t(tokens) * Hk * D,
               nc = size_t(tokens) * Hc * D, na = size_t(Hc) * size_t(Hk), no = size_t(H) * D;
  std::vector<bf16> q = act(nq, 13), kc = act(nc, 7), vc = act(nc, 5), q_rot(nq), kc_rot(nc);
  std::vector<bf16> dq_rot = act(nq, 6), dk = act(nk, 8), dv = act(nk, 10), o = act(nq, 9),
                    dout = act(nq, 4), dq(nq), dkc(nc), dvc(nc);
  std::vector<float> ak(na, 0.5f), av(na, 0.7f), dak(na), dav(na), dg(no), db(no);
  api::MeaOptions opt;
  opt.site = strata::core::NormSite::kOutput;
  api::MeaLayerParams y;
  att::FlashBwdParams& a = y.attn;
  a.dtype = att::Dtype::kBf16, a.b = 2, a.h = H, a.h_k = Hk, a.d = D;
  a.total_q = a.total_k = tokens, a.seqlen_q = a.seqlen_k = tokens - tokens / 3;
  a.cu_seqlens_q = a.cu_seqlens_k = a.cu_seqlens_q_host = a.cu_seqlens_k_host = cu.data();
  y.q_rot = q_rot.data(), a.dq = dq_rot.data(), a.dk = dk.data(), a.dv = dv.data();
  a.o = o.data(), a.dout = dout.data();
  y.h_c = Hc, y.q = q.data(), y.kc = kc.data(), y.vc = vc.data(), y.kc_rot = kc_rot.data();
  y.a_k = ak.data(), y.a_v = av.data(), y.da_k = dak.data(), y.da_v = dav.data();
  y.dq = dq.data(), y.dkc = dkc.data(), y.dvc = dvc.data();
  y.dgamma_o = dg.data(), y.dbeta_o = db.data();
  std::vector<float> work(api::workspace_bytes(y, opt) / sizeof(float) + 4, 0.5f);
  for (auto* v : {&q, &kc, &vc, &q_rot, &kc_rot, &dq_rot, &dk, &dv, &o, &dout, &dq, &dkc, &dvc})
    watch(*v);
  for (auto* v : {&ak, &av, &dak, &dav, &dg, &db, &work}) watch(*v);
  cost::ModelShape m;
  m.num_heads = H, m.num_kv_heads = Hk, m.head_dim = D;
  const int64_t fwd_min =
      cost::mea_output_prepass_forward_traffic(m, Hc, cost::kBf16).total(tokens);
  const int64_t bwd_min = cost::mea_output_fused_backward_traffic(m, Hc, cost::kBf16).total(tokens);
  const int64_t fwd = bytes_moved(
      [&] { return api::detail::mea_launch<bf16, D>(y, opt, false, nullptr, nullptr); });
  const int64_t bwd = bytes_moved(
      [&] { return api::detail::mea_launch<bf16, D>(y, opt, true, work.data(), nullptr); });
  std::printf(
      "mea output passes d %d tokens %d H %d/%d H_c %d: forward %lld / %lld B (%.4fx), backward "
      "%lld / %lld B (%.4fx)\n",
      D, tokens, H, Hk, Hc, (long long)fwd, (long long)fwd_min, double(fwd) / double(fwd_min),
      (long long)bwd, (long long)bwd_min, double(bwd) / double(bwd_min));
  EXPECT_GE(fwd, fwd_min);
  EXPECT_LE(double(fwd), 1.05 * double(fwd_min));
  EXPECT_GE(bwd, bwd_min);
  EXPECT_LE(double(bwd), 1.05 * double(bwd_min));
  traffic::clear();
}

TEST(TokenLocalTraffic, MeaOutputPassesWithinFivePercentOfTheMinimum) {
  check_mea_output_passes<64>(3000, 8, 4, 2);  // virtual heads
  check_mea_output_passes<128>(2000, 8, 4, 4);
}

}  // namespace
