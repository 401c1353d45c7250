// The per-SM performance model (strata/cost/perf_model.hpp) applied to Strata's flash kernels and
// to FlashAttention-2's, side by side, for an A100 and an H100 on the mma.sync path.
//
// Strata's work per tile is measured, not assumed: the kernels run in the simulator (a traffic
// build with the access profile on) at two sequence lengths, and the counters (mma, shared-memory
// wavefronts of ldmatrix, plain accesses and cp.async, SFU operations) are split exactly into a
// part per (query tile, key tile) pair and a part per query tile (prologue, epilogue, the
// backward's preprocess) by solving the two equations. Registers come from the ptxas budgets
// (tests/static/budget.json, what nvcc really allocates), shared memory from the kernels' traits.
// FlashAttention-2's work per tile is counted from its tile configurations
// (cost::fa2_forward_tile / fa2_backward_tile); its registers are not known here, so its
// occupancy is its shared-memory and thread limit.
//
// Usage: strata_perf_model [--budget PATH] [--seqlen T]   (prints a Markdown table)
#include <strata/api/flash.hpp>
#include <strata/api/value_residual.hpp>
#include <strata/cost/attention.hpp>
#include <strata/cost/perf_model.hpp>
#include <strata/variants/mea.cuh>
#include <strata/variants/output_gate.cuh>
#include <strata/variants/value_residual.cuh>

#include "watched_tensor.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static_assert(strata::sim::traffic::kEnabled, "strata_perf_model must be a traffic build");

namespace {

namespace att = strata::attention;
namespace cost = strata::cost;
namespace traffic = strata::sim::traffic;
using bf16 = __nv_bfloat16;

template <class T>
using Tensor = strata_bench::WatchedTensor<T>;

/// The units' work of a whole launch sequence, from the simulator's counters.
cost::TileWork work_of(const strata::sim::Counters& c) {
  cost::TileWork w;
  w.mma = double(c.mma);
  w.smem_wavefronts = double(c.smem_load.wavefronts + c.smem_store.wavefronts);
  w.sfu = double(c.sfu);
  return w;
}

/// What a row of the model runs: the forward, the deterministic backward (dQ kernel + dK/dV
/// kernel: 7 products per tile pair) or the fast one (dK/dV kernel with atomic dQ: 5 products).
enum class Pass { kFwd, kBwd, kBwdFast };
const char* pass_name(Pass p) {
  return p == Pass::kFwd ? "fwd" : p == Pass::kBwd ? "bwd" : "bwd fast";
}

/// The fused variants the model compares with vanilla attention, each through its own policy on
/// the same flash kernels (the deterministic backward: the variants' fast mode is not
/// instantiated).
enum class Method { kVanilla, kResFormer, kSvFormer, kGated, kMea };
const char* method_name(Method m) {
  switch (m) {
    case Method::kVanilla:
      return "vanilla";
    case Method::kResFormer:
      return "ResFormer (value residual)";
    case Method::kSvFormer:
      return "SVFormer (shared value)";
    case Method::kGated:
      return "Gated Attention (elementwise gate)";
    case Method::kMea:
      return "MEA output site (H_c = H)";
  }
  return "";
}
/// Extra [T, H, d] bf16 tensors each variant reads or writes beyond vanilla attention's (fp32
/// ones count twice), for the DRAM term: ResFormer reads V_0 (forward), its backward's mix pass
/// reads V_l and V_0 and writes V' (which the attention reads in V's place), and it updates the
/// fp32 dV_0 accumulator; SVFormer updates the accumulator instead of writing dV; the gate is
/// read (forward), and the backward reads it and dy and writes dO and dg; MEA's forward composes
/// K', V' from the H_c = H component heads before the attention (reads 2, writes 2) and writes
/// out = GN(O); its backward reads dy and writes dO.
double extra_tensors(Method m, bool backward) {
  switch (m) {
    case Method::kVanilla:
      return 0;
    case Method::kResFormer:
      return backward ? 7 : 1;
    case Method::kSvFormer:
      return backward ? 3 : 0;
    case Method::kGated:
      return backward ? 4 : 1;
    case Method::kMea:
      return backward ? 2 : 5;
  }
  return 0;
}

/// Runs the forward (or forward then, counted alone, the backward) of one head over T tokens and
/// returns the counters of its launches (the attention's: a variant's token-local passes are not
/// counted, only their DRAM bytes, extra_tensors).
strata::sim::Counters measure(int T, int d, bool causal, Pass pass,
                              Method method = Method::kVanilla) {
  const bool backward = pass != Pass::kFwd;
  traffic::clear();
  const size_t n = size_t(T) * d;
  Tensor<bf16> q(n, -0.05f), k(n, 0.02f), v(n, 0.1f), o(n), dout(n, -0.1f), dq(n), dk(n), dv(n);
  Tensor<float> lse(static_cast<size_t>(T)), dsum(static_cast<size_t>(T)), dq_accum(n);
  att::FlashBwdParams p;
  p.q = q.p, p.k = k.p, p.v = v.p, p.o = o.p, p.lse = lse.p;
  p.dout = dout.p, p.dq = dq.p, p.dk = dk.p, p.dv = dv.p, p.dsum = dsum.p;
  p.dtype = att::Dtype::kBf16;
  p.b = 1, p.h = 1, p.h_k = 1, p.d = d, p.seqlen_q = p.seqlen_k = p.total_q = p.total_k = T;
  p.q_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = d;
  p.k_row_stride = p.v_row_stride = p.dk_row_stride = p.dv_row_stride = d;
  p.q_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = d;
  p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = d;
  p.softmax_scale = 1.f / std::sqrt(float(d));
  p.is_causal = causal;
  p.deterministic = pass != Pass::kBwdFast;
  p.dq_accum = dq_accum.p;
  // The variants' operands (each method uses its own).
  Tensor<bf16> v0(n, 0.05f), gate(n, 0.3f), dy(n, -0.1f), dgate(n), out(n);
  Tensor<float> lam(2, 0.5f), dlam(2), acc(n), gamma(static_cast<size_t>(d), 1.f),
      beta(static_cast<size_t>(d)), stats(2 * size_t(T));
  const size_t workspace_bytes = strata::api::workspace_bytes(p, strata::api::ValueResidualArgs{});
  Tensor<float> workspace((workspace_bytes + 3) / sizeof(float));
  const auto run = [&](const auto& var) {
    if (!strata::api::flash_fwd(p, var).ok()) std::abort();
    if (backward) {
      strata::sim::reset_counters();
      if (!strata::api::flash_bwd(p, var).ok()) std::abort();
    }
  };
  strata::sim::reset_counters();
  switch (method) {
    case Method::kVanilla:
      run(att::VanillaAttention{});
      break;
    case Method::kResFormer: {  // through the API: the backward materialises V' first
      strata::api::ValueResidualArgs a;
      a.v_first = v0.p, a.v_first_row_stride = a.v_first_head_stride = d;
      a.lambda_self = lam.p, a.lambda_first = lam.p + 1;
      a.dv_first = acc.p, a.dlambda_self = dlam.p, a.dlambda_first = dlam.p + 1;
      a.workspace = workspace.p, a.workspace_bytes = workspace_bytes;
      if (!strata::api::resformer_forward(p, a).ok()) std::abort();
      if (backward) {
        strata::sim::reset_counters();
        if (!strata::api::resformer_backward(p, a).ok()) std::abort();
      }
      break;
    }
    case Method::kSvFormer: {
      strata::variants::SharedValue var;
      var.dv_first = acc.p;
      run(var);
      break;
    }
    case Method::kGated: {
      strata::variants::OutputGate var;
      var.gate = gate.p, var.gate_row_stride = var.gate_head_stride = d;
      var.dy = dy.p, var.dy_row_stride = var.dy_head_stride = d, var.dgate = dgate.p;
      var.dout_ws = dout.p;  // the model's dO (the API's workspace)
      run(var);
      break;
    }
    case Method::kMea: {
      strata::variants::MeaOutputAttention var;
      var.gamma = gamma.p, var.beta = beta.p, var.out = out.p, var.dy = dy.p, var.stats = stats.p;
      var.dout_ws = dout.p;  // the model's dO (the API's workspace)
      run(var);
      break;
    }
  }
  traffic::clear();
  return strata::sim::total_counters();
}

/// The (query rows x keys) tile whose pairs the split counts: the forward's kBlockM x kBlockN;
/// the backward's 64 x 64 (both kernels' tiles are kBlockM x 64, 64 or 128 queries: the same work
/// per 64 x 64 pair; the diagonal tiles of a causal problem that a 128-query tile covers beyond
/// it are a per-row-tile term).
struct Tile {
  int bm, bn;
};
template <int D>
Tile tile_of(bool backward) {
  using Fwd = att::FlashFwdTraits<D>;
  static_assert(att::FlashBwdTraits<D>::kBlockN == 64);
  return backward ? Tile{64, 64} : Tile{Fwd::kBlockM, Fwd::kBlockN};
}
Tile tile_of(int d, bool backward) {
  return d == 64 ? tile_of<64>(backward) : d == 96 ? tile_of<96>(backward) : tile_of<128>(backward);
}

/// Strata's work split into a part per tile pair and a part per query tile, from
/// runs at 128 and 256 tokens (two equations, two unknowns per unit). The global sectors (plain
/// loads and cp.async) are not a term of the model; they show what a variant's tile loads add.
struct Split {
  cost::TileWork per_pair, per_row_tile;
  double load_sectors_per_pair = 0, cp_async_sectors_per_pair = 0;
  double sectors_per_pair = 0, sectors_per_row_tile = 0;  ///< loads, cp.async and stores
};
Split split_work(int d, bool causal, Pass pass, Method method = Method::kVanilla) {
  const int t1 = 128, t2 = 256;
  const Tile tl = tile_of(d, pass != Pass::kFwd);
  const double n1 = (t1 + tl.bm - 1) / tl.bm, n2 = (t2 + tl.bm - 1) / tl.bm;
  const double p1 = cost::tile_pairs(t1, tl.bm, tl.bn, causal),
               p2 = cost::tile_pairs(t2, tl.bm, tl.bn, causal);
  const strata::sim::Counters c1 = measure(t1, d, causal, pass, method),
                              c2 = measure(t2, d, causal, pass, method);
  const cost::TileWork w1 = work_of(c1), w2 = work_of(c2);
  const double det = n1 * p2 - n2 * p1;
  const auto solve = [&](double a, double b, double& fixed, double& tile) {
    fixed = (a * p2 - b * p1) / det;
    tile = (n1 * b - n2 * a) / det;
  };
  Split s;
  solve(w1.mma, w2.mma, s.per_row_tile.mma, s.per_pair.mma);
  solve(w1.smem_wavefronts, w2.smem_wavefronts, s.per_row_tile.smem_wavefronts,
        s.per_pair.smem_wavefronts);
  solve(w1.sfu, w2.sfu, s.per_row_tile.sfu, s.per_pair.sfu);
  const auto sectors = [](const strata::sim::Counters& c) {
    return double(c.gmem_load.sectors + c.gmem_cp_async.sectors + c.gmem_store.sectors);
  };
  solve(sectors(c1), sectors(c2), s.sectors_per_row_tile, s.sectors_per_pair);
  double unused;
  solve(double(c1.gmem_load.sectors), double(c2.gmem_load.sectors), unused,
        s.load_sectors_per_pair);
  solve(double(c1.gmem_cp_async.sectors), double(c2.gmem_cp_async.sectors), unused,
        s.cp_async_sectors_per_pair);
  return s;
}

/// An integer field of a kernel's entry for `arch` in tests/static/budget.json ("registers",
/// or the SASS main loop's "loop_path": a full tile's instructions, sass_loop.py), or 0 if the
/// kernel or the field is not listed.
int budget_field(const std::string& budget, const std::string& kernel, const char* arch,
                 const std::string& field) {
  const size_t at = budget.find("\"" + kernel + "\": {");
  if (at == std::string::npos) return 0;
  const size_t a = budget.find(std::string("\"") + arch + "\": {", at);
  const std::string key = "\"" + field + "\": ";
  const size_t r = a == std::string::npos ? a : budget.find(key, a);
  return r == std::string::npos ? 0 : std::atoi(budget.c_str() + r + key.size());
}
int registers(const std::string& budget, const std::string& kernel, const char* arch) {
  return budget_field(budget, kernel, arch, "registers");
}
int loop_path(const std::string& budget, const std::string& kernel, const char* arch) {
  return budget_field(budget, kernel, arch, "loop_path");
}

/// The policy type of a method's `kernel` as ptxas names it. The value residuals' dQ kernels run
/// vanilla attention's hooks (ResFormer's backward reads V' materialised before it; SVFormer's
/// reads V_0 as V): their SASS is vanilla's, which is what the budget lists.
std::string policy_name(Method m, const char* kernel) {
  const bool backward = std::strncmp(kernel, "flash_bwd", 9) == 0;
  const bool dq = std::strcmp(kernel, "flash_bwd_dq_kernel") == 0;
  switch (m) {
    case Method::kResFormer:
      return dq         ? "strata::attention::cuda_v1::VanillaAttention"
             : backward ? "strata::variants::cuda_v1::ValueResidualGrad"
                        : "strata::variants::cuda_v1::ValueResidual";
    case Method::kSvFormer:  // its forward is vanilla attention on V_0
      return backward && !dq ? "strata::variants::cuda_v1::SharedValue"
                             : "strata::attention::cuda_v1::VanillaAttention";
    case Method::kGated:
      return "strata::variants::cuda_v1::OutputGate";
    case Method::kMea:
      return "strata::variants::cuda_v1::MeaOutputAttention";
    default:
      return "strata::attention::cuda_v1::VanillaAttention";
  }
}

/// ptxas's name of a bf16 instantiation; `flag` is the dK/dV kernel's kAtomicDq.
std::string kernel_name(const char* kernel, int d, bool backward, const char* flag = nullptr,
                        Method m = Method::kVanilla) {
  const std::string policy = policy_name(m, kernel);
  return std::string("void strata::attention::cuda_v1::") + kernel + "<__nv_bfloat16, " +
         std::to_string(d) + ", " + policy + (flag ? std::string(", ") + flag : std::string()) +
         ">(strata::attention::" + (backward ? "FlashBwdParams" : "FlashFwdParams") + ", " +
         policy + ")";
}

/// Warp instructions per tile pair of tile_of(d): the main loops' SASS paths times their warps
/// (the forward: one iteration per pair; the backward: one iteration of each kernel per kBlockM x
/// 64 pair, scaled to 64 x 64 pairs). 0 when a kernel is missing from the budget.
template <int D>
double issue_per_pair(const std::string& budget, const char* arch, Pass pass, Method m) {
  using Fwd = att::FlashFwdTraits<D>;
  using Bwd = att::FlashBwdTraits<D>;
  if (pass == Pass::kFwd)
    return double(Fwd::kWarps) *
           loop_path(budget, kernel_name("flash_fwd_kernel", D, false, nullptr, m), arch);
  const int dkdv = loop_path(
      budget,
      kernel_name("flash_bwd_dkdv_kernel", D, true, pass == Pass::kBwd ? "false" : "true", m),
      arch);
  const int dq =
      pass == Pass::kBwd
          ? loop_path(budget, kernel_name("flash_bwd_dq_kernel", D, true, nullptr, m), arch)
          : 0;
  if (dkdv == 0 || (pass == Pass::kBwd && dq == 0)) return 0;
  return double(Bwd::kWarps) * double(dq + dkdv) * 64.0 / Bwd::kBlockM;
}
double issue_per_pair(const std::string& budget, const char* arch, Pass pass, int d,
                      Method m = Method::kVanilla) {
  return d == 64   ? issue_per_pair<64>(budget, arch, pass, m)
         : d == 96 ? issue_per_pair<96>(budget, arch, pass, m)
                   : issue_per_pair<128>(budget, arch, pass, m);
}

/// Registers at entry of Strata's bf16 sm_90a forward (what ptxas reports for a kernel whose
/// warpgroups then trade registers with setmaxnreg), from the budget.
int registers_at_entry(const std::string& budget, int d, bool backward = false) {
  const std::string policy = "strata::attention::cuda_v1::VanillaAttention";
  const std::string kernel = backward ? "flash_bwd_sm90_kernel" : "flash_fwd_sm90_kernel";
  const std::string params = backward ? "FlashBwdSm90Params" : "FlashFwdSm90Params";
  return registers(budget,
                   "void strata::attention::cuda_v1::" + kernel + "<__nv_bfloat16, " +
                       std::to_string(d) + ", " + policy + ">(strata::attention::" + params + ", " +
                       policy + ")",
                   "sm_90a");
}

// The model's configuration of Strata's sm_90a forward is its kernel's (with one raw V tile and
// with two: ResFormer).
template <int D, int RawV>
constexpr bool sm90_config_is_the_kernels() {
  using Tr = att::FlashFwdSm90Traits<D, RawV>;
  constexpr cost::WgmmaFwdConfig c = cost::strata_sm90_forward_config(D, RawV);
  return c.bm == Tr::kBlockM && c.bn == Tr::kBlockN && c.consumer_wgs == Tr::kConsumerWGs &&
         c.threads() == Tr::kThreads && c.pv_rs &&
         cost::wgmma_forward_tile(D, c).mma * 4096 == double(Tr::kFlopsPerTilePair) &&
         cost::wgmma_forward_smem(D, c) + 8 * Tr::kBarriers + 1024 == int(Tr::kSmemBytes);
}
static_assert(sm90_config_is_the_kernels<64, 1>() && sm90_config_is_the_kernels<96, 1>() &&
              sm90_config_is_the_kernels<128, 1>() && sm90_config_is_the_kernels<64, 2>() &&
              sm90_config_is_the_kernels<96, 2>() && sm90_config_is_the_kernels<128, 2>());

// ... and of its sm_90a backward.
template <int D>
constexpr bool sm90_bwd_config_is_the_kernels() {
  using Tr = att::FlashBwdSm90Traits<D>;
  constexpr cost::WgmmaBwdConfig c = cost::strata_sm90_backward_config(D);
  return c.bm == Tr::kBlockM && c.bn == Tr::kBlockN && c.consumer_wgs == Tr::kConsumerWGs &&
         c.threads() == Tr::kThreads &&
         cost::wgmma_backward_tile(D, c).mma * 4096 == double(Tr::kFlopsPerTilePair) &&
         cost::wgmma_backward_smem(D, c) + 8 * Tr::kBarriers + 1024 == int(Tr::kSmemBytes);
}
static_assert(sm90_bwd_config_is_the_kernels<64>() && sm90_bwd_config_is_the_kernels<96>() &&
              sm90_bwd_config_is_the_kernels<128>());

template <int D>
void resources(const std::string& budget, const char* arch, Pass pass,
               std::vector<cost::BlockResources>& out) {
  using Fwd = att::FlashFwdTraits<D>;
  using Bwd = att::FlashBwdTraits<D>;
  if (pass == Pass::kFwd) {
    out.push_back({Fwd::kThreads,
                   registers(budget, kernel_name("flash_fwd_kernel", D, false), arch),
                   int(Fwd::template kSmemBytes<bf16>)});
    return;
  }
  if (pass == Pass::kBwd)
    out.push_back({Bwd::kThreads,
                   registers(budget, kernel_name("flash_bwd_dq_kernel", D, true), arch),
                   int(Bwd::template kSmemDq<bf16>)});
  out.push_back({Bwd::kThreads,
                 registers(budget,
                           kernel_name("flash_bwd_dkdv_kernel", D, true,
                                       pass == Pass::kBwd ? "false" : "true"),
                           arch),
                 int(Bwd::template kSmemDkDv<bf16>)});
}

/// The kernels' mma.sync count by their traits: the forward's per tile pair; the backward's per
/// 64 x 64 pair: the dQ kernel's (deterministic) and the dK/dV kernel's (both kBlockM x 64 per
/// step), over 4 warps.
template <int D>
double analytic_mma(Pass pass, double pairs) {
  using Fwd = att::FlashFwdTraits<D>;
  using Bwd = att::FlashBwdTraits<D>;
  if (pass == Pass::kFwd) return pairs * Fwd::kMmaPerTile;
  const int dq = pass == Pass::kBwd ? Bwd::kMmaDq : 0;
  const int dkdv = Bwd::kMmaDkDv + (pass == Pass::kBwdFast ? Bwd::kMmaDqFused : 0);
  return pairs * Bwd::kWarps * double(dq + dkdv) * 64.0 / Bwd::kBlockM;
}

std::string occupancy(const cost::SmSpec& sm, const std::vector<cost::BlockResources>& ks) {
  std::string s;
  for (const auto& k : ks) {
    const int blocks = cost::resident_blocks(sm, k);
    if (!s.empty()) s += " / ";
    s += std::to_string(blocks) + " (" + std::to_string(blocks * k.threads / 32) + " warps)";
  }
  return s;
}

void row(const cost::SmSpec& sm, const char* pass, int d, bool causal, const char* who,
         const std::string& occ, const cost::Bound& b) {
  char issue[32] = "-";  // FlashAttention-2's SASS is not built here
  if (b.issue_s > 0) std::snprintf(issue, sizeof issue, "%.3f", b.issue_s * 1e3);
  std::printf("| %s | %s | %d | %s | %s | %s | %.3f | %.3f | %.3f | %s | %.3f | %s | %.0f |\n",
              sm.name, pass, d, causal ? "yes" : "no", who, occ.c_str(), b.tensor_s * 1e3,
              b.smem_s * 1e3, b.sfu_s * 1e3, issue, b.dram_s * 1e3, b.limit, b.tflops);
}

/// The whole problem's work for the model: Strata's split scaled to `batch` x (2048 / d) heads of
/// T tokens, the minimum DRAM bytes, and the FLOPs by FlashAttention's convention.
struct Problem {
  cost::TileWork work;  ///< without the issue term, which depends on the architecture's SASS
  double dram = 0, flops = 0;
  double pairs = 0;  ///< tile pairs of tile_of(d)
};
Problem problem_of(const Split& s, int d, bool causal, Pass pass, int64_t T, int64_t batch,
                   Method method = Method::kVanilla) {
  const bool backward = pass != Pass::kFwd;
  const int64_t heads = 2048 / d;
  const double bh = double(batch * heads);
  const Tile tl = tile_of(d, backward);
  const double pairs = bh * cost::tile_pairs(T, tl.bm, tl.bn, causal),
               rows = bh * double((T + tl.bm - 1) / tl.bm);
  Problem pr;
  pr.pairs = pairs;
  pr.work.mma = s.per_pair.mma * pairs + s.per_row_tile.mma * rows;
  pr.work.smem_wavefronts =
      s.per_pair.smem_wavefronts * pairs + s.per_row_tile.smem_wavefronts * rows;
  pr.work.sfu = s.per_pair.sfu * pairs + s.per_row_tile.sfu * rows;
  pr.flops = backward ? cost::attention_backward_flops(batch, T, heads, d, causal)
                      : cost::attention_forward_flops(batch, T, heads, d, causal);
  // bf16 [B, T, H, d] operands read or written, + the variant's, + the fast mode's fp32 dQ
  // accumulator, zeroed and read back once (its atomics meet in L2, which the model does not
  // have), + LSE (and D)
  const double tensors = (backward ? 8 : 4) + extra_tensors(method, backward);
  pr.dram = bh * double(T) *
            (tensors * d * 2 + (backward ? 8 : 4) + (pass == Pass::kBwdFast ? 2.0 * d * 4 : 0));
  return pr;
}

}  // namespace

int main(int argc, char** argv) {
  std::string budget_path = STRATA_SOURCE_DIR "/tests/static/budget.json";
  int64_t T = 4096;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--budget")) budget_path = argv[i + 1];
    if (!std::strcmp(argv[i], "--seqlen")) T = std::atoll(argv[i + 1]);
  }
  std::ifstream f(budget_path);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string budget = ss.str();
  if (budget.empty()) {
    std::fprintf(stderr, "strata_perf_model: cannot read %s\n", budget_path.c_str());
    return 1;
  }
  strata::sim::options().access_profile = true;

  // FlashAttention-2's benchmark shape: 16k tokens per batch, hidden 2048 (heads = 2048 / d).
  const int64_t batch = std::max<int64_t>(1, 16384 / T);
  std::printf(
      "Per-SM throughput model, bf16: batch %lld x %lld tokens, hidden 2048 (2048 / d heads).\n",
      (long long)batch, (long long)T);
  std::printf(
      "Times are the whole problem at each unit's documented rate (tensor: mma.sync; smem: 128 "
      "B/clk/SM; sfu: 16/clk/SM; issue: 4 warp instructions/clk/SM, Strata's instructions per "
      "tile counted on the SASS of each kernel's main loop for that architecture; dram: the "
      "minimum bytes; FlashAttention-2's work: its tile pairs and its epilogues' staging of O or "
      "dK, "
      "dV through shared memory). Limits: no latency model, no L2, no tail wave; "
      "FlashAttention-2's rows "
      "have no issue term (its SASS is not built here), and its occupancy counts shared memory "
      "and threads only (its registers are not known here). A ceiling, not a prediction.\n\n");
  std::printf(
      "| GPU | pass | d | causal | kernel | blocks/SM | tensor ms | smem ms | sfu ms | issue ms | "
      "dram ms | limit | ceiling TFLOP/s "
      "|\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Pass pass : {Pass::kFwd, Pass::kBwd, Pass::kBwdFast})
    for (const int d : {64, 96, 128})
      for (const bool causal : {false, true}) {
        const bool backward = pass != Pass::kFwd;
        const double bh = double(batch * (2048 / d));
        const Problem ours = problem_of(split_work(d, causal, pass), d, causal, pass, T, batch);
        const cost::Fa2Config fc =
            backward ? cost::fa2_backward_config(d) : cost::fa2_forward_config(d);
        // FlashAttention-2's work: its tile pairs, plus its epilogue per query tile (forward) or
        // key tile (backward)
        const double fa2_pairs = bh * cost::tile_pairs(T, fc.bm, fc.bn, causal);
        const double fa2_tiles =
            bh * double((T + (backward ? fc.bn : fc.bm) - 1) / (backward ? fc.bn : fc.bm));
        const cost::TileWork pair =
            backward ? cost::fa2_backward_tile(d, fc) : cost::fa2_forward_tile(d, fc);
        const cost::TileWork epi =
            backward ? cost::fa2_backward_epilogue(d, fc) : cost::fa2_forward_epilogue(d, fc);
        cost::TileWork fa2;
        fa2.mma = pair.mma * fa2_pairs;
        fa2.smem_wavefronts = pair.smem_wavefronts * fa2_pairs + epi.smem_wavefronts * fa2_tiles;
        fa2.sfu = pair.sfu * fa2_pairs;
        for (const cost::SmSpec* sm : {&cost::kA100, &cost::kH100}) {
          const char* arch = sm == &cost::kA100 ? "sm_80" : "sm_90a";
          std::vector<cost::BlockResources> res;
          if (d == 64) resources<64>(budget, arch, pass, res);
          if (d == 96) resources<96>(budget, arch, pass, res);
          if (d == 128) resources<128>(budget, arch, pass, res);
          cost::TileWork work = ours.work;
          work.issue = issue_per_pair(budget, arch, pass, d) * ours.pairs;
          row(*sm, pass_name(pass), d, causal, "Strata", occupancy(*sm, res),
              cost::bound(*sm, work, 1, ours.dram, ours.flops));
          // FlashAttention-2's backward is the atomic-dQ one: its row stands beside the fast mode
          if (pass == Pass::kBwd) continue;
          const cost::BlockResources fres{32 * fc.warps, 0, fc.smem_bytes};
          row(*sm, pass_name(pass), d, causal, "FlashAttention-2", occupancy(*sm, {fres}),
              cost::bound(*sm, fa2, 1, ours.dram, ours.flops));
        }
      }

  // Hopper's wgmma forward: Strata's flash_fwd_sm90 beside FlashAttention-3's tile
  // configurations, both counted from their tile shapes (cost::wgmma_forward_tile). The
  // simulator checks Strata's tensor term: its wgmma FLOPs per tile pair are the model's
  // (tests/kernels/test_flash_fwd_sm90.cpp, WgmmaWorkIsTheVisitedTilePairs).
  std::printf(
      "\nHopper forward on the wgmma path (%s: tensor at 4096 FLOP/clk/SM; smem at 128 B/clk/SM "
      "counting every wgmma shared-memory operand, TMA write and P / O staging, an assumption: "
      "NVIDIA publishes no figure for wgmma's operand path). No issue term (neither kernel's "
      "SASS main loop is counted here); registers at entry: Strata's from its ptxas budget, "
      "FlashAttention-3's the cap of its __launch_bounds__(threads, 1). Both kernels overlap "
      "softmax and GEMMs; the model assumes perfect overlap and no latency. A ceiling, not a "
      "prediction:\n\n"
      "| d | causal | kernel | tile | PV | blocks/SM | tensor ms | smem ms | sfu ms | dram ms | "
      "limit | ceiling TFLOP/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
      cost::kH100Wgmma.name);
  for (const int d : {64, 96, 128})
    for (const bool causal : {false, true}) {
      const int64_t heads = 2048 / d;
      const double bh = double(batch * heads);
      const double flops = cost::attention_forward_flops(batch, T, heads, d, causal);
      // kernel 0: Strata's; 1: Strata's with ResFormer's V' formed from two raw tiles (V_0
      // read from DRAM too); 2: FlashAttention-3's
      for (const int kernel : {0, 1, 2}) {
        const bool fa3 = kernel == 2, resformer = kernel == 1;
        const double dram = bh * double(T) * ((resformer ? 5.0 : 4.0) * d * 2 + 4);
        const cost::WgmmaFwdConfig c = fa3 ? cost::fa3_forward_config(d, causal)
                                           : cost::strata_sm90_forward_config(d, 1 + kernel);
        const double pairs = bh * cost::tile_pairs(T, c.bm, c.bn, causal);
        const double tiles = bh * double((T + c.bm - 1) / c.bm);
        const cost::TileWork pair = cost::wgmma_forward_tile(d, c);
        const cost::TileWork epi = cost::wgmma_forward_epilogue(d, c);
        cost::TileWork work;
        work.mma = pair.mma * pairs;
        work.smem_wavefronts = pair.smem_wavefronts * pairs + epi.smem_wavefronts * tiles;
        work.sfu = pair.sfu * pairs;
        const cost::Bound b = cost::bound(cost::kH100Wgmma, work, 1, dram, flops);
        // FlashAttention-3's registers at entry: the cap of __launch_bounds__(threads, 1)
        const int regs = fa3 ? 65536 / c.threads() / 8 * 8 : registers_at_entry(budget, d);
        const cost::BlockResources res{c.threads(), regs, cost::wgmma_forward_smem(d, c)};
        std::printf(
            "| %d | %s | %s | %d x %d | %s | %s | %.3f | %.3f | %.3f | %.3f | %s | %.0f |\n", d,
            causal ? "yes" : "no",
            fa3         ? "FlashAttention-3"
            : resformer ? "Strata sm_90a, ResFormer V' per tile"
                        : "Strata sm_90a",
            c.bm, c.bn, c.pv_rs ? "RS" : "SS", occupancy(cost::kH100Wgmma, {res}).c_str(),
            b.tensor_s * 1e3, b.smem_s * 1e3, b.sfu_s * 1e3, b.dram_s * 1e3, b.limit, b.tflops);
        if (!resformer) continue;
        // ResFormer's other plan: V' written once by a DRAM-bound pass, then the vanilla
        // kernel (api::resformer_forward picks the faster of the two by this model)
        const cost::ResFormerSm90Plans plans =
            cost::resformer_sm90_plans(batch, T, T, int(heads), int(heads), d, causal);
        const cost::Bound v = cost::bound(
            cost::kH100Wgmma, cost::wgmma_forward_tile(d, cost::strata_sm90_forward_config(d)),
            pairs, bh * double(T) * (4.0 * d * 2), flops);
        std::printf(
            "| %d | %s | Strata sm_90a, ResFormer V' written once | %d x %d | RS | %s | %.3f "
            "| %.3f | %.3f | %.3f + %.3f | %s + mix pass | %.0f |\n",
            d, causal ? "yes" : "no", c.bm, c.bn, occupancy(cost::kH100Wgmma, {res}).c_str(),
            v.tensor_s * 1e3, v.smem_s * 1e3, v.sfu_s * 1e3, v.dram_s * 1e3,
            (plans.materialised_s - v.seconds) * 1e3, v.limit,
            flops / plans.materialised_s * 1e-12);
      }
    }

  // Hopper's wgmma backward: Strata's flash_bwd_sm90 beside FlashAttention-3's tile
  // configurations (cost::wgmma_backward_tile); the simulator checks Strata's tensor term
  // (tests/kernels/test_flash_bwd_sm90.cpp, WgmmaWorkIsTheVisitedTilePairs).
  std::printf(
      "\nHopper backward on the wgmma path (the same model and assumptions; five products per "
      "tile pair, FLOPs by FlashAttention's convention, 2.5 x the forward's). dram: Q, K, V, O, "
      "dO read, dQ, dK, dV written, LSE and D; the dQ accumulator's traffic (atomics or a "
      "block's slice for Strata, FlashAttention-3's bulk reduce-add) meets in L2, which the "
      "model does not have:\n\n"
      "| d | causal | kernel | tile | blocks/SM | tensor ms | smem ms | sfu ms | dram ms | limit | "
      "ceiling TFLOP/s |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const int d : {64, 96, 128})
    for (const bool causal : {false, true}) {
      const int64_t heads = 2048 / d;
      const double bh = double(batch * heads);
      const double flops = cost::attention_backward_flops(batch, T, heads, d, causal);
      const double dram = bh * double(T) * (8.0 * d * 2 + 8);
      for (const bool fa3 : {false, true}) {
        const cost::WgmmaBwdConfig c =
            fa3 ? cost::fa3_backward_config(d, causal) : cost::strata_sm90_backward_config(d);
        const double pairs = bh * cost::tile_pairs(T, c.bm, c.bn, causal);
        const double key_tiles = bh * double((T + c.bn - 1) / c.bn);
        const cost::TileWork pair = cost::wgmma_backward_tile(d, c);
        const cost::TileWork epi = cost::wgmma_backward_epilogue(d, c);
        cost::TileWork work;
        work.mma = pair.mma * pairs;
        work.smem_wavefronts = pair.smem_wavefronts * pairs + epi.smem_wavefronts * key_tiles;
        work.sfu = pair.sfu * pairs;
        const cost::Bound b = cost::bound(cost::kH100Wgmma, work, 1, dram, flops);
        const int regs = fa3 ? 65536 / c.threads() / 8 * 8 : registers_at_entry(budget, d, true);
        const cost::BlockResources res{c.threads(), regs, cost::wgmma_backward_smem(d, c)};
        std::printf("| %d | %s | %s | %d x %d | %s | %.3f | %.3f | %.3f | %.3f | %s | %.0f |\n", d,
                    causal ? "yes" : "no", fa3 ? "FlashAttention-3" : "Strata sm_90a", c.bm, c.bn,
                    occupancy(cost::kH100Wgmma, {res}).c_str(), b.tensor_s * 1e3, b.smem_s * 1e3,
                    b.sfu_s * 1e3, b.dram_s * 1e3, b.limit, b.tflops);
      }
    }

  // The fused variants beside vanilla attention: the same kernels through each variant's policy,
  // with one more unit: the L2, which every global sector a block moves passes through (the A100
  // whitepaper's L2 read bandwidth, 5120 B/clk for the whole GPU; the H100 has no published
  // figure, so the table stays on the A100).
  constexpr double kA100L2BytesPerClk = 5120;
  std::printf(
      "\nFused variants on an %s, not causal (the deterministic backward): the same model (issue "
      "from each variant's own SASS) plus an L2 term (every 32-byte global sector the kernels "
      "move, loads, cp.async and stores, at the "
      "whitepaper's 5120 B/clk; no hit-rate or latency model). A variant's token-local passes "
      "(ResFormer's backward writes V' before the attention; MEA composes K' and V') are in the "
      "dram and l2 terms as if they overlapped the attention; they run as kernels of their own, "
      "so their DRAM time, about 0.03 ms per [T, H, d] tensor read or written here, belongs "
      "after the ceiling's. Sectors per tile pair: what plain (synchronous) loads and cp.async "
      "move per (query tile, key tile) pair:\n\n",
      cost::kA100.name);
  std::printf(
      "| pass | d | method | tensor ms | smem ms | sfu ms | issue ms | dram ms | l2 ms | limit | "
      "ceiling TFLOP/s | vs vanilla | load sectors / pair | cp.async sectors / pair |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Pass pass : {Pass::kFwd, Pass::kBwd})
    for (const int d : {64, 96, 128}) {
      double vanilla = 0;
      for (const Method m : {Method::kVanilla, Method::kResFormer, Method::kSvFormer,
                             Method::kGated, Method::kMea}) {
        const Split s = split_work(d, false, pass, m);
        const Problem pr = problem_of(s, d, false, pass, T, batch, m);
        cost::TileWork work = pr.work;
        work.issue = issue_per_pair(budget, "sm_80", pass, d, m) * pr.pairs;
        cost::Bound b = cost::bound(cost::kA100, work, 1, pr.dram, pr.flops);
        const Tile tl = tile_of(d, pass != Pass::kFwd);
        const double bh = double(batch * (2048 / d));
        const double sectors = bh * (s.sectors_per_pair * cost::tile_pairs(T, tl.bm, tl.bn, false) +
                                     s.sectors_per_row_tile * double((T + tl.bm - 1) / tl.bm));
        const double l2_s = sectors * 32.0 / (kA100L2BytesPerClk * cost::kA100.clock_ghz * 1e9);
        if (l2_s > b.seconds) b.seconds = l2_s, b.limit = "l2", b.tflops = pr.flops / l2_s * 1e-12;
        if (m == Method::kVanilla) vanilla = b.tflops;
        std::printf(
            "| %s | %d | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %.0f | %+.1f%% | %.0f "
            "| "
            "%.0f |\n",
            pass_name(pass), d, method_name(m), b.tensor_s * 1e3, b.smem_s * 1e3, b.sfu_s * 1e3,
            b.issue_s * 1e3, b.dram_s * 1e3, l2_s * 1e3, b.limit, b.tflops,
            100.0 * (b.tflops / vanilla - 1.0), s.load_sectors_per_pair,
            s.cp_async_sectors_per_pair);
      }
    }

  // The access profile behind the table: one head of 256 tokens, not causal.
  std::printf(
      "\nAccess profile in the simulator (one head, 256 tokens, not causal; ldmatrix and cp.async "
      "have their PTX widths, plain accesses the host compiler's). The backward's global-load "
      "column is its token-local preprocess (D = rowsum(dO o O), one thread per row walking its "
      "row: 32 rows per warp-wide load); the dK/dV kernel's own plain loads (LSE and D) measure "
      "1.000 alone. Stores leave the accumulators' fragments directly, 16 bytes per row and "
      "request "
      "(half a sector), where FlashAttention-2 stages them through shared memory:\n\n"
      "| pass | d | mma | analytic mma | smem wavefronts | bank-conflict wavefronts | cp.async "
      "sector efficiency | global load sector efficiency | global store sector efficiency | "
      "SFU ops per score |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Pass pass : {Pass::kFwd, Pass::kBwd, Pass::kBwdFast})
    for (const int d : {64, 96, 128}) {
      const strata::sim::Counters c = measure(256, d, false, pass);
      const Tile tl = tile_of(d, pass != Pass::kFwd);
      const double pairs = cost::tile_pairs(256, tl.bm, tl.bn, false);
      const double analytic = d == 64   ? analytic_mma<64>(pass, pairs)
                              : d == 96 ? analytic_mma<96>(pass, pairs)
                                        : analytic_mma<128>(pass, pairs);
      std::printf("| %s | %d | %llu | %.0f | %llu | %llu | %.3f | %.3f | %.3f | %.3f |\n",
                  pass_name(pass), d, (unsigned long long)c.mma, analytic,
                  (unsigned long long)(c.smem_load.wavefronts + c.smem_store.wavefronts),
                  (unsigned long long)(c.smem_load.conflicts + c.smem_store.conflicts),
                  c.gmem_cp_async.sector_efficiency(), c.gmem_load.sector_efficiency(),
                  c.gmem_store.sector_efficiency(), double(c.sfu) / (256.0 * 256.0));
    }
  return 0;
}
