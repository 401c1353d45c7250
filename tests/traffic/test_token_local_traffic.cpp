// Traffic of the fused token-local passes (issue: at most 1.05x the cost model's minimum bytes),
// counted by the simulator's traffic build: every byte a launch loads from or stores to the
// problem's tensors and workspaces, against strata/cost's minimum for the pass.
#include <strata/api/qk_norm_rope.hpp>
#include <strata/cost/gated.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common.hpp"

static_assert(strata::sim::traffic::kEnabled, "tests/traffic must be compiled as a traffic build");

namespace {

namespace traffic = strata::sim::traffic;
namespace api = strata::api;
namespace cost = strata::cost;
using bf16 = __nv_bfloat16;

template <class T>
void watch(std::vector<T>& v) {
  traffic::watch(v.data(), v.size() * sizeof(T));
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
  std::vector<float> work(api::qk_norm_rope_workspace_bytes(p) / sizeof(float) + 1);
  p.workspace = work.data();
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

}  // namespace
