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
#include <strata/cost/attention.hpp>
#include <strata/cost/perf_model.hpp>

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

/// Runs the forward (or forward then, counted alone, the backward) of one head over T tokens and
/// returns the counters of its launches.
strata::sim::Counters measure(int T, int d, bool causal, Pass pass) {
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
  strata::sim::reset_counters();
  if (!strata::api::flash_fwd(p).ok()) std::abort();
  if (backward) {
    strata::sim::reset_counters();
    if (!strata::api::flash_bwd(p).ok()) std::abort();
  }
  traffic::clear();
  return strata::sim::total_counters();
}

/// The (query rows x keys) tile whose pairs the split counts: the forward's kBlockM x kBlockN;
/// the backward's 64 x 64 (the dQ kernel's tiles; the dK/dV kernel's 64 keys meet 64 or 128
/// queries per step, the same work per 64 x 64 pair; the diagonal tiles of a causal problem
/// that a 128-query tile covers beyond it are a per-row-tile term).
struct Tile {
  int bm, bn;
};
template <int D>
Tile tile_of(bool backward) {
  using Fwd = att::FlashFwdTraits<D>;
  static_assert(att::FlashBwdTraits<D>::kBlockNKv == 64 && att::FlashBwdTraits<D>::kBlockM == 64);
  return backward ? Tile{64, 64} : Tile{Fwd::kBlockM, Fwd::kBlockN};
}
Tile tile_of(int d, bool backward) {
  return d == 64 ? tile_of<64>(backward) : d == 96 ? tile_of<96>(backward) : tile_of<128>(backward);
}

/// Strata's work split into a part per tile pair and a part per query tile, from
/// runs at 128 and 256 tokens (two equations, two unknowns per unit).
struct Split {
  cost::TileWork per_pair, per_row_tile;
};
Split split_work(int d, bool causal, Pass pass) {
  const int t1 = 128, t2 = 256;
  const Tile tl = tile_of(d, pass != Pass::kFwd);
  const double n1 = (t1 + tl.bm - 1) / tl.bm, n2 = (t2 + tl.bm - 1) / tl.bm;
  const double p1 = cost::tile_pairs(t1, tl.bm, tl.bn, causal),
               p2 = cost::tile_pairs(t2, tl.bm, tl.bn, causal);
  const cost::TileWork w1 = work_of(measure(t1, d, causal, pass)),
                       w2 = work_of(measure(t2, d, causal, pass));
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
  return s;
}

/// Registers ptxas gave a kernel (tests/static/budget.json), or 0 if it is not listed.
int registers(const std::string& budget, const std::string& kernel, const char* arch) {
  const size_t at = budget.find("\"" + kernel + "\": {");
  if (at == std::string::npos) return 0;
  const size_t a = budget.find(std::string("\"") + arch + "\": {", at);
  const size_t r = a == std::string::npos ? a : budget.find("\"registers\": ", a);
  return r == std::string::npos ? 0 : std::atoi(budget.c_str() + r + 13);
}

/// ptxas's name of a vanilla bf16 instantiation; `flag` is the dK/dV kernel's kAtomicDq.
std::string kernel_name(const char* kernel, int d, bool backward, const char* flag = nullptr) {
  return std::string("void strata::attention::cuda_v1::") + kernel + "<__nv_bfloat16, " +
         std::to_string(d) + ", strata::attention::cuda_v1::VanillaAttention" +
         (flag ? std::string(", ") + flag : std::string()) +
         ">(strata::attention::" + (backward ? "FlashBwdParams" : "FlashFwdParams") +
         ", strata::attention::cuda_v1::VanillaAttention)";
}

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
/// 64 x 64 pair: the dQ kernel's (deterministic) and the dK/dV kernel's (BMKV x 64 per step),
/// over 4 warps.
template <int D>
double analytic_mma(Pass pass, double pairs) {
  using Fwd = att::FlashFwdTraits<D>;
  using Bwd = att::FlashBwdTraits<D>;
  if (pass == Pass::kFwd) return pairs * Fwd::kMmaPerTile;
  const double dkdv = double(Bwd::kMmaDkDv + (pass == Pass::kBwdFast ? Bwd::kMmaDqFused : 0)) *
                      64.0 / Bwd::kBlockMKv;
  return pairs * Bwd::kWarps * ((pass == Pass::kBwd ? Bwd::kMmaDq : 0) + dkdv);
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
  std::printf("| %s | %s | %d | %s | %s | %s | %.3f | %.3f | %.3f | %.3f | %s | %.0f |\n", sm.name,
              pass, d, causal ? "yes" : "no", who, occ.c_str(), b.tensor_s * 1e3, b.smem_s * 1e3,
              b.sfu_s * 1e3, b.dram_s * 1e3, b.limit, b.tflops);
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
      "B/clk/SM; sfu: 16/clk/SM; dram: the minimum bytes). Limits: no latency model, no issue "
      "limit, no L2, no tail wave; FlashAttention-2's occupancy counts shared memory and threads "
      "only (its registers are not known here). A ceiling, not a prediction.\n\n");
  std::printf(
      "| GPU | pass | d | causal | kernel | blocks/SM | tensor ms | smem ms | sfu ms | dram ms | "
      "limit | ceiling TFLOP/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Pass pass : {Pass::kFwd, Pass::kBwd, Pass::kBwdFast})
    for (const int d : {64, 96, 128})
      for (const bool causal : {false, true}) {
        const bool backward = pass != Pass::kFwd;
        const int64_t heads = 2048 / d;
        const double bh = double(batch * heads);
        const Split s = split_work(d, causal, pass);
        const Tile tl = tile_of(d, backward);
        const double pairs = bh * cost::tile_pairs(T, tl.bm, tl.bn, causal),
                     rows = bh * double((T + tl.bm - 1) / tl.bm);
        cost::TileWork ours;
        ours.mma = s.per_pair.mma * pairs + s.per_row_tile.mma * rows;
        ours.smem_wavefronts =
            s.per_pair.smem_wavefronts * pairs + s.per_row_tile.smem_wavefronts * rows;
        ours.sfu = s.per_pair.sfu * pairs + s.per_row_tile.sfu * rows;
        const cost::Fa2Config fc =
            backward ? cost::fa2_backward_config(d) : cost::fa2_forward_config(d);
        const double fa2_pairs = bh * cost::tile_pairs(T, fc.bm, fc.bn, causal);
        const cost::TileWork fa2 =
            backward ? cost::fa2_backward_tile(d, fc) : cost::fa2_forward_tile(d, fc);
        const double flops = backward ? cost::attention_backward_flops(batch, T, heads, d, causal)
                                      : cost::attention_forward_flops(batch, T, heads, d, causal);
        const double tensors = backward ? 8 : 4;  // bf16 [B, T, H, d] operands read or written
        // + the fast mode's fp32 dQ accumulator, zeroed and read back once (its atomics meet in
        // L2, which the model does not have)
        const double dram =
            bh * double(T) *
            (tensors * d * 2 + (backward ? 8 : 4) + (pass == Pass::kBwdFast ? 2.0 * d * 4 : 0));
        for (const cost::SmSpec* sm : {&cost::kA100, &cost::kH100}) {
          const char* arch = sm == &cost::kA100 ? "sm_80" : "sm_90a";
          std::vector<cost::BlockResources> res;
          if (d == 64) resources<64>(budget, arch, pass, res);
          if (d == 96) resources<96>(budget, arch, pass, res);
          if (d == 128) resources<128>(budget, arch, pass, res);
          row(*sm, pass_name(pass), d, causal, "Strata", occupancy(*sm, res),
              cost::bound(*sm, ours, 1, dram, flops));
          // FlashAttention-2's backward is the atomic-dQ one: its row stands beside the fast mode
          if (pass == Pass::kBwd) continue;
          const cost::BlockResources fres{32 * fc.warps, 0, fc.smem_bytes};
          row(*sm, pass_name(pass), d, causal, "FlashAttention-2", occupancy(*sm, {fres}),
              cost::bound(*sm, fa2, fa2_pairs, dram, flops));
        }
      }

  // The access profile behind the table: one head of 256 tokens, not causal.
  std::printf(
      "\nAccess profile in the simulator (one head, 256 tokens, not causal; ldmatrix and cp.async "
      "have their PTX widths, plain accesses the host compiler's):\n\n"
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
