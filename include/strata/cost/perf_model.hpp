/// \file
/// A per-SM throughput model of attention kernels: for each unit of an SM (tensor cores on the
/// mma.sync path, shared memory, special-function units) and for DRAM, the time the whole
/// problem's work needs at that unit's documented rate; the slowest unit bounds the kernel, and
/// the problem's FLOPs (FlashAttention's convention) over that time is the model's TFLOP/s
/// ceiling. The work per tile comes from the simulator's counters for Strata's kernels
/// (benchmarks/perf_model.cpp) and from FlashAttention-2's tile configurations, read from its
/// source (csrc/flash_attn/src/flash_{fwd,bwd}_launch_template.h, kernel_traits.h), for theirs.
///
/// Instruction issue is a unit too: an SM issues at most 4 warp instructions per clock (one per
/// scheduler), and a kernel's instructions per tile are counted on the SASS of its main loop
/// (tests/static/sass_loop.py, kept in tests/static/budget.json by the ptxas gate). Without that
/// term the model called a forward tensor-bound that an H200 ran at 0.3x of FlashAttention-2,
/// issue-bound by ~2,300 instructions per 128 HMMA.
///
/// Limits, stated with every table: no latency model (no pipeline depth, no stall on a
/// barrier, no memory latency hidden or not by the resident warps), no dual issue or operand
/// collector limits, no L2 (outside the variant table), no clock throttling, no tail effect of
/// the last wave. It says which unit a kernel's work saturates first if everything overlaps
/// perfectly: a ceiling, not a prediction.
#pragma once

#include <algorithm>
#include <cstdint>

namespace strata::cost {

/// The documented per-SM rates of one GPU (dense bf16/fp16).
struct SmSpec {
  const char* name;
  int sms;
  double clock_ghz;            ///< the clock NVIDIA's peak TFLOP/s figures are quoted at
  double tensor_flop_per_clk;  ///< per SM, mma.sync m16n8k16 bf16 -> f32
  double smem_bytes_per_clk;   ///< per SM: 32 banks x 4 bytes, one wavefront per clock
  double sfu_ops_per_clk;      ///< per SM: ex2/lg2/rcp/rsq/sin/cos results
  double dram_gb_per_s;
  int smem_per_sm;  ///< bytes of shared memory an SM can give its blocks
  int smem_reserved_per_block;
  int regs_per_sm;
  int max_threads_per_sm;
  int max_blocks_per_sm;
  double issue_per_clk = 4;  ///< per SM: warp instructions, one per scheduler (4 schedulers)
};

/// A100 SXM4 80GB (sm_80): 108 SMs at 1410 MHz, 312 TFLOP/s dense bf16 = 2048 FLOP/clk/SM; 164 KB
/// of shared memory per SM (1 KB reserved per block); 16 SFU results per clock per SM (CUDA C++
/// Programming Guide, arithmetic-instruction throughput, cc 8.0); 2039 GB/s of HBM2e.
inline constexpr SmSpec kA100{"A100-SXM4-80GB", 108,  1.41,  2048, 128, 16, 2039,
                              164 * 1024,       1024, 65536, 2048, 32};

/// H100 SXM5 (sm_90) on the mma.sync path: 132 SMs at 1830 MHz; its 989 TFLOP/s dense bf16 is
/// wgmma's 4096 FLOP/clk/SM. mma.sync is taken at half of that, 2048 FLOP/clk/SM — an assumption,
/// not an NVIDIA figure; it puts FlashAttention-2's measured ~350 TFLOP/s on an H100 at the same
/// ~70% of the mma.sync peak that its ~225 TFLOP/s is of an A100's. 228 KB of shared memory per
/// SM (1 KB reserved per block), 16 SFU results per clock per SM (cc 9.0), 3.35 TB/s of HBM3.
inline constexpr SmSpec kH100{
    "H100-SXM5 (mma.sync)", 132, 1.83, 2048, 128, 16, 3350, 228 * 1024, 1024, 65536, 2048, 32};

/// H100 SXM5 (sm_90a) on the wgmma path: the same SM, with the tensor cores at wgmma's 4096
/// FLOP/clk/SM (989 TFLOP/s dense bf16 / (132 SMs x 1.83 GHz), NVIDIA's H100 datasheet). wgmma
/// reads its shared-memory operands (A of an SS op, B always) through the SM's shared memory,
/// which the model charges at the same 128 B/clk as any other access: NVIDIA publishes no
/// separate figure for that path, so the smem column of a wgmma row is an assumption, not a
/// measurement.
inline constexpr SmSpec kH100Wgmma{"H100-SXM5 (wgmma)", 132,  1.83,  4096, 128, 16, 3350,
                                   228 * 1024,          1024, 65536, 2048, 32};

/// What a block of a kernel holds on an SM.
struct BlockResources {
  int threads;
  int registers;   ///< per thread, as ptxas reports them
  int smem_bytes;  ///< static + dynamic shared memory per block
};

/// Blocks of a kernel resident on one SM: the least of the thread, register, shared-memory and
/// block limits. Registers are allocated per warp in units of 256 (8 per thread).
constexpr int resident_blocks(const SmSpec& sm, const BlockResources& b) {
  const int warps = (b.threads + 31) / 32;
  const int regs_per_warp = (b.registers + 7) / 8 * 8 * 32;
  const int by_threads = sm.max_threads_per_sm / (32 * warps);
  const int by_regs = b.registers > 0 ? sm.regs_per_sm / (regs_per_warp * warps) : by_threads;
  const int by_smem = b.smem_bytes > 0
                          ? sm.smem_per_sm / (b.smem_bytes + sm.smem_reserved_per_block)
                          : sm.max_blocks_per_sm;
  return std::min({by_threads, by_regs, by_smem, sm.max_blocks_per_sm});
}

/// Work of one block-iteration (one query tile against one key tile) on an SM's units.
struct TileWork {
  double mma = 0;              ///< mma.sync m16n8k16 (4096 FLOP each)
  double smem_wavefronts = 0;  ///< shared-memory cycles, loads and stores
  double sfu = 0;              ///< special-function results
  double issue = 0;            ///< warp instructions (0: not known, no issue term)
};

/// The model's verdict on one kernel and problem.
struct Bound {
  double tensor_s = 0, smem_s = 0, sfu_s = 0, issue_s = 0, dram_s = 0;
  double seconds = 0;      ///< the largest of the five
  const char* limit = "";  ///< the unit that sets it
  double tflops = 0;       ///< the problem's FLOPs over `seconds`, in TFLOP/s
};

/// The bound of `tiles` block-iterations of `per_tile` work spread evenly over the SMs, plus
/// `dram_bytes` through DRAM; `flops` is the problem's FLOP count by FlashAttention's convention.
constexpr Bound bound(const SmSpec& sm, const TileWork& per_tile, double tiles, double dram_bytes,
                      double flops) {
  const double clk = sm.clock_ghz * 1e9 * sm.sms;  // SM-clocks per second, all SMs
  Bound b;
  b.tensor_s = per_tile.mma * 4096.0 * tiles / (sm.tensor_flop_per_clk * clk);
  b.smem_s = per_tile.smem_wavefronts * tiles / (sm.smem_bytes_per_clk / 128.0 * clk);
  b.sfu_s = per_tile.sfu * tiles / (sm.sfu_ops_per_clk * clk);
  b.issue_s = per_tile.issue * tiles / (sm.issue_per_clk * clk);
  b.dram_s = dram_bytes / (sm.dram_gb_per_s * 1e9);
  b.seconds = b.tensor_s;
  b.limit = "tensor";
  if (b.smem_s > b.seconds) b.seconds = b.smem_s, b.limit = "smem";
  if (b.sfu_s > b.seconds) b.seconds = b.sfu_s, b.limit = "sfu";
  if (b.issue_s > b.seconds) b.seconds = b.issue_s, b.limit = "issue";
  if (b.dram_s > b.seconds) b.seconds = b.dram_s, b.limit = "dram";
  b.tflops = b.seconds > 0 ? flops / b.seconds * 1e-12 : 0;
  return b;
}

// ----------------------------------------------------------------- FlashAttention-2's kernels

/// A tile configuration of FlashAttention-2's sm80 kernels (Flash_fwd_kernel_traits /
/// Flash_bwd_kernel_traits): kBlockM, kBlockN, kNWarps and, for the backward, the warp layouts
/// of its three GEMM shapes (AtomLayoutMSdP, AtomLayoutNdKV, AtomLayoutMdQ).
struct Fa2Config {
  int bm, bn, warps;
  int atom_sdp = 0, atom_dkv = 0, atom_dq = 0;
  int smem_bytes = 0;
};

/// FlashAttention-2's forward on an A100 or H100 (run_mha_fwd_hdim*, no dropout, sm80 kernels):
/// d = 64: 128 x 128, 4 warps; d = 96 and 128: 128 x 64, 4 warps. Shared memory: Q and one K and
/// one V tile, bf16, swizzled without padding.
constexpr Fa2Config fa2_forward_config(int d) {
  Fa2Config c{128, d <= 64 ? 128 : 64, 4};
  c.smem_bytes = (c.bm + 2 * c.bn) * d * 2;
  return c;
}

/// FlashAttention-2's backward with >= 144 KB of shared memory per block (A100, H100;
/// run_mha_bwd_hdim*): d = 64: 128 x 128, 8 warps, layouts 4/4/4; d = 96: 64 x 128, 8 warps,
/// 2/4/4; d = 128: 64 x 128, 8 warps, 2/4/2. Shared memory (kernel_traits.h, double-buffered Q
/// and dO): 2 Q + 2 dO tiles, K and V, P and dS, fp32 LSE/dpsum, approximately.
constexpr Fa2Config fa2_backward_config(int d) {
  Fa2Config c = d <= 64   ? Fa2Config{128, 128, 8, 4, 4, 4}
                : d <= 96 ? Fa2Config{64, 128, 8, 2, 4, 4}
                          : Fa2Config{64, 128, 8, 2, 4, 2};
  c.smem_bytes = (4 * c.bm + 2 * c.bn) * d * 2 + 2 * c.bm * c.bn * 2 + 2 * c.bm * 4;
  return c;
}

/// Shared-memory bytes a tiled GEMM C[M, N] += A[M, K] B[K, N] reads when `wm` x (warps / wm) warps
/// tile C and each reads its rows of A and its columns of B through ldmatrix (operands in
/// registers read nothing).
constexpr double gemm_smem_bytes(int m, int n, int k, int warps, int wm, bool a_smem, bool b_smem) {
  const int wn = warps / wm;
  return (a_smem ? double(warps) * (m / wm) * k * 2 : 0) +
         (b_smem ? double(warps) * (n / wn) * k * 2 : 0);
}

/// FlashAttention-2's forward per (query tile, key tile): S = Q K^T with Q and K from shared
/// memory (Q is re-read each tile: Is_Q_in_regs = false), O += P V with P in registers; the K and
/// V tiles land by cp.async; one exp2 per score and, per row, one rescale by each of its 4 lanes.
constexpr TileWork fa2_forward_tile(int d, const Fa2Config& c) {
  TileWork w;
  w.mma = 2.0 * c.bm * c.bn * d * 2 / 4096;
  const double reads = gemm_smem_bytes(c.bm, c.bn, d, c.warps, c.warps, true, true) +
                       gemm_smem_bytes(c.bm, d, c.bn, c.warps, c.warps, false, true);
  const double writes = 2.0 * c.bn * d * 2;
  w.smem_wavefronts = (reads + writes) / 128;
  w.sfu = double(c.bm) * c.bn + 4.0 * c.bm;
  return w;
}

/// FlashAttention-2's backward per (query tile, key tile): five GEMMs (S = Q K^T, dP = dO V^T,
/// dV += P^T dO, dK += dS^T Q, dQ = dS K, with P and dS staged through shared memory), the Q and
/// dO tiles landing by cp.async, P and dS written; dQ goes to global memory by fp32 atomics.
constexpr TileWork fa2_backward_tile(int d, const Fa2Config& c) {
  TileWork w;
  w.mma = 5.0 * c.bm * c.bn * d * 2 / 4096;
  const double reads = 2 * gemm_smem_bytes(c.bm, c.bn, d, c.warps, c.atom_sdp, true, true) +
                       2 * gemm_smem_bytes(c.bn, d, c.bm, c.warps, c.atom_dkv, true, true) +
                       gemm_smem_bytes(c.bm, d, c.bn, c.warps, c.atom_dq, true, true);
  const double writes = 2.0 * c.bm * d * 2 + 2.0 * c.bm * c.bn * 2;
  w.smem_wavefronts = (reads + writes) / 128;
  w.sfu = double(c.bm) * c.bn;
  return w;
}

/// FlashAttention-2's epilogue, per query tile (forward: O converted to the storage type and
/// staged through shared memory, sO over sQ, for 16-byte global stores) or per key tile (backward:
/// dK and dV the same way, sdK and sdV over sK): one write and one read of each [rows, d] tile
/// in the storage type (flash_fwd_kernel.h, flash_bwd_kernel.h). Strata's epilogues are in its
/// simulator counts; without these terms FlashAttention-2's rows would have none.
constexpr TileWork fa2_forward_epilogue(int d, const Fa2Config& c) {
  TileWork w;
  w.smem_wavefronts = 2.0 * c.bm * d * 2 / 128;
  return w;
}
constexpr TileWork fa2_backward_epilogue(int d, const Fa2Config& c) {
  TileWork w;
  w.smem_wavefronts = 2 * 2.0 * c.bn * d * 2 / 128;
  return w;
}

// ----------------------------------------------------------------- wgmma forward kernels

/// A warp-specialised wgmma forward (FlashAttention-3's structure, Strata's flash_fwd_sm90): a
/// producer warp loads by TMA, `consumer_wgs` warpgroups of 64 query rows each compute S = Q K^T
/// (SS: Q and K from shared memory) and O += P V, with P from registers (`pv_rs`) or staged
/// through shared memory; the epilogue writes O from registers or through shared memory
/// (`o_via_smem`: stmatrix, then a TMA store). `raw_v_tiles` = 2: each V tile is formed in
/// shared memory from two TMA-landed raw tiles (ResFormer's V' = lambda_self V_l + lambda_first
/// V_0, attention::VanillaAttention::kRawVTiles) by producer warps: a second raw tile per stage.
struct WgmmaFwdConfig {
  int bm, bn, consumer_wgs;
  bool pv_rs;
  bool o_via_smem;
  int raw_v_tiles = 1;
  constexpr int threads() const { return 128 * (1 + consumer_wgs); }
};

/// Strata's flash_fwd_sm90 (attention::FlashFwdSm90Traits): 128 x 128 tiles, two consumer
/// warpgroups, P V as RS, O stored from registers, at every head dim; `raw_v_tiles` is the
/// variant's (1, or 2 for ResFormer).
constexpr WgmmaFwdConfig strata_sm90_forward_config(int /*d*/, int raw_v_tiles = 1) {
  return WgmmaFwdConfig{128, 128, 2, true, false, raw_v_tiles};
}

/// FlashAttention-3's forward tiles for 2-byte types (hopper/tile_size.h, tile_size_fwd_sm90 at
/// Dao-AILab/flash-attention@07602adc, headdim_v = headdim, not local, no paged KV):
/// d <= 64: 192 x 192 with P V as SS, causal 192 x 128 with RS; d <= 96: 192 x 144, SS;
/// d <= 128: 128 x 176, causal 128 x 128, RS. kBlockM / 64 consumer warpgroups; O through shared
/// memory and a TMA store (hopper/epilogue_fwd.hpp).
constexpr WgmmaFwdConfig fa3_forward_config(int d, bool causal) {
  if (d <= 64)
    return causal ? WgmmaFwdConfig{192, 128, 3, true, true}
                  : WgmmaFwdConfig{192, 192, 3, false, true};
  if (d <= 96) return WgmmaFwdConfig{192, 144, 3, false, true};
  return WgmmaFwdConfig{128, causal ? 128 : 176, 2, true, true};
}

/// Shared memory a wgmma forward block holds: Q, two stages of K and V (FA3 keeps two; Strata
/// too), the second raw V tile's two stages where raw_v_tiles = 2, and P where P V is SS. FA3's
/// O staging overlaps the V stages (hopper/flash_fwd_kernel_sm90.h, SharedStorage: "smem_o to
/// overlap with smem_v"), so it adds nothing.
constexpr int wgmma_forward_smem(int d, const WgmmaFwdConfig& c) {
  return (c.bm + (2 + 2 * c.raw_v_tiles) * c.bn) * d * 2 + (c.pv_rs ? 0 : c.bm * c.bn * 2);
}

/// Work of one (query tile, key tile) pair of a wgmma forward. Tensor work in mma.sync-sized
/// units (4096 FLOP; TileWork::mma): 4 bm bn d FLOP. Shared memory: per consumer warpgroup and
/// k16 step of S, A (64 x 16) and B (bn x 16) read by the SS wgmma; per k16 step of P V, B
/// (d x 16), plus A (64 x 16) and the write of P when P V is SS; and the TMA writes of the K and
/// V tiles. raw_v_tiles = 2 adds the second raw tile's TMA write and the V transform's read of
/// both tiles and write of one (4 tiles' bytes). SFU: one exp2 per score and one rescale per row.
constexpr TileWork wgmma_forward_tile(int d, const WgmmaFwdConfig& c) {
  TileWork w;
  w.mma = 4.0 * c.bm * c.bn * d / 4096;
  const double per_wg_s = double(d / 16) * (64 * 16 * 2 + c.bn * 16 * 2);
  const double per_wg_pv = double(c.bn / 16) * (d * 16 * 2 + (c.pv_rs ? 0 : 64 * 16 * 2)) +
                           (c.pv_rs ? 0 : 64.0 * c.bn * 2);
  const double tma = double(1 + c.raw_v_tiles) * c.bn * d * 2;
  const double transform = c.raw_v_tiles == 2 ? 3.0 * c.bn * d * 2 : 0;
  w.smem_wavefronts = (c.consumer_wgs * (per_wg_s + per_wg_pv) + tma + transform) / 128;
  w.sfu = double(c.bm) * c.bn + c.bm;
  return w;
}

/// Per query tile: the TMA write of Q, and FA3's O staged through shared memory (a write by
/// stmatrix, a read by the TMA store).
constexpr TileWork wgmma_forward_epilogue(int d, const WgmmaFwdConfig& c) {
  TileWork w;
  w.smem_wavefronts = (double(c.bm) * d * 2 * (c.o_via_smem ? 3 : 1)) / 128;
  return w;
}

// ---------------------------------------------------------------- wgmma backward kernels

/// A warp-specialised wgmma backward (FlashAttention-3's flash_bwd_kernel_sm90, Strata's
/// flash_bwd_sm90): a block owns a bn-key tile and streams bm-query tiles; its `consumer_wgs`
/// warpgroups take bn / consumer_wgs keys each as wgmma's M and compute S^T = K Q^T and
/// dP^T = V dO^T (FA3's SdP_swapAB; SS, or dP^T RS with V in registers), dV += P^T dO and
/// dK += dS^T Q with P^T and dS^T from registers (RS), dS^T stored to shared memory, and
/// dQ = dS K from it (SS), with dQ's rows (queries) or columns split between the warpgroups or, as
/// dQ^T = K^T dS^T, d on M. dQ leaves from registers (Strata: atomics or the block's slice) or is
/// staged in shared memory as fp32 for a TMA bulk reduce-add (FA3).
struct WgmmaBwdConfig {
  int bm, bn, consumer_wgs;
  bool dp_rs;          ///< dP^T with V from registers (FA3's V_in_regs at d = 96)
  bool dq_split_m;     ///< dQ's query rows split between the warpgroups (else its columns)
  bool dq_swap;        ///< dQ^T = K^T dS^T: d on M, split between the warpgroups (FA3's dQ_swapAB)
  bool dq_via_smem;    ///< dQ staged as fp32 in shared memory for a bulk reduce-add
  bool dkdv_via_smem;  ///< dK and dV leave through shared memory (stmatrix, TMA store)
  constexpr int threads() const { return 128 * (1 + consumer_wgs); }
};

/// Strata's flash_bwd_sm90 (attention::FlashBwdSm90Traits): 64 queries x 128 keys, two consumer
/// warpgroups of 64 keys, dQ's columns split, everything leaving from registers.
constexpr WgmmaBwdConfig strata_sm90_backward_config(int /*d*/) {
  return WgmmaBwdConfig{64, 128, 2, false, false, false, false, false};
}

/// FlashAttention-3's backward tiles for 2-byte types (hopper/flash_bwd_launch_template.h,
/// run_mha_bwd_hdim64/96/128 at Dao-AILab/flash-attention@07602adc, the same at upstream
/// 0251105a; no softcap): d = 64: 128 x 128 (AtomLayoutMdQ 2: dQ's rows split); d = 96: 64 x 128
/// with V in registers (dP RS); d = 128: 80 x 128 with dQ_swapAB, causal 64 x 128. Two MMA
/// warpgroups, SdP_swapAB, dK / dV RS; dQ through shared memory and SM90_BULK_REDUCE_ADD, dK and
/// dV through shared memory and a TMA store (hopper/epilogue_bwd.hpp).
constexpr WgmmaBwdConfig fa3_backward_config(int d, bool causal) {
  if (d <= 64) return WgmmaBwdConfig{128, 128, 2, false, true, false, true, true};
  if (d <= 96) return WgmmaBwdConfig{64, 128, 2, true, false, false, true, true};
  return causal ? WgmmaBwdConfig{64, 128, 2, false, false, false, true, true}
                : WgmmaBwdConfig{80, 128, 2, false, false, true, true, true};
}

/// Shared memory a wgmma backward block holds: K and V, two stages of Q and dO, two of dS, LSE
/// and D per stage, and (FA3) the fp32 dQ staging. FA3's dK / dV staging reuses Q / dO's.
constexpr int wgmma_backward_smem(int d, const WgmmaBwdConfig& c) {
  return 2 * c.bn * d * 2 + 4 * c.bm * d * 2 + 2 * c.bm * c.bn * 2 + 2 * 2 * c.bm * 4 +
         (c.dq_via_smem ? c.bm * d * 4 : 0);
}

/// Work of one (query tile, key tile) pair of a wgmma backward: 10 bm bn d FLOP (five products).
/// Shared memory, summed over the warpgroups (each has 64 keys as M): per k16 step of S^T and
/// dP^T, A (64 x 16; none for dP^T from registers) and B (bm x 16); per k16 step of dV and dK,
/// B (d x 16); per k16 step of dQ, its warpgroup's A and B; the write of dS^T, the TMA writes of
/// Q and dO, and (FA3) dQ's fp32 staging written and read by the bulk reduce. SFU: one exp2 per
/// score.
constexpr TileWork wgmma_backward_tile(int d, const WgmmaBwdConfig& c) {
  TileWork w;
  w.mma = 10.0 * c.bm * c.bn * d / 4096;
  const double wgs = c.consumer_wgs;
  const double sdp = wgs * (d / 16) * ((64 + c.bm) * 32.0 + ((c.dp_rs ? 0 : 64) + c.bm) * 32.0);
  const double dkdv = wgs * 2.0 * (c.bm / 16) * d * 32.0;
  // dQ: per k16 step over the keys, each warpgroup reads its A and B rows
  const double dq_per_step = c.dq_swap      ? wgs * (64 + c.bm) * 32.0       // A = K^T, B = dS^T
                             : c.dq_split_m ? c.bm * 32.0 + wgs * d * 32.0   // A split, B whole
                                            : wgs * c.bm * 32.0 + d * 32.0;  // A whole, B split
  const double dq = (c.bn / 16) * dq_per_step;
  const double writes =
      double(c.bm) * c.bn * 2 + 2.0 * c.bm * d * 2 + (c.dq_via_smem ? 2.0 * c.bm * d * 4 : 0);
  w.smem_wavefronts = (sdp + dkdv + dq + writes) / 128;
  w.sfu = double(c.bm) * c.bn;
  return w;
}

/// Per key tile: the TMA writes of K and V, and (FA3) dK and dV staged through shared memory (a
/// write and a read of each).
constexpr TileWork wgmma_backward_epilogue(int d, const WgmmaBwdConfig& c) {
  TileWork w;
  w.smem_wavefronts = (2.0 * c.bn * d * 2 * (c.dkdv_via_smem ? 3 : 1)) / 128;
  return w;
}

/// Tile pairs (bm x bn) of one head of a sequence of tq queries and tk keys that a flash kernel's
/// block skipping visits: keys [q0 + tk - tq - window_left, q1 + tk - tq) of query tile [q0, q1)
/// (FlashAttention's bottom-right aligned causal mask and left window, attention::Mask; no
/// window when window_left < 0).
constexpr double tile_pairs(int64_t tq, int64_t tk, int bm, int bn, bool causal, int window_left) {
  double pairs = 0;
  for (int64_t m0 = 0; m0 < tq; m0 += bm) {
    const int64_t m1 = std::min<int64_t>(tq, m0 + bm), offset = tk - tq;
    const int64_t lo = window_left >= 0 ? std::max<int64_t>(0, m0 + offset - window_left) : 0;
    const int64_t hi = causal ? std::min<int64_t>(tk, m1 + offset) : tk;
    if (hi > lo) pairs += double((hi + bn - 1) / bn - lo / bn);
  }
  return pairs;
}
/// (query tile, key tile) pairs of one head's attention over T tokens, causal or not.
constexpr double tile_pairs(int64_t t, int bm, int bn, bool causal) {
  return tile_pairs(t, t, bm, bn, causal, -1);
}

// ------------------------------------------ ResFormer's V' on the sm_90a forward: two plans

/// A launch's fixed cost beside its work (the launch and the tail of a short DRAM-bound pass): an
/// assumption of a few microseconds, as kernel launches measure on current GPUs.
inline constexpr double kLaunchOverheadS = 5e-6;

/// The model's time of ResFormer's forward on Strata's sm_90a kernel (batch sequences of tq
/// queries and tk keys, h heads, h_k KV heads) by each plan for V' = lambda_self V_l +
/// lambda_first V_0:
///  fused         the kernel's mixer warps form every V tile in shared memory from two TMA tiles
///                (raw_v_tiles = 2): a second raw tile's TMA write, a read of both and a write of
///                V' per (query tile, key tile) pair, and V_0 read from DRAM;
///  materialised  a pass writes V' through DRAM first (reads V_l and V_0, writes V': three
///                [tk, h_k, d] tensors, DRAM-bound, plus kLaunchOverheadS), then the vanilla
///                kernel runs on it.
/// The fused plan's extra work grows with the query tiles per key tile (it forms each V tile
/// once per query tile), the materialised plan's does not: short sequences favour the fused
/// plan, long ones the materialised one (in this model from about 1.5-2K tokens non-causal and
/// 2.5-4K causal, the fixed launch cost weighing more in small batches; docs/performance.md's
/// Hopper forward table).
struct ResFormerSm90Plans {
  double fused_s = 0, materialised_s = 0;
};
constexpr ResFormerSm90Plans resformer_sm90_plans(int64_t batch, int64_t tq, int64_t tk, int h,
                                                  int h_k, int d, bool causal, int window_left = -1,
                                                  const SmSpec& sm = kH100Wgmma) {
  const WgmmaFwdConfig plain = strata_sm90_forward_config(d, 1),
                       fused = strata_sm90_forward_config(d, 2);
  const double pairs =
      double(batch) * h * tile_pairs(tq, tk, plain.bm, plain.bn, causal, window_left);
  const double kv_tensor = double(batch) * tk * h_k * d * 2;  // bytes of one [tk, h_k, d] tensor
  const double attention_dram = double(batch) * tq * h * d * 2 * 2 + 2 * kv_tensor;
  ResFormerSm90Plans r;
  r.fused_s = bound(sm, wgmma_forward_tile(d, fused), pairs, attention_dram + kv_tensor, 1).seconds;
  r.materialised_s = bound(sm, wgmma_forward_tile(d, plain), pairs, attention_dram, 1).seconds +
                     3 * kv_tensor / (sm.dram_gb_per_s * 1e9) + kLaunchOverheadS;
  return r;
}

}  // namespace strata::cost
