/// \file
/// Flash-attention backward on Hopper (sm_90a): five wgmma products per (query tile, key tile)
/// pair on the forward's machinery (TMA, mbarriers, setmaxnreg, named barriers), run by the
/// simulator with every rule of that machinery checked.
///
/// One block is a producer warpgroup and two consumer warpgroups; it owns key tiles of 128 keys
/// (warpgroup c: keys 64c .. 64c + 63) of one (KV head, sequence): n = blockIdx.x,
/// blockIdx.x + gridDim.x, ... For each it streams the 64-row query tiles of the G query heads
/// of its group that attend to those keys (block skipping by the mask), accumulating dK and dV
/// in registers (the sum over a GQA group happens there), and adds each tile pair's dQ to an
/// fp32 accumulator in global memory.
///  * The producer warp issues TMA loads of K and V (once per key tile) and of Q and dO (two
///    stages), and copies the tile's LSE (log2 units) and D = rowsum(dO o O) into the stage
///    beside them. At d > 64 the consumers compute S^T and then dP^T (kSerialSdP), not both in
///    flight: beside dK and dV they would not fit in 224 registers.
///  * Each consumer warpgroup computes, with its 64 keys as M:
///      S^T  = K Q^T      SS (A = K rows, B = Q, both K-major)
///      dP^T = V dO^T     SS
///      P^T = exp2(S^T scale log2e - LSE), dS^T = P^T o (dP^T - D) in registers (column = query)
///      dV  += P^T dO     RS (A = P^T from registers, B = dO MN-major: as loaded)
///      dK  += dS^T Q     RS
///      dQ   = dS K       SS over all 128 keys: dS^T goes to shared memory by stmatrix (MN-major
///                        for A, two buffers), both warpgroups meet at a named barrier, and
///                        warpgroup c computes dQ's columns of its half of the K tile's column
///                        blocks (K MN-major)
///    Computing S and dP transposed puts the keys on wgmma's M, so P^T and dS^T are already the A
///    operands of dV and dK in registers (FlashAttention-3's dKV_swapAB); only dS makes the trip
///    through shared memory, which dQ needs in any arrangement.
///  * dQ: FlashAttention-2/3's fast mode adds each pair's dQ into one fp32 accumulator with
///    atomics (p.deterministic = false), so its last bits vary from run to run. The default,
///    deterministic mode gives each block (split) its own accumulator slice, which only it
///    writes, in a fixed order (plain read-add-write); a last kernel sums the slices in split
///    order, scales and stores dQ. FlashAttention-3 orders its blocks' additions with semaphores
///    instead (one accumulator, blocks waiting on each other); the slices trade workspace
///    (num_splits accumulators) for blocks that never wait on another block, which is also what
///    lets the simulator run it (it runs a block to completion before the next on a worker).
///
/// Shared memory (1024-byte aligned tiles; the TMA box's swizzle is the descriptors'):
///   K, V   [128 x D] K-major (A of S^T, dP^T), kMNFirst atoms; K also B of dQ (MN-major)
///   Q, dO  [64 x D] per stage: B of S^T / dP^T (K-major) and of dK / dV (MN-major): one layout
///          is both, as the forward's K and V tiles are
///   dS^T   two buffers of [64 queries x 128 keys], MN-major for A of dQ (128B swizzle)
///   LSE, D per stage, fp32
///   mbarriers kv_full, kv_empty, kv_tail, and q_full, q_empty per stage, q_tail
///
/// Rows past a sequence (a ragged tile: TMA reads the packed tensor, so they hold the next
/// sequence's rows): every score there is masked by a select, but dV += P^T dO, dK += dS^T Q
/// and dQ += dS K multiply zero weights by those rows of dO, Q and K, and an inf there would make
/// NaN. The producer lands a ragged tile on a barrier of its own, zeroes those rows, fences them
/// to the async proxy, and only then publishes the stage (the forward's V tail, here for Q, dO,
/// K and V).
///
/// Variants: mask, logit / logit_grad (kTransformsLogits), store_dk_dv and store_dq apply as in
/// the sm_80 kernels; the preprocess is the sm_80 one. Tile-load hooks do not (TMA copies the
/// tiles as stored): Sm90Variant<V> says which variants run here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "strata/attention/flash_bwd.cuh"
#include "strata/attention/flash_fwd_sm90.cuh"

namespace strata::attention {

/// Tile shape and shared-memory plan of the sm_90 backward for head dimension D.
///
/// Registers: per consumer thread dK and dV (D / 2 fp32 each), S^T and dP^T (32 each), their
/// packed P^T and dS^T (16 each) and dQ (at most 32). The producer keeps 56 (at 40 its loop
/// state spilled), the consumers get 224: no spills at any d (the ptxas gate). What took d = 96
/// and 128 from 88 and 288 bytes of spills to none: S^T and dP^T one after the other
/// (kSerialSdP), descriptors as a base plus constant steps (not one 64-bit value per k-step
/// hoisted out of the loops), dS^T by stmatrix (4 row addresses per tile, not 16 word
/// addresses), the barriers' phases in one register, one copy of the gradient code for both
/// warpgroups where their dQ halves are alike.
template <int D>
struct FlashBwdSm90Traits {
  static_assert(D == 64 || D == 96 || D == 128, "sm_90 backward: head dimension 64, 96 or 128");
  static constexpr int kConsumerWGs = 2;
  static constexpr int kBlockN = 64 * kConsumerWGs;  ///< keys per block tile (M of S^T per WG)
  static constexpr int kBlockM = 64;                 ///< queries per Q / dO tile (N of S^T)
  static constexpr int kStages = 2;  ///< Q / dO pipeline depth (sm90_detail::Phases counts 2)
  static constexpr int kThreads = 128 * (1 + kConsumerWGs);
  static constexpr int kProducerRegs = 56;
  static constexpr int kConsumerRegs = 224;
  static_assert(kProducerRegs + kConsumerWGs * kConsumerRegs <= (1 + kConsumerWGs) * 168,
                "setmaxnreg: the warpgroups' registers exceed the block's pool");

  /// 128-byte swizzle at d = 128; 64 bytes (32-column spans) at d = 64 and 96, so that dQ's
  /// columns split between the warpgroups on whole column blocks (a B descriptor starting
  /// inside a swizzle span is not one of the canonical layouts).
  static constexpr arch::wgmma::SmemSwizzle kSwizzle =
      D == 128 ? arch::wgmma::SmemSwizzle::k128B : arch::wgmma::SmemSwizzle::k64B;
  static constexpr int kSpanBytes = arch::wgmma::swizzle_row_bytes(kSwizzle);
  static constexpr int kSpanElems = kSpanBytes / 2;
  static constexpr int kBoxes = D / kSpanElems;
  /// dQ's columns: warpgroup 0 takes the first kDqBoxes0 column blocks (kDqN0 columns), 1 the
  /// rest (kDqN1): 32 / 32 at d = 64, 64 / 32 at d = 96 (wgmma has no N = 48), 64 / 64 at 128.
  static constexpr int kDqBoxes0 = (kBoxes + 1) / 2;
  static constexpr int kDqN0 = kDqBoxes0 * kSpanElems, kDqN1 = D - kDqN0;
  /// S^T and dP^T one after the other (P^T formed between them) rather than in flight together:
  /// beside dK and dV (D fp32 registers) both would not fit at d > 64.
  static constexpr bool kSerialSdP = D > 64;

  /// Q and dO: B of S^T / dP^T (N = queries, K = d, K-major) and of dK / dV (N = d, K = queries,
  /// MN-major); K and V: A of S^T / dP^T (M = keys, K-major), K also B of dQ (N = d, K = keys).
  static constexpr arch::wgmma::Tile kQTile{arch::wgmma::Major::kK, kSwizzle, kBlockM, D,
                                            arch::wgmma::AtomOrder::kMNFirst};
  static constexpr arch::wgmma::Tile kQtTile{arch::wgmma::Major::kMN, kSwizzle, D, kBlockM,
                                             arch::wgmma::AtomOrder::kKFirst};
  static constexpr arch::wgmma::Tile kKTile{arch::wgmma::Major::kK, kSwizzle, kBlockN, D,
                                            arch::wgmma::AtomOrder::kMNFirst};
  static constexpr arch::wgmma::Tile kKt0Tile{arch::wgmma::Major::kMN, kSwizzle, kDqN0, kBlockN,
                                              arch::wgmma::AtomOrder::kKFirst};
  static constexpr arch::wgmma::Tile kKt1Tile{arch::wgmma::Major::kMN, kSwizzle, kDqN1, kBlockN,
                                              arch::wgmma::AtomOrder::kKFirst};
  /// dS (M = queries, K = keys) stored as dS^T rows: MN-major, 64 queries = one 128B atom.
  static constexpr arch::wgmma::SmemSwizzle kDsSwizzle = arch::wgmma::SmemSwizzle::k128B;
  static constexpr arch::wgmma::Tile kDsTile{arch::wgmma::Major::kMN, kDsSwizzle, kBlockM, kBlockN,
                                             arch::wgmma::AtomOrder::kKFirst};
  // The kernel's stmatrix addressing of dS^T assumes this layout: 64 queries = one 128-byte
  // row per key, 8 keys per 1024-byte atom, atoms along the keys.
  static_assert(arch::wgmma::tile_offset(kDsTile, 1, 0) == 2 &&
                    arch::wgmma::tile_offset(kDsTile, 0, 1) == 128 &&
                    arch::wgmma::tile_offset(kDsTile, 0, 8) == 1024,
                "dS^T's canonical layout");
  static_assert(arch::wgmma::tile_valid(kQTile) && arch::wgmma::tile_valid(kQtTile) &&
                    arch::wgmma::tile_valid(kKTile) && arch::wgmma::tile_valid(kKt0Tile) &&
                    arch::wgmma::tile_valid(kKt1Tile) && arch::wgmma::tile_valid(kDsTile),
                "tiles are whole swizzle atoms");

  static constexpr uint32_t kQBytes = uint32_t(kBlockM) * D * 2;  ///< Q or dO tile
  static constexpr uint32_t kKVBytes = uint32_t(kBlockN) * D * 2;
  static constexpr uint32_t kDsBytes = uint32_t(kBlockM) * kBlockN * 2;
  static constexpr uint32_t kQBoxBytes = uint32_t(kBlockM) * kSpanBytes;
  static constexpr uint32_t kKVBoxBytes = uint32_t(kBlockN) * kSpanBytes;
  static constexpr uint32_t kStatBytes = 2 * kBlockM * 4;  ///< LSE (log2) and D of a Q tile
  // Byte offsets from the 1024-aligned base.
  static constexpr uint32_t kKOff = 0;
  static constexpr uint32_t kVOff = kKOff + kKVBytes;
  static constexpr uint32_t kQOff = kVOff + kKVBytes;                ///< stage s: + 2 s kQBytes
  static constexpr uint32_t kDoOff = kQOff + kQBytes;                ///< stage s: + 2 s kQBytes
  static constexpr uint32_t kDsOff = kQOff + 2 * kStages * kQBytes;  ///< buffer b: + b kDsBytes
  static constexpr uint32_t kStatOff = kDsOff + 2 * kDsBytes;        ///< stage s: + s kStatBytes
  static constexpr uint32_t kBarOff = kStatOff + kStages * kStatBytes;
  static_assert(kQBytes % 1024 == 0 && kKVBytes % 1024 == 0 && kDsBytes % 1024 == 0,
                "tiles start on the 128B swizzle's 1024-byte pattern");
  /// mbarriers: kv_full, kv_empty, kv_tail, q_tail, then q_full and q_empty per stage.
  static constexpr int kBarriers = 4 + 2 * kStages;
  static constexpr size_t kSmemBytes = kBarOff + 8 * kBarriers + 1024;
  static_assert(kSmemBytes <= 227 * 1024, "beyond an H100's 227 KiB of shared memory per block");

  /// Named barrier 1: both consumer warpgroups have stored their half of dS^T.
  static constexpr int kDsBarrier = 1;

  /// wgmma FLOPs of one (query tile, key tile) pair: the five products.
  static constexpr uint64_t kFlopsPerTilePair = uint64_t(10) * kBlockM * kBlockN * D;
};

/// The kernel's parameters: the backward problem, its four TMA maps, and the dQ plan.
struct FlashBwdSm90Params {
  tma::TensorMap q_map, k_map, v_map, do_map;  // first: 64-byte aligned inside the struct
  FlashBwdParams bwd;
  int num_n_blocks = 0;  ///< key tiles of the longest sequence
  /// Blocks per (KV head, sequence) = gridDim.x: block s owns key tiles s, s + num_splits, ...
  int num_splits = 0;
  /// true: dQ is added into one accumulator with atomics (the fast mode); false: block s adds
  /// into its own slice, p.dq_accum + s * dq_slice (deterministic).
  bool atomic_dq = false;
  int64_t dq_slice = 0;  ///< floats per slice: total_q * h * d
  bool q_heads_inner = true, kv_heads_inner = true;
};

/// Grid of the backward kernel: (splits, KV heads, sequences).
inline dim3 flash_bwd_sm90_grid(const FlashBwdSm90Params& s) {
  return dim3(unsigned(std::max(1, s.num_splits)), unsigned(s.bwd.h_k), unsigned(s.bwd.b));
}

/// Splits of the deterministic mode for a problem on `sms` SMs: enough blocks to fill the SMs
/// twice over, at most one per key tile and at most kMaxSplits (each is a dQ accumulator).
inline constexpr int kBwdSm90MaxSplits = 8;
inline int flash_bwd_sm90_splits(const FlashBwdParams& p, int sms) {
  constexpr int BN = FlashBwdSm90Traits<64>::kBlockN;
  const int n_blocks = std::max(1, (p.seqlen_k + BN - 1) / BN);
  const int64_t groups = std::max<int64_t>(1, int64_t(p.h_k) * p.b);
  const int64_t want = (2 * int64_t(std::max(1, sms)) + groups - 1) / groups;
  return int(std::max<int64_t>(1, std::min<int64_t>({want, n_blocks, kBwdSm90MaxSplits})));
}

/// Floats of the sm_90 backward's dQ accumulator: one [total_q, h, d] slice in the fast mode,
/// num_splits of them in the deterministic one.
inline int64_t flash_bwd_sm90_dq_accum_floats(const FlashBwdParams& p, int num_splits) {
  const int64_t slice = int64_t(std::max(0, p.total_q)) * std::max(0, p.h) * std::max(0, p.d);
  return p.deterministic ? slice * std::max(1, num_splits) : slice;
}

STRATA_EXECUTOR_BEGIN  // tma::encode_tiled's executor (the driver's or Strata's)

/// The sm_90 backward's parameters for backward problem `p` (validated by api::validate; its
/// dq_accum holds flash_bwd_sm90_dq_accum_floats(p, num_splits)) whose K/V tensors have
/// `total_k` rows.
template <int D>
inline Status make_flash_bwd_sm90_params(const FlashBwdParams& p, int total_k, int num_splits,
                                         FlashBwdSm90Params* out) {
  using Tr = FlashBwdSm90Traits<D>;
  if (p.d != D) return Status::InvalidArgument("d: the sm_90 plan was compiled for another d");
  FlashBwdSm90Params s;
  s.bwd = p;
  const int64_t tq_rows = p.total_q > 0 ? p.total_q : 1;
  if (Status st =
          make_sm90_operand_map<D, Tr>(&s.q_map, &s.q_heads_inner, p.q, p.dtype, tq_rows, p.h,
                                       p.q_row_stride, p.q_head_stride, Tr::kBlockM, "q");
      !st.ok())
    return st;
  bool do_inner = true, v_inner = true;
  if (Status st =
          make_sm90_operand_map<D, Tr>(&s.do_map, &do_inner, p.dout, p.dtype, tq_rows, p.h,
                                       p.do_row_stride, p.do_head_stride, Tr::kBlockM, "do");
      !st.ok())
    return st;
  if (do_inner != s.q_heads_inner)
    return Status::InvalidArgument(
        "do_row_stride / do_head_stride: dO's heads and tokens nest the other way round from Q's");
  const int kv_rows = total_k > 0 ? total_k : 1;
  if (Status st =
          make_sm90_operand_map<D, Tr>(&s.k_map, &s.kv_heads_inner, p.k, p.dtype, kv_rows, p.h_k,
                                       p.k_row_stride, p.k_head_stride, Tr::kBlockN, "k");
      !st.ok())
    return st;
  if (Status st = make_sm90_operand_map<D, Tr>(&s.v_map, &v_inner, p.v, p.dtype, kv_rows, p.h_k,
                                               p.v_row_stride, p.v_head_stride, Tr::kBlockN, "v");
      !st.ok())
    return st;
  if (v_inner != s.kv_heads_inner)
    return Status::InvalidArgument(
        "v_row_stride / v_head_stride: V's heads and tokens nest the other way round from K's");
  s.num_n_blocks = (p.seqlen_k + Tr::kBlockN - 1) / Tr::kBlockN;
  s.atomic_dq = !p.deterministic;
  s.num_splits = s.atomic_dq ? std::max(1, s.num_n_blocks) : std::max(1, num_splits);
  s.dq_slice = int64_t(p.total_q) * p.h * D;
  *out = s;
  return Status::Ok();
}

namespace sm90_detail {

/// The query tiles [m_first, m_end) that key tile n of a sequence visits (per query head of the
/// group), and its key rows [n0, n1). Producer and consumers both compute it here: they must
/// agree on every tile they exchange.
struct KeyTile {
  int n0, n1, m_first, m_end;
  STRATA_HOST_DEVICE bool has_queries() const { return m_first < m_end; }
};
template <int BM, int BN>
STRATA_HOST_DEVICE KeyTile key_tile(const Mask& mask, const SeqBounds& sb, int n) {
  KeyTile k;
  k.n0 = n * BN;
  k.n1 = k.n0 + BN < sb.tk ? k.n0 + BN : sb.tk;
  const int q_lo = mask.query_begin(k.n0), q_hi = mask.query_end(k.n1);
  k.m_first = q_lo / BM;
  k.m_end = q_hi > q_lo ? (q_hi + BM - 1) / BM : k.m_first;
  return k;
}

/// What a backward block owns: KV head blockIdx.y of sequence blockIdx.z, the group of G query
/// heads that share it, its mask and its key tiles. Each warpgroup computes it after its
/// setmaxnreg: values computed before and live across it were spilled at d = 128 (fp16).
struct BwdBlock {
  int h_k, G, n_blocks;
  SeqBounds sb;
  Mask mask;
  template <int BN, class Variant>
  STRATA_DEVICE static BwdBlock of(const FlashBwdParams& p, const Variant& var) {
    BwdBlock k;
    k.h_k = int(blockIdx.y);
    k.G = p.h / p.h_k;
    k.sb = SeqBounds::of(p, int(blockIdx.z));
    k.mask = var.mask(p, k.sb);
    k.n_blocks = (k.sb.tk + BN - 1) / BN;
    return k;
  }
};

/// The phases of the backward's barriers in one register (the kernel's loop state is what
/// ptxas spilled at d = 128): Q / dO uses mod 4 (bit 0: the stage of two, bit 1: its phase),
/// then the parities of the K/V uses, K/V tails and Q tails.
struct Phases {
  uint32_t bits = 0;
  STRATA_HOST_DEVICE int stage() const { return int(bits & 1u); }
  STRATA_HOST_DEVICE uint32_t q() const { return (bits >> 1) & 1u; }
  STRATA_HOST_DEVICE uint32_t kv() const { return (bits >> 2) & 1u; }
  STRATA_HOST_DEVICE uint32_t kv_tail() const { return (bits >> 3) & 1u; }
  STRATA_HOST_DEVICE uint32_t q_tail() const { return (bits >> 4) & 1u; }
  STRATA_HOST_DEVICE void next_q() { bits = (bits & ~3u) | ((bits + 1u) & 3u); }
  STRATA_HOST_DEVICE void next_kv() { bits ^= 4u; }
  STRATA_HOST_DEVICE void next_kv_tail() { bits ^= 8u; }
  STRATA_HOST_DEVICE void next_q_tail() { bits ^= 16u; }
};

}  // namespace sm90_detail

template <class T, int D, class Variant = VanillaAttention>
__global__ void __launch_bounds__(FlashBwdSm90Traits<D>::kThreads, 1)
    flash_bwd_sm90_kernel(const __grid_constant__ FlashBwdSm90Params sp, const Variant var) {
  static_assert(AttentionVariant<Variant, T, D>, "the variant policy misses a hook (variant.hpp)");
  static_assert(Sm90Variant<Variant>::value,
                "this variant transforms tiles on load; the sm_90 backward loads them by TMA");
#if STRATA_HAS_SM90A
  using Tr = FlashBwdSm90Traits<D>;
  namespace wg = arch::wgmma;
  constexpr int BM = Tr::kBlockM, BN = Tr::kBlockN, S = Tr::kStages;
  const FlashBwdParams& p = sp.bwd;

  STRATA_DYNAMIC_SMEM(unsigned char, smem_raw);
  const uint32_t raw_addr = arch::smem_u32(smem_raw);
  unsigned char* smem = smem_raw + (((raw_addr + 1023u) & ~1023u) - raw_addr);
  const uint32_t base = arch::smem_u32(smem);
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + Tr::kBarOff);
  uint64_t* kv_full = bars;
  uint64_t* kv_empty = bars + 1;
  uint64_t* kv_tail = bars + 2;
  uint64_t* q_tail = bars + 3;
  uint64_t* q_full = bars + 4;
  uint64_t* q_empty = q_full + S;
  auto stat = [&](int stage) {  // LSE (log2 units) then D of the stage's 64 query rows
    return reinterpret_cast<float*>(smem + Tr::kStatOff + stage * Tr::kStatBytes);
  };

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int wg_idx = tid / wg::kWarpgroupThreads;
  if (tid == 0) {
    arch::mbarrier_init(kv_full, 1);
    arch::mbarrier_init(kv_empty, 4 * Tr::kConsumerWGs);  // lane 0 of every consumer warp
    arch::mbarrier_init(kv_tail, 1);
    arch::mbarrier_init(q_tail, 1);
    for (int s = 0; s < S; ++s) {
      arch::mbarrier_init(&q_full[s], 1);
      arch::mbarrier_init(&q_empty[s], 4 * Tr::kConsumerWGs);
    }
  }
  __syncthreads();

  if (wg_idx == 0) {
    // ---------------------------------------------------------------------------- producer
    arch::setmaxnreg_dec<Tr::kProducerRegs>();
    const sm90_detail::BwdBlock blk = sm90_detail::BwdBlock::of<BN>(p, var);
    const int h_k = blk.h_k, G = blk.G, n_blocks = blk.n_blocks;
    const SeqBounds& sb = blk.sb;
    const Mask& mask = blk.mask;
    if (warp != 0) return;
    // the barriers' phases, one register (sm90_detail::Phases)
    sm90_detail::Phases ph;
    for (int n = int(blockIdx.x); n < n_blocks; n += int(gridDim.x)) {
      const sm90_detail::KeyTile kt = sm90_detail::key_tile<BM, BN>(mask, sb, n);
      if (!kt.has_queries()) continue;  // dK = dV = 0: nothing to load
      // K and V, once the previous key tile's last products have retired
      arch::mbarrier_wait(kv_empty, ph.kv() ^ 1u);
      ph.next_kv();
      const int kv_valid = kt.n1 - kt.n0;
      uint64_t* kv_bar = kv_valid < BN ? kv_tail : kv_full;
      if (arch::elect_one()) {
        arch::mbarrier_arrive_expect_tx(kv_bar, 2 * Tr::kKVBytes);
        sm90_detail::load_tile<D, Tr>(smem + Tr::kKOff, &sp.k_map, sp.kv_heads_inner, kv_bar, h_k,
                                      sb.k_begin + kt.n0, Tr::kKVBoxBytes);
        sm90_detail::load_tile<D, Tr>(smem + Tr::kVOff, &sp.v_map, sp.kv_heads_inner, kv_bar, h_k,
                                      sb.k_begin + kt.n0, Tr::kKVBoxBytes);
      }
      __syncwarp();
      if (kv_valid < BN) {  // ragged: zero the rows past the sequence, then publish
        arch::mbarrier_wait(kv_tail, ph.kv_tail());
        ph.next_kv_tail();
        sm90_detail::zero_tile_rows<Tr>(smem + Tr::kKOff, BN, kv_valid, Tr::kKVBoxBytes, lane);
        sm90_detail::zero_tile_rows<Tr>(smem + Tr::kVOff, BN, kv_valid, Tr::kKVBoxBytes, lane);
        arch::fence_proxy_async();
        __syncwarp();
        if (arch::elect_one()) arch::mbarrier_arrive(kv_full);
        __syncwarp();
      }
      for (int g = 0; g < G; ++g) {
        const int h = h_k * G + g;
        for (int m = kt.m_first; m < kt.m_end; ++m, ph.next_q()) {
          const int st = ph.stage(), m0 = m * BM;
          arch::mbarrier_wait(&q_empty[st], ph.q() ^ 1u);
          // LSE and D of the tile's rows (+inf / 0 past the sequence: P = 0 there), published
          // with the stage by the elected lane's arrival below (after __syncwarp)
          float* lse2 = stat(st);
          STRATA_UNROLL
          for (int r = lane; r < BM; r += 32) {
            const bool valid = m0 + r < sb.tq;
            const int64_t at = int64_t(h) * p.total_q + sb.q_begin + m0 + r;
            lse2[r] = lse_log2(valid ? p.lse[at] : 0.f, valid);
            lse2[BM + r] = valid ? p.dsum[at] : 0.f;
          }
          __syncwarp();
          const int q_valid = sb.tq - m0;
          uint64_t* q_bar = q_valid < BM ? q_tail : &q_full[st];
          unsigned char* qs = smem + Tr::kQOff + st * 2 * Tr::kQBytes;
          unsigned char* dos = smem + Tr::kDoOff + st * 2 * Tr::kQBytes;
          if (arch::elect_one()) {
            arch::mbarrier_arrive_expect_tx(q_bar, 2 * Tr::kQBytes);
            sm90_detail::load_tile<D, Tr>(qs, &sp.q_map, sp.q_heads_inner, q_bar, h,
                                          sb.q_begin + m0, Tr::kQBoxBytes);
            sm90_detail::load_tile<D, Tr>(dos, &sp.do_map, sp.q_heads_inner, q_bar, h,
                                          sb.q_begin + m0, Tr::kQBoxBytes);
          }
          __syncwarp();
          if (q_valid < BM) {
            arch::mbarrier_wait(q_tail, ph.q_tail());
            ph.next_q_tail();
            sm90_detail::zero_tile_rows<Tr>(qs, BM, q_valid, Tr::kQBoxBytes, lane);
            sm90_detail::zero_tile_rows<Tr>(dos, BM, q_valid, Tr::kQBoxBytes, lane);
            arch::fence_proxy_async();
            __syncwarp();
            if (arch::elect_one()) arch::mbarrier_arrive(&q_full[st]);
            __syncwarp();
          }
        }
      }
    }
    return;
  }

  // ------------------------------------------------------------------------------ consumers
  arch::setmaxnreg_inc<Tr::kConsumerRegs>();
  const sm90_detail::BwdBlock blk = sm90_detail::BwdBlock::of<BN>(p, var);
  const int h_k = blk.h_k, G = blk.G, n_blocks = blk.n_blocks;
  const SeqBounds& sb = blk.sb;
  const Mask& mask = blk.mask;
  const int c = wg_idx - 1;                      // consumer warpgroup: keys 64c .. 64c + 63
  const int t128 = tid % wg::kWarpgroupThreads;  // thread within the warpgroup
  const int wwarp = t128 / 32;
  const float scale_log2 = p.softmax_scale * core::kLog2e;
  constexpr wg::Tile kQTile = Tr::kQTile, kQtTile = Tr::kQtTile, kKTile = Tr::kKTile,
                     kDsTile = Tr::kDsTile, kKt0Tile = Tr::kKt0Tile, kKt1Tile = Tr::kKt1Tile;
  const uint32_t k_base = base + Tr::kKOff;
  // The descriptor of k-step ks of a tile is its first one plus the step's byte offset / 16 in
  // the start-address field (14 bits of a shared address below 256 KiB: no carry out). Built
  // that way, each is one add of a constant to a base the loop keeps, rather than a descriptor
  // per step that the compiler hoists out of the loops (at d = 128 those 64-bit values spilled).
  const auto k_step = [](const wg::Tile& t, uint64_t desc0, int ks) {
    return desc0 + uint64_t(wg::tile_k16_offset(t, ks) >> 4);
  };
  // A of S^T and dP^T: this warpgroup's 64 rows of K and V
  const uint64_t k_desc0 = wg::make_desc(k_base + wg::tile_offset(kKTile, 64 * c, 0),
                                         wg::tile_lbo(kKTile), wg::tile_sbo(kKTile), Tr::kSwizzle);
  const uint64_t v_desc0 = k_desc0 + uint64_t(Tr::kKVBytes >> 4);
  float* const dq_acc =
      p.dq_accum + (sp.atomic_dq ? int64_t(0) : int64_t(blockIdx.x) * sp.dq_slice);
  sm90_detail::Phases ph;

  for (int n = int(blockIdx.x); n < n_blocks; n += int(gridDim.x)) {
    const sm90_detail::KeyTile kt = sm90_detail::key_tile<BM, BN>(mask, sb, n);
    const int n0 = kt.n0;
    const int key0 = n0 + 64 * c + 16 * wwarp;  // this warp's first key row (of the sequence)
    arch::WgmmaAcc<D> dk, dv;
    STRATA_UNROLL
    for (int i = 0; i < D / 2; ++i) dk.r[i] = dv.r[i] = 0.f;

    if (kt.has_queries()) {
      arch::mbarrier_wait(kv_full, ph.kv());
      ph.next_kv();
      arch::WgmmaAcc<BM> s, dp;
      uint32_t pa[BM / 16][4], dsa[BM / 16][4];  // P^T and dS^T: A of dV and dK
      auto fence_operands = [&]() {
        arch::wgmma_fence_operand(s);
        arch::wgmma_fence_operand(dp);
        arch::wgmma_fence_operand(dk);
        arch::wgmma_fence_operand(dv);
        arch::wgmma_fence_operand(pa);
        arch::wgmma_fence_operand(dsa);
      };
      // dV += P^T dO and dK += dS^T Q (RS); once they retire, P^T and dS^T are dead and the
      // stage is released; then dQ = dS K (SS) for warpgroup kWhich's columns (B = the K tile's
      // column blocks from its first), added to the accumulator. In that order, not all three in
      // flight together: at d = 128 the A registers beside dQ's and dK / dV's spilled.
      // kWhich = 2 where both halves have the same N (d = 64, 128): one copy of the code for
      // both warpgroups (two copies spilled 8 bytes at d = 128), the offsets from c.
      auto gradients = [&]<int kWhich>(int st, int ds_buf, int h, int m0) {
        constexpr int N = kWhich == 0 ? Tr::kDqN0 : Tr::kDqN1;
        constexpr wg::Tile kKtTile = kWhich == 0 ? kKt0Tile : kKt1Tile;
        const int boxes0 = kWhich == 0 ? 0 : kWhich == 1 ? Tr::kDqBoxes0 : c * Tr::kDqBoxes0;
        const uint32_t kb_off = uint32_t(boxes0) * Tr::kKVBoxBytes;
        const int col0 = boxes0 * Tr::kSpanElems;
        const uint64_t qt_desc0 =
            wg::tile_desc(kQtTile, base + Tr::kQOff + uint32_t(st) * 2 * Tr::kQBytes, 0);
        const uint64_t dot_desc0 = qt_desc0 + uint64_t(Tr::kQBytes >> 4);
        const uint64_t ds_desc0 =
            wg::tile_desc(kDsTile, base + Tr::kDsOff + uint32_t(ds_buf) * Tr::kDsBytes, 0);
        const uint64_t kt_desc0 = wg::tile_desc(kKtTile, k_base + kb_off, 0);
        fence_operands();
        arch::wgmma_fence();
        STRATA_UNROLL
        for (int kk = 0; kk < BM / 16; ++kk)
          arch::wgmma_rs<D, T, 1>(dv, pa[kk], k_step(kQtTile, dot_desc0, kk), true);
        STRATA_UNROLL
        for (int kk = 0; kk < BM / 16; ++kk)
          arch::wgmma_rs<D, T, 1>(dk, dsa[kk], k_step(kQtTile, qt_desc0, kk), true);
        arch::wgmma_commit();
        arch::wgmma_wait<0>();
        fence_operands();
        if (lane == 0) arch::mbarrier_arrive(&q_empty[st]);  // this warp's Q / dO reads retired

        arch::WgmmaAcc<N> dq;
        STRATA_UNROLL
        for (int i = 0; i < N / 2; ++i) dq.r[i] = 0.f;  // defined registers: no injected arrive
        arch::wgmma_fence_operand(dq);
        arch::wgmma_fence();
        STRATA_UNROLL
        for (int kk = 0; kk < BN / 16; ++kk)
          arch::wgmma_ss<N, T, 1, 1>(dq, k_step(kDsTile, ds_desc0, kk),
                                     k_step(kKtTile, kt_desc0, kk), kk > 0);
        arch::wgmma_commit();
        arch::wgmma_wait<0>();
        arch::wgmma_fence_operand(dq);
        // dQ rows m0 + acc_row, unscaled (the convert kernel applies the softmax scale)
        STRATA_UNROLL
        for (int rr = 0; rr < 2; ++rr) {
          const int row = m0 + 16 * wwarp + lane / 4 + 8 * rr;
          if (row >= sb.tq) continue;
          float* out = dq_acc + (int64_t(sb.q_begin) + row) * (int64_t(p.h) * D) + int64_t(h) * D +
                       col0 + 2 * (lane % 4);
          STRATA_UNROLL
          for (int j = 0; j < N / 8; ++j) {
            const float x0 = dq.r[4 * j + 2 * rr], x1 = dq.r[4 * j + 2 * rr + 1];
            if (sp.atomic_dq) {
              atomicAdd(out + 8 * j, x0);
              atomicAdd(out + 8 * j + 1, x1);
            } else {  // this block's own slice, in its fixed order
              out[8 * j] += x0;
              out[8 * j + 1] += x1;
            }
          }
        }
      };

      for (int g = 0; g < G; ++g) {
        const int h = h_k * G + g;
        for (int m = kt.m_first; m < kt.m_end; ++m, ph.next_q()) {
          // the stage; also the dS^T buffer (the two alternate the same way)
          const int st = ph.stage(), m0 = m * BM, ds_buf = st;
          const uint64_t q_desc0 =
              wg::tile_desc(kQTile, base + Tr::kQOff + uint32_t(st) * 2 * Tr::kQBytes, 0);
          const uint64_t do_desc0 = q_desc0 + uint64_t(Tr::kQBytes >> 4);
          arch::mbarrier_wait(&q_full[st], ph.q());

          // S^T = K Q^T and dP^T = V dO^T (keys 64c.. as M), each its own group
          auto issue_s = [&]() {
            STRATA_UNROLL
            for (int ks = 0; ks < D / 16; ++ks)
              arch::wgmma_ss<BM, T>(s, k_step(kKTile, k_desc0, ks), k_step(kQTile, q_desc0, ks),
                                    ks > 0);
            arch::wgmma_commit();
          };
          auto issue_dp = [&]() {
            STRATA_UNROLL
            for (int ks = 0; ks < D / 16; ++ks)
              arch::wgmma_ss<BM, T>(dp, k_step(kKTile, v_desc0, ks), k_step(kQTile, do_desc0, ks),
                                    ks > 0);
            arch::wgmma_commit();
          };

          // P^T and dS^T (element v: key key0 + acc_row, query m0 + acc_col), straight into the
          // A registers of dV and dK (a[2r + i] of k-step kk is accumulator element 8 kk + 2r +
          // i). A score outside the mask or the sequence is 0 by a select, never a product.
          const float* lse2 = stat(st);
          const bool full = m0 + BM <= sb.tq && mask.all_connected(m0, m0 + BM, n0, n0 + BN);
          const auto on = [&](int v) {
            const int qi = m0 + wg::acc_col(lane, v);
            return full || (qi < sb.tq && mask.connected(qi, key0 + wg::acc_row(lane, v)));
          };
          // P^T from S^T; dS^T from the rounded P, as the sm_80 kernels form it
          // which of the thread's 32 scores are live, one bit each: P^T's select sets them,
          // dS^T's reads them (the mask arithmetic once per score, and one register between)
          static_assert(BM / 2 <= 32, "a bit per accumulator element");
          uint32_t live = 0;
          auto p_from_s = [&]() {
            STRATA_UNROLL
            for (int kk = 0; kk < BM / 16; ++kk) {
              STRATA_UNROLL
              for (int r = 0; r < 4; ++r) {
                float pr[2];
                STRATA_UNROLL
                for (int i = 0; i < 2; ++i) {
                  const int v = 8 * kk + 2 * r + i;
                  const bool lv = on(v);
                  live |= uint32_t(lv) << v;
                  pr[i] =
                      lv ? core::exp2_scaled(s.r[v], scale_log2, lse2[wg::acc_col(lane, v)]) : 0.f;
                }
                pa[kk][r] = pack2<T>(pr[0], pr[1]);
              }
            }
          };
          auto ds_from_dp = [&]() {
            STRATA_UNROLL
            for (int kk = 0; kk < BM / 16; ++kk) {
              STRATA_UNROLL
              for (int r = 0; r < 4; ++r) {
                float pr[2], ds[2];
                unpack2<T>(pa[kk][r], pr[0], pr[1]);
                STRATA_UNROLL
                for (int i = 0; i < 2; ++i) {
                  const int v = 8 * kk + 2 * r + i;
                  ds[i] =
                      (live >> v) & 1u ? pr[i] * (dp.r[v] - lse2[BM + wg::acc_col(lane, v)]) : 0.f;
                }
                dsa[kk][r] = pack2<T>(ds[0], ds[1]);
              }
            }
          };
          fence_operands();
          arch::wgmma_fence();
          if constexpr (Variant::kTransformsLogits) {  // logit_grad needs the raw score
            issue_s();
            issue_dp();
            arch::wgmma_wait<0>();
            fence_operands();
            STRATA_UNROLL
            for (int kk = 0; kk < BM / 16; ++kk) {
              STRATA_UNROLL
              for (int r = 0; r < 4; ++r) {
                float pr[2], ds[2];
                STRATA_UNROLL
                for (int i = 0; i < 2; ++i) {
                  const int v = 8 * kk + 2 * r + i, col = wg::acc_col(lane, v);
                  const int qi = m0 + col, kj = key0 + wg::acc_row(lane, v);
                  const bool live = on(v);
                  pr[i] = live ? bwd_prob(var, p, s.r[v], lse2[col], scale_log2, qi, kj, h) : 0.f;
                  ds[i] =
                      live ? bwd_dscore(var, p, s.r[v], pr[i], dp.r[v], lse2[BM + col], qi, kj, h)
                           : 0.f;
                }
                pa[kk][r] = pack2<T>(pr[0], pr[1]);
                dsa[kk][r] = pack2<T>(ds[0], ds[1]);
              }
            }
          } else if constexpr (Tr::kSerialSdP) {
            // S^T, then P^T, and only then dP^T: S^T and dP^T are never live together
            issue_s();
            arch::wgmma_wait<0>();
            fence_operands();
            p_from_s();
            fence_operands();
            arch::wgmma_fence();
            issue_dp();
            arch::wgmma_wait<0>();
            fence_operands();
            ds_from_dp();
          } else {
            // P^T as soon as S^T retires, while dP^T is still in flight
            issue_s();
            issue_dp();
            arch::wgmma_wait<1>();
            fence_operands();
            p_from_s();
            arch::wgmma_wait<0>();
            fence_operands();
            ds_from_dp();
          }
          // dS^T into buffer ds_buf by stmatrix: the A registers of k-step kk are four 8 x 8
          // matrices of the accumulator map (keys 16 wwarp + 8 (r & 1) + 0..7, queries
          // 8 (2 kk + r / 2) + 0..7), and a key's queries are one 128-byte row of the MN-major
          // dS tile (row key % 8 of atom key / 8; 16-byte chunk j at j ^ (key % 8), the 128B
          // swizzle). Lane l gives the row address of matrix l / 8, row l % 8. The other
          // warpgroup's dQ of two tiles ago read this buffer: it retired that before it arrived
          // at the previous tile's barrier.
          {
            const int mi = lane / 8, ri = lane % 8;
            unsigned char* row = smem + Tr::kDsOff + ds_buf * Tr::kDsBytes +
                                 (8 * c + 2 * wwarp + (mi & 1)) * 1024 + ri * 128;
            STRATA_UNROLL
            for (int kk = 0; kk < BM / 16; ++kk)
              arch::stmatrix<4>(row + (((2 * kk + (mi >> 1)) ^ ri) << 4), dsa[kk]);
          }
          arch::fence_proxy_async();  // the stmatrix stores, before wgmma reads them
          arch::named_barrier_sync(Tr::kDsBarrier, 2 * wg::kWarpgroupThreads);

          if constexpr (Tr::kDqN0 == Tr::kDqN1)
            gradients.template operator()<2>(st, ds_buf, h, m0);
          else if (c == 0)
            gradients.template operator()<0>(st, ds_buf, h, m0);
          else
            gradients.template operator()<1>(st, ds_buf, h, m0);
        }
      }
      if (lane == 0) arch::mbarrier_arrive(kv_empty);  // every product of this key tile retired
    }

    // dK (scaled) and dV of this thread's two key rows, through the store hook
    STRATA_UNROLL
    for (int rr = 0; rr < 2; ++rr) {
      const int row = key0 + lane / 4 + 8 * rr;
      float dk_row[D / 4], dv_row[D / 4];
      STRATA_UNROLL
      for (int j = 0; j < D / 8; ++j) {
        dk_row[2 * j] = dk.r[4 * j + 2 * rr] * p.softmax_scale;
        dk_row[2 * j + 1] = dk.r[4 * j + 2 * rr + 1] * p.softmax_scale;
        dv_row[2 * j] = dv.r[4 * j + 2 * rr];
        dv_row[2 * j + 1] = dv.r[4 * j + 2 * rr + 1];
      }
      const RowSite rs{int64_t(sb.k_begin) + row, h_k, 2 * (lane % 4), row < sb.tk};
      var.template store_dk_dv<T>(dk_row, dv_row, p, rs, arch::LaneGroupSum<4>{});
    }
  }
#elif STRATA_DEVICE_PASS
  (void)sp, (void)var;
  __trap();
#endif
}

/// Zeroes `n` floats of the dQ accumulator (grid-stride, kThreads per block; before the backward
/// kernel adds to it). A template so that a header defines it in every translation unit.
template <int kThreads = 256>
__global__ void __launch_bounds__(kThreads) flash_bwd_sm90_zero_kernel(float* acc, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kThreads)
    acc[i] = 0.f;
}

STRATA_EXECUTOR_END
}  // namespace strata::attention
