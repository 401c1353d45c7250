/// \file
/// Flash-attention forward on Hopper (sm_90a): FlashAttention-3's structure on Strata's arch
/// layer (TMA, mbarriers, wgmma, setmaxnreg, named barriers), run by the simulator with every
/// rule of that machinery checked.
///
/// One block (CTA) is a producer warpgroup and kConsumerWGs consumer warpgroups; it is persistent:
/// it walks the (query tile, head, sequence) tiles blockIdx.x, blockIdx.x + gridDim.x, ..., the
/// heaviest query tiles of each head first (causal tiles near the end see the most keys).
///  * The producer warp (warp 0; the other three producer warps exit after giving back their
///    registers) issues TMA loads of Q (one stage) and of K and V (kStages stages each, K and V
///    on separate barriers so that S = Q K^T starts before V lands). Its elected lane announces
///    the bytes (arrive.expect_tx) and issues the boxes; the warp waits for a stage's "empty"
///    barrier before refilling it.
///  * Each consumer warpgroup owns 64 query rows of the tile: S = Q K^T as an SS wgmma (m64 x
///    kBlockN x D), the online softmax in registers, O += P V as an RS wgmma (P from registers, V
///    MN-major from shared memory). FA3's intra-warpgroup overlap: key tile n's S is issued
///    together with tile n-1's P V, the softmax of tile n runs while P V is in flight, and O is
///    rescaled only after it retires. FA3's inter-warpgroup ping-pong: the warpgroups take turns
///    issuing their GEMMs through a ring of named barriers, so one's softmax hides behind the
///    other's tensor-core work.
///  * The epilogue hands each normalised output row to the variant's store_o (registers to
///    global, as the sm_80 kernel does; FA3 stages O through stmatrix and a TMA store instead),
///    and writes the natural-log LSE.
///
/// Shared memory (each operand tile a canonical wgmma tile, 1024-byte aligned so that descriptors
/// carry base offset 0; the TMA box's swizzle is the descriptor's):
///   Q    [kBlockM x D]  K-major, kMNFirst atoms: one TMA box per kSwizzleElems columns
///   K    [kBlockN x D]  K-major (the B operand of S = Q K^T, N = keys), per stage
///   V    [kBlockN x D]  as stored: key rows, d contiguous = MN-major for P V (N = d, K = keys),
///                       kKFirst atoms (FA3's Vt), per stage
///   Vaux [kBlockN x D]  kRawVTiles = 2: the second raw V tile, V's layout, per stage
///   mbarriers           q_full/q_empty, k_full/k_empty and v_full/v_empty per stage, v_tail;
///                       kRawVTiles = 2: v_raw per stage (both raw tiles landed)
///
/// Keys past the end of a sequence: K rows there are masked (their scores are -inf whatever they
/// hold), but P V multiplies the zero weights by V's rows, and a row of another sequence (TMA
/// reads the packed tensor) that holds an inf or NaN would turn 0 into NaN. The producer loads a
/// ragged last V tile on a barrier of its own (v_tail), zeroes the rows past the sequence in
/// shared memory, fences them to the async proxy and only then arrives on the stage's v_full.
///
/// Variants: the mask, logit (kTransformsLogits) and store_o hooks apply as in the sm_80 kernel.
/// load_q / load_k / load_v do not: TMA copies Q, K and V as stored. A variant whose V tile is
/// formed from two raw tiles (kRawVTiles = 2: ResFormer's V' = lambda_self V_l + lambda_first
/// V_0) gets it here too, off the consumers' critical registers: the producer warp lands both
/// raw tiles by TMA (V in its stage, the second in a stage of its own: `Vaux` below) on one
/// barrier (v_raw), and the producer warpgroup's other three warps, which otherwise exit, form V
/// in place 16 bytes at a time with the variant's v_mix (both tiles have one swizzled layout, so
/// the transform is elementwise), zero the rows past the sequence, fence their writes to the
/// async proxy and arrive on v_full (three arrivals, one per warp) — the ragged tail's zeroing
/// and the mix are one pass. Its cost: a second TMA write, a read of both tiles and a write of
/// one in shared memory per (query tile, key tile) pair (docs/performance.md), and kKVBytes of
/// shared memory per stage. A variant runs here only when Sm90Variant<V> says so.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "strata/attention/mask.hpp"
#include "strata/attention/params.hpp"
#include "strata/attention/tile_io.cuh"
#include "strata/attention/variant.hpp"
#include "strata/core/numeric.hpp"
#include "strata/core/online_softmax.hpp"
#include "strata/strata.cuh"

namespace strata::attention {

/// Tile shape and shared-memory plan of the sm_90 forward for head dimension D and a variant's
/// kRawVTiles (a constexpr table, testable on the host).
///
/// Two consumer warpgroups of 64 query rows (FA3's 128-row tile at d = 128) and 128-key tiles
/// (FA3's causal d = 128 tile; its non-causal 176 is a tuning step that needs a GPU to pay off).
/// Registers: the producer warpgroup drops to 40, the consumers rise to 232, from the 168 per
/// thread a 384-thread block starts with: 40 + 2 x 232 = 3 x 168. FA3 gives 24 / 240; this
/// producer's varlen bounds and ragged-tile zeroing spilled at 24 and 32 (the ptxas gate), and the
/// consumers hold S (kBlockN / 2 = 64 fp32), O (D / 2) and P (kBlockN / 4 = 32 packed registers)
/// in 232 without spills.
template <int D, int RawVTiles = 1>
struct FlashFwdSm90Traits {
  static_assert(D == 64 || D == 96 || D == 128, "sm_90 forward: head dimension 64, 96 or 128");
  static_assert(RawVTiles == 1 || RawVTiles == 2, "a V tile is formed from one or two raw tiles");
  static constexpr int kRawVTiles = RawVTiles;
  /// kRawVTiles = 2: the producer warpgroup's warps 1..3 form the V tiles (see the file comment).
  static constexpr int kMixWarps = RawVTiles == 2 ? 3 : 0;
  static constexpr int kConsumerWGs = 2;
  static constexpr int kBlockM = 64 * kConsumerWGs;  ///< query rows per tile
  static constexpr int kBlockN = 128;                ///< keys per K/V tile (S's wgmma N)
  static constexpr int kStages = 2;                  ///< K/V pipeline depth
  static constexpr int kThreads = 128 * (1 + kConsumerWGs);
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = 232;
  static_assert(kProducerRegs + kConsumerWGs * kConsumerRegs <= (1 + kConsumerWGs) * 168,
                "setmaxnreg: the warpgroups' registers exceed the block's pool");

  /// The widest swizzle whose span of elements divides D: 128 bytes (64 elements) at d = 64 and
  /// 128, 64 bytes at d = 96. A TMA box is one span wide, so a tile row takes kBoxes boxes.
  static constexpr arch::wgmma::SmemSwizzle kSwizzle =
      D % 64 == 0 ? arch::wgmma::SmemSwizzle::k128B : arch::wgmma::SmemSwizzle::k64B;
  static constexpr int kSpanBytes = arch::wgmma::swizzle_row_bytes(kSwizzle);
  static constexpr int kSpanElems = kSpanBytes / 2;
  static constexpr int kBoxes = D / kSpanElems;

  static constexpr arch::wgmma::Tile kQTile{arch::wgmma::Major::kK, kSwizzle, kBlockM, D,
                                            arch::wgmma::AtomOrder::kMNFirst};
  static constexpr arch::wgmma::Tile kKTile{arch::wgmma::Major::kK, kSwizzle, kBlockN, D,
                                            arch::wgmma::AtomOrder::kMNFirst};
  static constexpr arch::wgmma::Tile kVTile{arch::wgmma::Major::kMN, kSwizzle, D, kBlockN,
                                            arch::wgmma::AtomOrder::kKFirst};
  static_assert(arch::wgmma::tile_valid(kQTile) && arch::wgmma::tile_valid(kKTile) &&
                    arch::wgmma::tile_valid(kVTile),
                "tiles are whole swizzle atoms");

  static constexpr uint32_t kQBytes = uint32_t(kBlockM) * D * 2;
  static constexpr uint32_t kKVBytes = uint32_t(kBlockN) * D * 2;
  static constexpr uint32_t kQBoxBytes = uint32_t(kBlockM) * kSpanBytes;  ///< one column block
  static constexpr uint32_t kKVBoxBytes = uint32_t(kBlockN) * kSpanBytes;
  // Byte offsets from the 1024-aligned base; every tile is a multiple of 1024 bytes.
  static constexpr uint32_t kQOff = 0;
  static constexpr uint32_t kKOff = kQOff + kQBytes;
  static constexpr uint32_t kVOff = kKOff + kStages * kKVBytes;
  static constexpr uint32_t kVAuxOff = kVOff + kStages * kKVBytes;  ///< kRawVTiles = 2 only
  static constexpr uint32_t kBarOff = kVAuxOff + (kRawVTiles - 1) * kStages * kKVBytes;
  static_assert(kKOff % 1024 == 0 && kVOff % 1024 == 0 && kKVBytes % 1024 == 0,
                "tiles start on the 128B swizzle's 1024-byte pattern");
  /// mbarriers: q_full, q_empty, v_tail, then k_full, k_empty, v_full, v_empty per stage, and
  /// v_raw per stage where kRawVTiles = 2.
  static constexpr int kBarriers = 3 + (3 + kRawVTiles) * kStages;
  /// Dynamic shared memory a launch requests: the plan plus 1024 bytes to align its base (the
  /// GPU aligns dynamic shared memory to 128 bytes only).
  static constexpr size_t kSmemBytes = kBarOff + 8 * kBarriers + 1024;
  static_assert(kSmemBytes <= 227 * 1024, "beyond an H100's 227 KiB of shared memory per block");

  /// Named barriers 1..kConsumerWGs: consumer warpgroup c issues its GEMMs after bar.sync of
  /// kSchedBarrier + c and then bar.arrive's the next warpgroup's (a ring).
  static constexpr int kSchedBarrier = 1;

  /// wgmma FLOPs of one (query tile, key tile) pair: S and P V for every consumer warpgroup.
  static constexpr uint64_t kFlopsPerTilePair = uint64_t(4) * kBlockM * kBlockN * D;
};

/// The kernel's parameters: the forward problem and its three TMA maps. Passed by value as a
/// __grid_constant__ parameter, so the maps live in the kernel's parameter space where TMA reads
/// them (CUTLASS and FA3 pass theirs the same way).
struct FlashFwdSm90Params {
  tma::TensorMap q_map, k_map, v_map;  // first: 64-byte aligned inside the struct
  tma::TensorMap v_aux_map;            ///< kRawVTiles = 2: the variant's v_aux_operand
  FlashFwdParams fwd;
  int num_m_blocks = 0;  ///< query tiles of the longest sequence
  int num_tiles = 0;     ///< num_m_blocks x h x b: the persistent scheduler's work list
  /// The maps' dimension order: (d, heads, tokens) when a token's heads are adjacent (BSHD, the
  /// usual), (d, tokens, heads) when a head's tokens are (one sequence stored head-major).
  bool q_heads_inner = true, kv_heads_inner = true, v_aux_heads_inner = true;
};

/// Persistent grid: one block per SM (at most one per tile).
inline dim3 flash_fwd_sm90_grid(const FlashFwdSm90Params& s, int num_ctas) {
  return dim3(unsigned(std::max(1, std::min(num_ctas, s.num_tiles))));
}

STRATA_EXECUTOR_BEGIN  // from here on: tma::encode_tiled's executor (the driver's or Strata's)

/// Fills one (d, heads, tokens) or (d, tokens, heads) map of a [tokens, heads, d] operand with a
/// box of kSpanElems columns x `box_rows` tokens of one head. The driver's stride rules decide the
/// order; an operand neither order describes is refused, naming the field.
/// `Tr`: the kernel's traits (kSwizzle, kSpanElems), the forward's by default.
template <int D, class Tr = FlashFwdSm90Traits<D>>
inline Status make_sm90_operand_map(tma::TensorMap* map, bool* heads_inner, const void* base,
                                    Dtype dtype, int64_t tokens, int heads, int64_t row_stride,
                                    int64_t head_stride, int box_rows, const char* name) {
  const std::string n = name;
  if (tokens < 1) return Status::InvalidArgument(n + ": no tokens to map");
  tma::Tiled t;
  t.dtype = dtype == Dtype::kBf16 ? tma::DataType::kBF16 : tma::DataType::kF16;
  t.rank = 3;
  t.global_address = base;
  t.swizzle = tma::Swizzle(int(Tr::kSwizzle));
  t.global_dim[0] = D;
  t.box_dim[0] = Tr::kSpanElems;
  // heads inside tokens (BSHD): row_stride spans the heads
  *heads_inner = heads == 1 || row_stride >= head_stride * heads;
  if (*heads_inner) {
    t.global_dim[1] = uint64_t(heads), t.global_dim[2] = uint64_t(tokens);
    t.global_stride[0] = uint64_t(head_stride) * 2, t.global_stride[1] = uint64_t(row_stride) * 2;
    t.box_dim[1] = 1, t.box_dim[2] = uint32_t(box_rows);
    if (heads == 1) t.global_stride[0] = uint64_t(D) * 2;  // a unit dimension: any span works
  } else {
    t.global_dim[1] = uint64_t(tokens), t.global_dim[2] = uint64_t(heads);
    t.global_stride[0] = uint64_t(row_stride) * 2, t.global_stride[1] = uint64_t(head_stride) * 2;
    t.box_dim[1] = uint32_t(box_rows), t.box_dim[2] = 1;
  }
  if (Status s = tma::encode_tiled(map, t); !s.ok())
    return Status::InvalidArgument(n + " (its TMA map): " + s.message());
  return Status::Ok();
}

/// The sm_90 kernel's parameters for forward problem `p` (validated by api::validate) whose K/V
/// tensors have `total_k` rows (the TMA maps' extent: a box past it reads zeros), and for a
/// kRawVTiles = 2 variant the second raw V tile's operand `v_aux` (total_k rows, p's dtype).
template <int D>
inline Status make_flash_fwd_sm90_params(const FlashFwdParams& p, int total_k,
                                         FlashFwdSm90Params* out,
                                         const RowsOperand* v_aux = nullptr) {
  using Tr = FlashFwdSm90Traits<D>;
  if (p.d != D) return Status::InvalidArgument("d: the sm_90 plan was compiled for another d");
  FlashFwdSm90Params s;
  s.fwd = p;
  if (Status st = make_sm90_operand_map<D>(&s.q_map, &s.q_heads_inner, p.q, p.dtype, p.total_q, p.h,
                                           p.q_row_stride, p.q_head_stride, Tr::kBlockM, "q");
      !st.ok())
    return st;
  bool v_inner = true;
  // no keys at all: every tile is empty and nothing is loaded, but a map needs an extent
  const int kv_rows = total_k > 0 ? total_k : 1;
  if (Status st =
          make_sm90_operand_map<D>(&s.k_map, &s.kv_heads_inner, p.k, p.dtype, kv_rows, p.h_k,
                                   p.k_row_stride, p.k_head_stride, Tr::kBlockN, "k");
      !st.ok())
    return st;
  if (Status st = make_sm90_operand_map<D>(&s.v_map, &v_inner, p.v, p.dtype, kv_rows, p.h_k,
                                           p.v_row_stride, p.v_head_stride, Tr::kBlockN, "v");
      !st.ok())
    return st;
  if (v_inner != s.kv_heads_inner)
    return Status::InvalidArgument(
        "v_row_stride / v_head_stride: V's heads and tokens nest the other way round from K's");
  if (v_aux) {
    if (!v_aux->base) return Status::InvalidArgument(std::string(v_aux->name) + " is null");
    if (Status st = make_sm90_operand_map<D>(&s.v_aux_map, &s.v_aux_heads_inner, v_aux->base,
                                             p.dtype, kv_rows, p.h_k, v_aux->row_stride,
                                             v_aux->head_stride, Tr::kBlockN, v_aux->name);
        !st.ok())
      return st;
  }
  s.num_m_blocks = (p.seqlen_q + Tr::kBlockM - 1) / Tr::kBlockM;
  const int64_t tiles = int64_t(s.num_m_blocks) * p.h * p.b;
  if (tiles > INT32_MAX) return Status::InvalidArgument("seqlen_q x h x b: too many tiles");
  s.num_tiles = int(tiles);
  *out = s;
  return Status::Ok();
}

namespace sm90_detail {

/// One tile of the persistent scheduler's list: heaviest query tiles of a head first.
struct WorkTile {
  int m_block, h, b;
  STRATA_HOST_DEVICE static WorkTile of(int t, int num_m_blocks, int heads) {
    const int hb = t / num_m_blocks;
    return WorkTile{num_m_blocks - 1 - t % num_m_blocks, hb % heads, hb / heads};
  }
};

/// What one tile of the list covers: its query rows [m0, m1) of sequence w.b, head w.h, and key
/// tiles [n_first, n_end) (empty when its rows see no key). The producer and every consumer
/// compute it with this one function: they must agree on which tiles have work and how many key
/// tiles each visits, since the stages' phases and the Q barrier's count on it.
struct TileRange {
  WorkTile w;
  SeqBounds sb;
  Mask mask;
  int m0, m1, n_first, n_end;
  STRATA_HOST_DEVICE bool has_rows() const { return m0 < sb.tq; }
  STRATA_HOST_DEVICE bool has_keys() const { return n_first < n_end; }
};
template <int BM, int BN, class Variant>
STRATA_HOST_DEVICE TileRange tile_range(const FlashFwdSm90Params& sp, const Variant& var, int t) {
  const FlashFwdParams& p = sp.fwd;
  TileRange r;
  r.w = WorkTile::of(t, sp.num_m_blocks, p.h);
  r.sb = SeqBounds::of(p, r.w.b);
  r.mask = var.mask(p, r.sb);
  r.m0 = r.w.m_block * BM;
  r.m1 = r.m0 + BM < r.sb.tq ? r.m0 + BM : r.sb.tq;
  const int k_lo = r.mask.key_begin(r.m0), k_hi = r.mask.key_end(r.m1);
  r.n_first = k_lo / BN;
  r.n_end = r.has_rows() && k_hi > k_lo ? (k_hi + BN - 1) / BN : r.n_first;
  return r;
}

/// The coordinates (c1, c2) of token `row` of head `head` in a map made by make_sm90_operand_map.
STRATA_HOST_DEVICE void map_coords(bool heads_inner, int head, int row, int& c1, int& c2) {
  c1 = heads_inner ? head : row;
  c2 = heads_inner ? row : head;
}

/// Loads the kBoxes column blocks of one [rows x D] tile of head `head` starting at token `row`
/// into `dst` (block j at dst + j * box_bytes), completing their bytes on `bar`. Elected lane.
/// `Tr`: the kernel's traits (kBoxes, kSpanElems), the forward's by default.
template <int D, class Tr = FlashFwdSm90Traits<D>>
STRATA_DEVICE void load_tile(unsigned char* dst, const tma::TensorMap* map, bool heads_inner,
                             uint64_t* bar, int head, int row, uint32_t box_bytes) {
  int c1, c2;
  map_coords(heads_inner, head, row, c1, c2);
  STRATA_UNROLL
  for (int j = 0; j < Tr::kBoxes; ++j)
    arch::tma_load_3d(dst + j * box_bytes, map, bar, j * Tr::kSpanElems, c1, c2);
}

/// kRawVTiles = 2: forms the V tile `v` in place from it and the second raw tile `aux`, both as
/// load_tile wrote them with the same map geometry (so 16 bytes at one offset of each are the
/// same 8 elements, whatever the swizzle permutes), with `mix` (the variant's v_mix), and writes
/// zeros in rows [valid, kBlockN) (another sequence's rows: see the file comment). Thread t of
/// n; consecutive threads take consecutive 16 bytes (no bank conflicts). The caller fences the
/// stores to the async proxy before the consumers' wgmma reads them.
template <class T, class Tr, class Mix>
STRATA_DEVICE void mix_v_tile(unsigned char* v, const unsigned char* aux, int valid, const Mix& mix,
                              int t, int n) {
  constexpr int kChunksPerRow = Tr::kSpanBytes / 16;
  constexpr int kChunks = int(Tr::kKVBytes / 16);
  for (int c = t; c < kChunks; c += n) {
    unsigned char* out = v + 16 * c;
    uint4 x = uint4{0u, 0u, 0u, 0u};
    if ((c / kChunksPerRow) % Tr::kBlockN < valid)
      x = mix.template apply<T>(arch::load16(out), arch::load16(aux + 16 * c));
    arch::store16(out, x);
  }
}

/// Zeroes rows [valid, rows) of a [rows x D] tile that load_tile wrote (kBoxes column blocks of
/// `rows` rows x one swizzle span), by the 32 lanes of a warp with 16-byte stores. A row is one
/// span in each block, whatever the swizzle permutes inside it. The caller fences the stores to
/// the async proxy (fence_proxy_async) before a wgmma reads them.
template <class Tr>
STRATA_DEVICE void zero_tile_rows(unsigned char* tile, int rows, int valid, uint32_t box_bytes,
                                  int lane) {
  constexpr int kChunksPerRow = Tr::kSpanBytes / 16;
  const int n = rows - valid, chunks = n * kChunksPerRow * Tr::kBoxes;
  for (int c = lane; c < chunks; c += 32) {
    const int blk = c / (n * kChunksPerRow), r = valid + (c / kChunksPerRow) % n;
    arch::store16(tile + blk * box_bytes + r * Tr::kSpanBytes + (c % kChunksPerRow) * 16,
                  uint4{0u, 0u, 0u, 0u});
  }
}

}  // namespace sm90_detail

template <class T, int D, class Variant = VanillaAttention>
__global__ void __launch_bounds__(FlashFwdSm90Traits<D>::kThreads, 1)
    flash_fwd_sm90_kernel(const __grid_constant__ FlashFwdSm90Params sp, const Variant var) {
  static_assert(AttentionVariant<Variant, T, D>, "the variant policy misses a hook (variant.hpp)");
  static_assert(Sm90Variant<Variant>::value,
                "this variant transforms tiles on load; the sm_90 forward loads them by TMA");
  static_assert(Sm90VTransform<Variant, T>,
                "a kRawVTiles = 2 variant on the sm_90 forward needs v_aux_operand and v_mix");
#if STRATA_HAS_SM90A
  using Tr = FlashFwdSm90Traits<D, Variant::kRawVTiles>;
  constexpr bool kMix = Tr::kRawVTiles == 2;
  namespace wg = arch::wgmma;
  constexpr int BM = Tr::kBlockM, BN = Tr::kBlockN, NC = Tr::kConsumerWGs, S = Tr::kStages;
  const FlashFwdParams& p = sp.fwd;

  STRATA_DYNAMIC_SMEM(unsigned char, smem_raw);
  // the plan's base: the first 1024-aligned byte of the shared window at or after smem_raw
  const uint32_t raw_addr = arch::smem_u32(smem_raw);
  unsigned char* smem = smem_raw + (((raw_addr + 1023u) & ~1023u) - raw_addr);
  const uint32_t base = arch::smem_u32(smem);
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + Tr::kBarOff);
  uint64_t* q_full = bars;
  uint64_t* q_empty = bars + 1;
  uint64_t* v_tail = bars + 2;
  uint64_t* k_full = bars + 3;
  uint64_t* k_empty = k_full + S;
  uint64_t* v_full = k_empty + S;
  uint64_t* v_empty = v_full + S;
  uint64_t* v_raw = v_empty + S;  // kMix only

  const int tid = int(threadIdx.x), warp = tid / 32, lane = tid % 32;
  const int wg_idx = tid / wg::kWarpgroupThreads;
  if (tid == 0) {
    arch::mbarrier_init(q_full, 1);
    arch::mbarrier_init(q_empty, 4 * NC);  // lane 0 of every consumer warp
    arch::mbarrier_init(v_tail, 1);
    for (int s = 0; s < S; ++s) {
      arch::mbarrier_init(&k_full[s], 1);
      arch::mbarrier_init(&k_empty[s], 4 * NC);
      arch::mbarrier_init(&v_full[s], kMix ? Tr::kMixWarps : 1);  // the mixer warps' lane 0
      arch::mbarrier_init(&v_empty[s], 4 * NC);
      if constexpr (kMix) arch::mbarrier_init(&v_raw[s], 1);
    }
  }
  __syncthreads();

  if (wg_idx == 0) {
    // ---------------------------------------------------------------------------- producer
    arch::setmaxnreg_dec<Tr::kProducerRegs>();
    if constexpr (kMix) {
      if (warp != 0) {
        // the mixers: every key tile the producer loads, in its order (the same tile list)
        uint32_t kv = 0;
        for (int t = int(blockIdx.x); t < sp.num_tiles; t += int(gridDim.x)) {
          const sm90_detail::TileRange tr = sm90_detail::tile_range<BM, BN>(sp, var, t);
          if (!tr.has_rows() || !tr.has_keys()) continue;
          const auto mix = var.v_mix(tr.w.h / (p.h / p.h_k));
          for (int n = tr.n_first; n < tr.n_end; ++n, ++kv) {
            const int s = int(kv % S);
            arch::mbarrier_wait(&v_raw[s], (kv / S) & 1u);
            sm90_detail::mix_v_tile<T, Tr>(smem + Tr::kVOff + s * Tr::kKVBytes,
                                           smem + Tr::kVAuxOff + s * Tr::kKVBytes,
                                           tr.sb.tk - n * BN, mix, tid - 32, 32 * Tr::kMixWarps);
            arch::fence_proxy_async();  // the generic writes, before wgmma reads them
            __syncwarp();
            if (lane == 0) arch::mbarrier_arrive(&v_full[s]);
          }
        }
        return;
      }
    } else if (warp != 0) {
      return;
    }
    uint32_t kv = 0, q_uses = 0, tails = 0;
    for (int t = int(blockIdx.x); t < sp.num_tiles; t += int(gridDim.x)) {
      const sm90_detail::TileRange tr = sm90_detail::tile_range<BM, BN>(sp, var, t);
      // no keys: the consumers write empty rows, nothing is loaded
      if (!tr.has_rows() || !tr.has_keys()) continue;
      const sm90_detail::WorkTile& w = tr.w;
      const SeqBounds& sb = tr.sb;
      const int m0 = tr.m0, n_first = tr.n_first, n_end = tr.n_end;
      const int h_k = w.h / (p.h / p.h_k);

      // Key tile n into stage kv % S (the stages and their phases run on across tiles). The
      // wait for a free stage passes at its first use: parity 1 is the phase before the first.
      auto load_k = [&](int n) {
        const int s = int(kv % S);
        arch::mbarrier_wait(&k_empty[s], ((kv / S) & 1u) ^ 1u);
        if (arch::elect_one()) {
          arch::mbarrier_arrive_expect_tx(&k_full[s], Tr::kKVBytes);
          sm90_detail::load_tile<D>(smem + Tr::kKOff + s * Tr::kKVBytes, &sp.k_map,
                                    sp.kv_heads_inner, &k_full[s], h_k, sb.k_begin + n * BN,
                                    Tr::kKVBoxBytes);
        }
        __syncwarp();
      };
      auto load_v = [&](int n) {
        const int s = int(kv % S);
        unsigned char* vs = smem + Tr::kVOff + s * Tr::kKVBytes;
        arch::mbarrier_wait(&v_empty[s], ((kv / S) & 1u) ^ 1u);
        if constexpr (kMix) {  // both raw tiles on v_raw; the mixers publish V on v_full
          if (arch::elect_one()) {
            arch::mbarrier_arrive_expect_tx(&v_raw[s], 2 * Tr::kKVBytes);
            sm90_detail::load_tile<D>(vs, &sp.v_map, sp.kv_heads_inner, &v_raw[s], h_k,
                                      sb.k_begin + n * BN, Tr::kKVBoxBytes);
            sm90_detail::load_tile<D>(smem + Tr::kVAuxOff + s * Tr::kKVBytes, &sp.v_aux_map,
                                      sp.v_aux_heads_inner, &v_raw[s], h_k, sb.k_begin + n * BN,
                                      Tr::kKVBoxBytes);
          }
          __syncwarp();
          return;
        }
        const int valid = sb.tk - n * BN;  // key rows of this tile inside the sequence
        if (valid >= BN) {
          if (arch::elect_one()) {
            arch::mbarrier_arrive_expect_tx(&v_full[s], Tr::kKVBytes);
            sm90_detail::load_tile<D>(vs, &sp.v_map, sp.kv_heads_inner, &v_full[s], h_k,
                                      sb.k_begin + n * BN, Tr::kKVBoxBytes);
          }
          __syncwarp();
          return;
        }
        // the ragged last tile: land it on v_tail, zero the rows past the sequence, then publish
        // it on v_full (see the file comment)
        if (arch::elect_one()) {
          arch::mbarrier_arrive_expect_tx(v_tail, Tr::kKVBytes);
          sm90_detail::load_tile<D>(vs, &sp.v_map, sp.kv_heads_inner, v_tail, h_k,
                                    sb.k_begin + n * BN, Tr::kKVBoxBytes);
        }
        arch::mbarrier_wait(v_tail, tails & 1u);
        ++tails;
        sm90_detail::zero_tile_rows<Tr>(vs, BN, valid, Tr::kKVBoxBytes, lane);
        arch::fence_proxy_async();  // the generic writes, before wgmma reads them
        __syncwarp();
        if (arch::elect_one()) arch::mbarrier_arrive(&v_full[s]);
        __syncwarp();
      };

      // K of the first key tile goes first: it needs only a free stage, while Q waits for the
      // consumers to finish the previous tile's last S.
      load_k(n_first);
      arch::mbarrier_wait(q_empty, (q_uses & 1u) ^ 1u);
      if (arch::elect_one()) {
        arch::mbarrier_arrive_expect_tx(q_full, Tr::kQBytes);
        sm90_detail::load_tile<D>(smem + Tr::kQOff, &sp.q_map, sp.q_heads_inner, q_full, w.h,
                                  sb.q_begin + m0, Tr::kQBoxBytes);
      }
      __syncwarp();
      ++q_uses;
      load_v(n_first);
      ++kv;
      for (int n = n_first + 1; n < n_end; ++n, ++kv) {
        load_k(n);
        load_v(n);
      }
    }
    return;
  }

  // ------------------------------------------------------------------------------ consumers
  arch::setmaxnreg_inc<Tr::kConsumerRegs>();
  const int c = wg_idx - 1;                      // consumer warpgroup: rows 64c .. 64c + 63
  const int t128 = tid % wg::kWarpgroupThreads;  // thread within the warpgroup
  const int wwarp = t128 / 32;                   // warp within the warpgroup
  const int my_bar = Tr::kSchedBarrier + c, next_bar = Tr::kSchedBarrier + (c + 1) % NC;
  constexpr int kSchedCount = 2 * wg::kWarpgroupThreads;  // the syncing and the arriving group
  if (c == NC - 1) arch::named_barrier_arrive(Tr::kSchedBarrier, kSchedCount);  // 0 goes first

  const float scale_log2 = p.softmax_scale * core::kLog2e;
  constexpr bool kLogits = Variant::kTransformsLogits;
  const float exp_scale = kLogits ? 1.f : scale_log2;
  const uint32_t q_base = base + Tr::kQOff, k_base0 = base + Tr::kKOff, v_base0 = base + Tr::kVOff;
  // local copies: device code may not name a class-type static member of the host traits
  constexpr wg::Tile kQTile = Tr::kQTile, kKTile = Tr::kKTile, kVTile = Tr::kVTile;
  const uint32_t q_lbo = wg::tile_lbo(kQTile), q_sbo = wg::tile_sbo(kQTile);
  uint32_t kv = 0, q_uses = 0;

  for (int t = int(blockIdx.x); t < sp.num_tiles; t += int(gridDim.x)) {
    const sm90_detail::TileRange tr = sm90_detail::tile_range<BM, BN>(sp, var, t);
    if (!tr.has_rows()) continue;
    const sm90_detail::WorkTile& w = tr.w;
    const SeqBounds& sb = tr.sb;
    const Mask& mask = tr.mask;
    const int m0 = tr.m0, m1 = tr.m1;
    const int r0 = m0 + 64 * c + 16 * wwarp;  // this warp's first row (of the sequence)

    arch::WgmmaAcc<D> o;
    STRATA_UNROLL
    for (int i = 0; i < D / 2; ++i) o.r[i] = 0.f;
    core::OnlineSoftmax row_state[2];  // rows r0 + lane/4 and r0 + lane/4 + 8

    if (tr.has_keys()) {
      const int n_first = tr.n_first, n_end = tr.n_end;
      arch::mbarrier_wait(q_full, q_uses & 1u);
      ++q_uses;
      arch::WgmmaAcc<BN> s;
      uint32_t pa[BN / 16][4];  // P of the previous key tile: A of the RS wgmma

      // S = Q K^T of key tile `stage` (SS, D / 16 k-steps); the caller commits.
      auto issue_s = [&](int stage) {
        const uint32_t k_base = k_base0 + uint32_t(stage) * Tr::kKVBytes;
        STRATA_UNROLL
        for (int ks = 0; ks < D / 16; ++ks)
          arch::wgmma_ss<BN, T>(s,
                                wg::make_desc(q_base + wg::tile_offset(kQTile, 64 * c, 16 * ks),
                                              q_lbo, q_sbo, Tr::kSwizzle),
                                wg::tile_desc(kKTile, k_base, ks), ks > 0);
      };
      // O += P V of the V tile in `stage` (RS, kBlockN / 16 k-steps over keys, V MN-major).
      auto issue_pv = [&](int stage) {
        const uint32_t v_base = v_base0 + uint32_t(stage) * Tr::kKVBytes;
        STRATA_UNROLL
        for (int kk = 0; kk < BN / 16; ++kk)
          arch::wgmma_rs<D, T, 1>(o, pa[kk], wg::tile_desc(kVTile, v_base, kk), true);
      };
      // Masks S of key tile n, raises the row maxima and turns S into unnormalised weights in
      // place (fp32); returns the rescale factor of each row's earlier weights and output.
      auto softmax = [&](int n, float(&rescale)[2]) {
        const int n0 = n * BN;
        const bool full = mask.all_connected(m0, m1, n0, n0 + BN);
        if (kLogits || !full) {
          STRATA_UNROLL
          for (int v = 0; v < BN / 2; ++v) {
            const int qi = r0 + wg::acc_row(lane, v), kj = n0 + wg::acc_col(lane, v);
            const bool on = mask.connected(qi, kj);
            if constexpr (kLogits)
              s.r[v] =
                  on ? var.logit(s.r[v] * p.softmax_scale, qi, kj, w.h) * core::kLog2e : -INFINITY;
            else
              s.r[v] = on ? s.r[v] : -INFINITY;
          }
        }
        float tile_max[2] = {-INFINITY, -INFINITY};
        STRATA_UNROLL
        for (int v = 0; v < BN / 2; ++v)
          tile_max[(v >> 1) & 1] = fmaxf(tile_max[(v >> 1) & 1], s.r[v]);
        float offset[2], psum[2] = {0.f, 0.f};
        STRATA_UNROLL
        for (int rr = 0; rr < 2; ++rr) {
          rescale[rr] = row_state[rr].raise_max(arch::warp_max<4>(tile_max[rr]) * exp_scale);
          offset[rr] = row_state[rr].exp_offset();
        }
        STRATA_UNROLL
        for (int v = 0; v < BN / 2; ++v) {
          s.r[v] = core::exp2_scaled(s.r[v], exp_scale, offset[(v >> 1) & 1]);
          psum[(v >> 1) & 1] += s.r[v];
        }
        row_state[0].add(psum[0]);
        row_state[1].add(psum[1]);
      };
      // P (bf16/fp16) from the weights: A element a[2r + i] of k-step kk is S element
      // 8 kk + 2r + i (wgmma_layout.hpp: the A map is the accumulator's with N = 16).
      auto weights_to_a = [&]() {
        STRATA_UNROLL
        for (int kk = 0; kk < BN / 16; ++kk) {
          STRATA_UNROLL
          for (int r = 0; r < 4; ++r)
            pa[kk][r] = pack2<T>(s.r[8 * kk + 2 * r], s.r[8 * kk + 2 * r + 1]);
        }
      };
      auto rescale_o = [&](const float(&rescale)[2]) {
        STRATA_UNROLL
        for (int v = 0; v < D / 2; ++v) o.r[v] *= rescale[(v >> 1) & 1];
      };
      // wgmma.fence with every register operand pinned on both sides (CUTLASS's
      // warpgroup_fence_operand): their producers stay before it, their readers after the wait.
      auto fence_operands = [&]() {
        arch::wgmma_fence_operand(s);
        arch::wgmma_fence_operand(o);
        arch::wgmma_fence_operand(pa);
      };
      auto release = [&](uint64_t* bar) {
        if (lane == 0) arch::mbarrier_arrive(bar);  // this warp's reads have retired
      };
      // This warpgroup's turn to issue GEMMs (the ping-pong ring), then the next one's.
      auto take_turn = [&]() {
        arch::named_barrier_sync(my_bar, kSchedCount);
        fence_operands();
        arch::wgmma_fence();
      };
      auto pass_turn = [&]() {
        arch::wgmma_commit();
        arch::named_barrier_arrive(next_bar, kSchedCount);
      };

      // Prologue: S of the first key tile, alone.
      int stage = int(kv % S);
      arch::mbarrier_wait(&k_full[stage], (kv / S) & 1u);
      take_turn();
      issue_s(stage);
      pass_turn();
      arch::wgmma_wait<0>();
      fence_operands();
      release(&k_empty[stage]);
      if (n_first + 1 == n_end) release(q_empty);  // the tile's last S has retired
      {
        float rescale[2];
        softmax(n_first, rescale);  // nothing to rescale yet: O is zero
      }
      weights_to_a();
      uint32_t kv_prev = kv++;

      // Steady state: S of tile n and P V of tile n - 1 in flight together.
      for (int n = n_first + 1; n < n_end; ++n) {
        stage = int(kv % S);
        const int prev = int(kv_prev % S);
        arch::mbarrier_wait(&k_full[stage], (kv / S) & 1u);
        take_turn();
        issue_s(stage);
        arch::wgmma_commit();
        arch::mbarrier_wait(&v_full[prev], (kv_prev / S) & 1u);
        // again: the wait's loop would otherwise let the compiler move P or O between the
        // fences, and ptxas would inject a warpgroup.arrive (C7519)
        fence_operands();
        arch::wgmma_fence();
        issue_pv(prev);
        pass_turn();
        arch::wgmma_wait<1>();  // S retired; P V still in flight
        fence_operands();
        release(&k_empty[stage]);
        if (n + 1 == n_end) release(q_empty);  // the tile's last S has retired: Q may be refilled
        float rescale[2];
        softmax(n, rescale);
        arch::wgmma_wait<0>();  // P V retired: O and P may be touched
        fence_operands();
        release(&v_empty[prev]);
        rescale_o(rescale);
        weights_to_a();
        kv_prev = kv++;
      }

      // Epilogue GEMM: P V of the last tile.
      const int prev = int(kv_prev % S);
      arch::mbarrier_wait(&v_full[prev], (kv_prev / S) & 1u);
      take_turn();
      issue_pv(prev);
      pass_turn();
      arch::wgmma_wait<0>();
      fence_operands();
      release(&v_empty[prev]);
    }

    // Normalise and store this thread's two rows (a row without keys is zero, LSE -inf).
    STRATA_UNROLL
    for (int rr = 0; rr < 2; ++rr) {
      core::OnlineSoftmax total = row_state[rr];
      total.l = arch::warp_sum<4>(row_state[rr].l);
      const int row = r0 + lane / 4 + 8 * rr;
      const float inv = total.inv_sum();
      float orow[D / 4];
      STRATA_UNROLL
      for (int j = 0; j < D / 8; ++j) {
        orow[2 * j] = o.r[4 * j + 2 * rr] * inv;
        orow[2 * j + 1] = o.r[4 * j + 2 * rr + 1] * inv;
      }
      const RowSite rs{int64_t(sb.q_begin) + row, w.h, 2 * (lane % 4), row < sb.tq};
      var.template store_o<T>(orow, p, rs, arch::LaneGroupSum<4>{});
      if (rs.valid && rs.col0 == 0) p.lse[int64_t(w.h) * p.total_q + rs.token] = total.lse();
    }
  }
#elif STRATA_DEVICE_PASS
  // compiled for an arch without wgmma (sm_80, or sm_90 without the `a`): never silently empty;
  // api dispatch does not launch it there (api/flash_sm90.hpp, sm90a_compiled)
  (void)sp, (void)var;
  __trap();
#endif
}

STRATA_EXECUTOR_END
}  // namespace strata::attention
