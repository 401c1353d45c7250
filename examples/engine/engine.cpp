// An engine's serving code calling the one configuration it instantiated (gated_bf16_d128.hpp):
// this TU includes only that light header and compiles no kernel (the ctests
// engine_no_kernel_in_engine_tu and static_gpu_engine_instantiation check its object file from
// g++ and from nvcc). main() runs one forward in the simulator and checks it against a float64
// loop.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <strata/api/builders.hpp>  // light: Params and Status, no kernel

#include "gated_bf16_d128.hpp"

int main() {
  const int s = 37, h = 2, d = 128;
  std::vector<__nv_bfloat16> q(s * h * d), k(s * h * d), v(s * h * d), g(s * h * d), o(s * h * d);
  std::vector<float> lse(h * s);
  for (size_t i = 0; i < q.size(); ++i) {
    q[i] = __float2bfloat16(std::sin(0.37f * float(i)));
    k[i] = __float2bfloat16(std::cos(0.11f * float(i)));
    v[i] = __float2bfloat16(std::sin(0.05f * float(i) + 1.f));
    g[i] = __float2bfloat16(std::cos(0.23f * float(i)));
  }
  // one sequence of s tokens, contiguous [s, h, d]; scale d ** -0.5
  const strata::attention::FlashFwdParams p = strata::api::contiguous_params(
      1, s, s, {.h = h, .d = d},
      {.q = q.data(), .k = k.data(), .v = v.data(), .o = o.data(), .lse = lse.data()},
      {.causal = true});
  if (strata::Status st = engine::gated_attention_bf16_d128(p, g.data(), h * d, d, 0); !st.ok()) {
    std::printf("engine: %s\n", st.message());
    return 1;
  }
  strata::attention::FlashFwdParams wrong = p;
  wrong.d = 64;
  const strata::Status refused = engine::gated_attention_bf16_d128(wrong, g.data(), h * d, d, 0);
  // float64 reference: causal softmax(q k^T / sqrt(d)) v, times sigmoid(g)
  auto f = [](__nv_bfloat16 x) { return double(__bfloat162float(x)); };
  double worst = 0;
  for (int head = 0; head < h; ++head)
    for (int i = 0; i < s; ++i) {
      std::vector<double> w(size_t(i) + 1);
      double m = -1e300, z = 0;
      for (int j = 0; j <= i; ++j) {
        double dot = 0;
        for (int c = 0; c < d; ++c)
          dot += f(q[(i * h + head) * d + c]) * f(k[(j * h + head) * d + c]);
        w[size_t(j)] = dot / std::sqrt(double(d));
        m = std::max(m, w[size_t(j)]);
      }
      for (double& x : w) z += x = std::exp(x - m);
      for (int c = 0; c < d; ++c) {
        double acc = 0;
        for (int j = 0; j <= i; ++j) acc += w[size_t(j)] / z * f(v[(j * h + head) * d + c]);
        const size_t at = size_t((i * h + head) * d + c);
        acc /= 1 + std::exp(-f(g[at]));
        worst = std::max(worst, std::fabs(acc - f(o[at])));
      }
    }
  std::printf("engine: gated attention bf16 d=128 in the simulator, max error %.2e; d = 64 -> %s\n",
              worst, refused.message());
  const bool ok = worst < 2e-2 && refused.code() == strata::StatusCode::kUnsupported;
  std::printf(ok ? "engine example OK\n" : "engine example FAILED\n");
  return ok ? 0 : 1;
}
