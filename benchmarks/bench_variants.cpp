// The fused attention variants beside vanilla attention at the same shape: what each method's
// attention layer costs over FlashAttention's (ISSUE: "each method's extra cost over vanilla").
// Every row times one layer's calls as a trainer makes them, forward or backward:
//   vanilla      flash_fwd / flash_bwd
//   resformer    resformer_forward / resformer_backward (V' = l_self V + l_first V_0 mixed as V
//                tiles load; backward adds l_first g to the fp32 dV_0 accumulator, dlambda)
//   gated        gated_forward / gated_backward, elementwise sigmoid gate (Gated Attention's G1)
//   gated_head   the same with one gate per head
//   mea_kv       mea_forward / mea_backward at the KeyValue GroupNorm site (H_c = H/2 component
//                heads: the token-local pass, then vanilla attention)
//   mea_output   the Output site (pass, K'/V' composition, attention with the GroupNorm
//                epilogue; backward with its preprocess and the pass)
// The FLOP counter is vanilla attention's by FlashAttention's convention for every method, so
// that a method's rate over vanilla's is the inverse of its time ratio: scripts/gpu_report.py
// prints that ratio. One source, two executors (see bench_flash.cpp): the host build times the
// simulator on a small shape (`simulator=1`, not a GPU timing); nvcc's build (bench_variants_gpu)
// times the GPU on the papers' head counts (H = 16 heads of d = 64 (Depth-Attention 410M,
// ResFormer), 96 (ExoFormer) and 128, 16k tokens per batch, causal).
#include <strata/api/flash.hpp>
#include <strata/api/mea.hpp>
#include <strata/api/output_gate.hpp>
#include <strata/api/value_residual.hpp>
#include <strata/cost/attention.hpp>

#include <benchmark/benchmark.h>

#include "bench_common.hpp"

#include <cmath>
#include <string>

namespace {

namespace att = strata::attention;
namespace api = strata::api;
using bf16 = __nv_bfloat16;
using namespace strata_bench;

enum Method { kVanilla, kResFormer, kGated, kGatedHead, kMeaKv, kMeaOutput, kMethods };
const char* const kMethodNames[kMethods] = {"vanilla",    "resformer", "gated",
                                            "gated_head", "mea_kv",    "mea_output"};

/// (method, seqlen, d); causal, H = 16 query and KV heads (MEA: 16 composite heads from 8
/// components), 16k tokens per batch on a GPU; one sequence of 128 tokens, 2 heads, in the
/// simulator.
void shapes(benchmark::internal::Benchmark* b) {
  if (kSimulator)
    b->ArgsProduct({{kVanilla, kResFormer, kGated, kGatedHead, kMeaKv, kMeaOutput}, {128}, {64}});
  else
    b->ArgsProduct({{kVanilla, kResFormer, kGated, kGatedHead, kMeaKv, kMeaOutput},
                    {2048, 8192},
                    {64, 96, 128}})
        ->UseManualTime();
  b->ArgNames({"method", "seqlen", "d"})->Unit(benchmark::kMillisecond);
}

/// One layer's operands and the calls that time it.
struct Layer {
  Method method;
  att::FlashBwdParams attn;
  api::ValueResidualArgs vr;
  api::GateArgs gate;
  api::MeaLayerParams mea;
  api::MeaOptions mea_options;
  void* mea_workspace = nullptr;
  size_t mea_workspace_bytes = 0;

  Layer(Method m, int T, int d) : method(m) {
    const int B = kSimulator ? 1 : 16384 / T, H = kSimulator ? 2 : 16, Hc = H / 2;
    const size_t total = size_t(B) * T, n = total * H * d, nc = total * Hc * d;
    att::FlashBwdParams& p = attn;
    p.q = shared_pattern("q", n, 13, 0.01f), p.k = shared_pattern("k", n, 7, 0.02f);
    p.v = shared_pattern("v", n, 5, 0.1f), p.o = shared_pattern("o", n, 1, 0.f);
    p.dout = shared_pattern("dout", n, 11, 0.03f, -0.1f);
    p.dq = shared_pattern("dq", n, 1, 0.f), p.dk = shared_pattern("dk", n, 1, 0.f);
    p.dv = shared_pattern("dv", n, 1, 0.f);
    p.lse = shared_fill("lse", total * H), p.dsum = shared_fill("dsum", total * H);
    p.dtype = att::Dtype::kBf16;
    p.b = B, p.h = p.h_k = H, p.d = d, p.seqlen_q = p.seqlen_k = T;
    p.total_q = p.total_k = int(total);
    p.q_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = int64_t(H) * d;
    p.k_row_stride = p.v_row_stride = p.dk_row_stride = p.dv_row_stride = int64_t(H) * d;
    p.q_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = d;
    p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = d;
    p.softmax_scale = 1.f / std::sqrt(float(d));
    p.is_causal = true;
    switch (m) {
      case kResFormer:
        vr.v_first = shared_pattern("v_first", n, 3, 0.05f);
        vr.v_first_row_stride = int64_t(H) * d, vr.v_first_head_stride = d;
        vr.lambda_self = shared_fill("lambda_self", 1, 0.5f);
        vr.lambda_first = shared_fill("lambda_first", 1, 0.5f);
        vr.dv_first = shared_fill("dv_first", n);
        vr.dlambda_self = shared_fill("dlambda_self", 1);
        vr.dlambda_first = shared_fill("dlambda_first", 1);
        vr.workspace_bytes = api::workspace_bytes(p, vr);
        vr.workspace = shared_fill("vr_workspace", (vr.workspace_bytes + 3) / 4);
        break;
      case kGated:
      case kGatedHead: {
        const bool head = m == kGatedHead;
        const size_t ng = head ? total * H : n;
        gate.kind = head ? strata::core::GateKind::kHeadwise : strata::core::GateKind::kElementwise;
        gate.gate = shared_pattern("gate", ng, 9, 0.25f, -1.f);
        gate.gate_row_stride = head ? H : int64_t(H) * d, gate.gate_head_stride = head ? 1 : d;
        gate.dgate = shared_pattern("dgate", ng, 1, 0.f);
        gate.workspace_bytes = api::workspace_bytes(p, gate);  // dO: n elements
        gate.workspace = shared_pattern("gate_workspace", n, 1, 0.f);
        break;
      }
      case kMeaKv:
      case kMeaOutput: {
        const bool out = m == kMeaOutput;
        mea_options.site =
            out ? strata::core::NormSite::kOutput : strata::core::NormSite::kKeyValue;
        api::MeaLayerParams& y = mea;
        y.attn = p;
        // the attention runs on the pass's outputs: q_rot, K', V' (own buffers)
        y.attn.q = y.attn.k = y.attn.v = nullptr;
        y.q_rot = shared_pattern("q_rot", n, 1, 0.f);
        y.k_attn = shared_pattern("k_mea", n, 1, 0.f);
        y.v_attn = shared_pattern("v_mea", n, 1, 0.f);
        y.h_c = Hc;
        y.q = p.q, y.kc = shared_pattern("kc", nc, 7, 0.02f),
        y.vc = shared_pattern("vc", nc, 5, 0.1f);
        const size_t na = size_t(Hc) * H;
        y.a_k = shared_fill("a_k", na, 1.f / Hc), y.a_v = shared_fill("a_v", na, 1.f / Hc);
        y.dq = shared_pattern("mea_dq", n, 1, 0.f);
        y.dkc = shared_pattern("dkc", nc, 1, 0.f), y.dvc = shared_pattern("dvc", nc, 1, 0.f);
        y.da_k = shared_fill("da_k", na), y.da_v = shared_fill("da_v", na);
        const size_t ng = size_t(H) * d;
        if (out) {
          y.kc_rot = shared_pattern("kc_rot", nc, 1, 0.f);
          y.out = shared_pattern("mea_out", n, 1, 0.f);
          y.gamma_o = shared_fill("gamma", ng, 1.f), y.beta_o = shared_fill("beta", ng);
          y.dgamma_o = shared_fill("dgamma", ng), y.dbeta_o = shared_fill("dbeta", ng);
        } else {
          y.gamma_k = y.gamma_v = shared_fill("gamma", ng, 1.f);
          y.beta_k = y.beta_v = shared_fill("beta", ng);
          y.dgamma_k = shared_fill("dgamma", ng), y.dbeta_k = shared_fill("dbeta", ng);
          y.dgamma_v = shared_fill("dgamma_v", ng), y.dbeta_v = shared_fill("dbeta_v", ng);
        }
        mea_workspace_bytes = api::workspace_bytes(y, mea_options);
        mea_workspace = shared_fill("mea_workspace", (mea_workspace_bytes + 15) / 4);
        break;
      }
      default:
        break;
    }
  }

  strata::Status forward() const {
    switch (method) {
      case kResFormer:
        return api::resformer_forward(attn, vr);
      case kGated:
      case kGatedHead:
        return api::gated_forward(attn, gate);
      case kMeaKv:
      case kMeaOutput:
        return api::mea_forward(mea, mea_options);
      default:
        return api::flash_fwd(attn);
    }
  }

  strata::Status backward() const {
    switch (method) {
      case kResFormer:
        return api::resformer_backward(attn, vr);
      case kGated:
      case kGatedHead:
        return api::gated_backward(attn, gate);
      case kMeaKv:
      case kMeaOutput:
        return api::mea_backward(mea, mea_options, mea_workspace, mea_workspace_bytes);
      default:
        return api::flash_bwd(attn);
    }
  }
};

void run(benchmark::State& state, bool backward) {
  const Method m = Method(state.range(0));
  const int T = int(state.range(1)), d = int(state.range(2));
  const Layer layer(m, T, d);
  if (backward) {
    if (const strata::Status s = layer.forward(); !s.ok()) {
      state.SkipWithError((std::string("forward: ") + s.message()).c_str());
      return;
    }
  }
  if (const strata::Status s = backward ? layer.backward() : layer.forward(); !s.ok()) {
    state.SkipWithError(s.message());  // the Status names the field
    return;
  }
  time_iterations(state, [&] { return backward ? layer.backward() : layer.forward(); });
  const att::FlashBwdParams& p = layer.attn;
  const double flops = backward ? strata::cost::attention_backward_flops(p.b, T, p.h, d, true)
                                : strata::cost::attention_forward_flops(p.b, T, p.h, d, true);
  report_flops(state, flops);
  state.SetLabel(kMethodNames[m]);
}

void BM_VariantForward(benchmark::State& state) {
  run(state, false);
}
BENCHMARK(BM_VariantForward)->Apply(shapes);
void BM_VariantBackward(benchmark::State& state) {
  run(state, true);
}
BENCHMARK(BM_VariantBackward)->Apply(shapes);

}  // namespace

int main(int argc, char** argv) {
  return strata_bench::run_main(argc, argv, "strata_bench_variants");
}
