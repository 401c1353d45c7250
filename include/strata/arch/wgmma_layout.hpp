/// \file
/// The data layouts of Hopper's warpgroup MMA, wgmma.mma_async.m64nNk16 with f16/bf16 inputs and
/// f32 accumulators, as constexpr arithmetic (no inline asm; host, device and simulator alike):
///  * which accumulator element and which A-register element each of the warpgroup's 128
///    threads holds (acc_row/acc_col, a_row/a_col);
///  * the 64-bit shared-memory matrix descriptor: make_desc builds it, decode_desc reads it back;
///  * the canonical shared-memory tiles a kernel stores its operands in (CuTe's
///    GMMA::Layout_{K,MN}_{INTER,SW32,SW64,SW128}_Atom tiled over the tile, the layout FA3 keeps
///    Q/K (K-major) and V (MN-major) in) and the LBO/SBO/start address to describe them;
///  * element_offset: the shared address wgmma reads element (row, k) of an operand from, given
///    its descriptor. This is what the simulator's wgmma uses; it is written from the PTX ISA's
///    definitions of LBO, SBO and the canonical layouts, not from CuTe, so that
///    tests/layout/cute_crosscheck.cpp can hold it against CuTe independently.
///
/// Sources (PTX ISA 8.x/9.x, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate
/// Instructions", docs.nvidia.com/cuda/parallel-thread-execution/):
///  * 9.7.15.5.1.1.1 "Matrix Fragments for wgmma.mma_async.m64nNk16" (Figures 148, 149);
///  * 9.7.15.5.1.2 "Shared Memory Matrix Layout" (Table 38, swizzle atoms);
///  * 9.7.15.5.1.2.1 "Major-ness supported by Strides": .1 "Leading Dimension Byte Offset",
///    .2 "Stride Dimension Byte Offset", .3 "Canonical Layouts";
///  * 9.7.15.5.1.2.2 "Matrix Descriptor Format".
///
/// Scope: 2-byte element types (f16, bf16), the only ones for which wgmma takes MN-major
/// ("transposed", imm-trans-a/b = 1) shared operands. element_offset also takes 4- and 1-byte
/// elements (tf32, fp8: K-major only) because the ISA's worked examples use tf32, but only the
/// 2-byte case is cross-checked against CuTe.
#pragma once

#include <cstdint>

#include "strata/config.hpp"

namespace strata::arch::wgmma {

/// Threads of a warpgroup (four consecutive warps, the first warp's index a multiple of 4).
inline constexpr int kWarpgroupThreads = 128;
/// M of every dense wgmma.
inline constexpr int kM = 64;
/// K of one f16/bf16 wgmma (m64nNk16): 32 bytes of K per row.
inline constexpr int kInstrK = 16;
/// Bytes of an f16/bf16 element.
inline constexpr int kElemBytes = 2;

/// Which index of the operand is contiguous in shared memory. For A (M x K) and B (N x K, wgmma
/// reads B as its transpose) alike: K-major is imm-trans = 0, MN-major is imm-trans = 1.
enum class Major : uint8_t { kK, kMN };

/// The shared-memory swizzle of an operand. Numbered like strata::tma::Swizzle (the value is b,
/// the number of address bits XORed), so a kernel converts the TMA box's swizzle with a cast;
/// NOT the descriptor's 2-bit code, which counts the other way (desc_swizzle_code).
/// kNone is the ISA's "no-swizzle" a.k.a. "interleave" mode (CuTe's INTERLEAVE / INTER).
enum class SmemSwizzle : uint8_t { kNone = 0, k32B = 1, k64B = 2, k128B = 3 };

// ---------------------------------------------------------------------------------------------
// Register fragments (ISA 9.7.15.5.1.1.1, Figures 148 and 149)
// ---------------------------------------------------------------------------------------------
// Warp w of the warpgroup owns rows 16w..16w+15, and within them the layout is the one of
// mma.sync.m16n8k16 repeated along N (accumulators) or its A fragment (A registers): lane l is
// in group g = l/4 (row g or g+8) and holds the pair of adjacent columns 2(l%4), 2(l%4)+1.

/// Row (M, 0..63) of accumulator element d[v] of warpgroup thread `thread` (0..127), v in
/// 0..N/2-1.
STRATA_HOST_DEVICE constexpr int acc_row(int thread, int v) {
  return 16 * (thread / 32) + (thread % 32) / 4 + 8 * ((v >> 1) & 1);
}
/// Column (N, 0..N-1) of accumulator element d[v]: each 4 registers cover an 8-column block.
STRATA_HOST_DEVICE constexpr int acc_col(int thread, int v) {
  return 8 * (v >> 2) + 2 * (thread % 4) + (v & 1);
}
/// Row (M, 0..63) of A-register element a[v] (RS form: A from registers), v in 0..7
/// (a0..a7 = the low and high halves of four .f16x2 registers).
STRATA_HOST_DEVICE constexpr int a_row(int thread, int v) {
  return acc_row(thread, v);
}
/// Column (K, 0..15) of A-register element a[v]; the same map as the accumulator's with N = 16.
STRATA_HOST_DEVICE constexpr int a_col(int thread, int v) {
  return acc_col(thread, v);
}

// ---------------------------------------------------------------------------------------------
// Swizzle (ISA 9.7.15.5.1.2, canonical layouts: Swizzle<b,4,3> on byte addresses)
// ---------------------------------------------------------------------------------------------

/// Bits of the swizzle: byte-address bits [4, 4+b) are XORed with bits [7, 7+b).
STRATA_HOST_DEVICE constexpr int swizzle_bits(SmemSwizzle s) {
  return int(s);
}
/// Bytes of one swizzled row (the span whose 16-byte chunks are permuted): 32/64/128. For no
/// swizzle, 16: the row of a core matrix, which is what the canonical layouts step by.
STRATA_HOST_DEVICE constexpr int swizzle_row_bytes(SmemSwizzle s) {
  return 16 << int(s);
}
/// Bytes after which the swizzle pattern repeats (8 rows): 256/512/1024; 128 for none (one
/// 8x16-byte core matrix).
STRATA_HOST_DEVICE constexpr int swizzle_repeat_bytes(SmemSwizzle s) {
  return 8 * swizzle_row_bytes(s);
}
/// The swizzle as wgmma (and TMA) apply it: to the absolute shared byte address, not to an
/// offset within the tile. That is what lets a kernel step K inside a 128B-swizzled row by
/// adding 32 bytes to the descriptor's start address: the row phase (bits 7..9) is unchanged.
STRATA_HOST_DEVICE constexpr uint32_t swizzle_address(uint32_t addr, SmemSwizzle s) {
  const uint32_t mask = (1u << swizzle_bits(s)) - 1u;
  return addr ^ (((addr >> 7) & mask) << 4);
}

// ---------------------------------------------------------------------------------------------
// Matrix descriptor (ISA 9.7.15.5.1.2.2 "Matrix Descriptor Format")
// ---------------------------------------------------------------------------------------------
//   bits  0-13  matrix-descriptor-encode(start address)
//   bits 16-29  matrix-descriptor-encode(leading dimension byte offset, LBO)
//   bits 32-45  matrix-descriptor-encode(stride dimension byte offset, SBO)
//   bits 49-51  matrix base offset (swizzled modes only)
//   bits 62-63  swizzle: 0 none, 1 128B, 2 64B, 3 32B
// with matrix-descriptor-encode(x) = (x & 0x3FFFF) >> 4: 16-byte units of an 18-bit (256 KiB)
// shared window. Every other bit is reserved (kept 0).

/// The descriptor's 2-bit swizzle code (bits 62-63).
STRATA_HOST_DEVICE constexpr uint32_t desc_swizzle_code(SmemSwizzle s) {
  return s == SmemSwizzle::kNone ? 0u : 4u - uint32_t(s);  // 128B -> 1, 64B -> 2, 32B -> 3
}
/// The swizzle of a descriptor's 2-bit code.
STRATA_HOST_DEVICE constexpr SmemSwizzle swizzle_of_desc_code(uint32_t code) {
  return code == 0   ? SmemSwizzle::kNone
         : code == 1 ? SmemSwizzle::k128B
         : code == 2 ? SmemSwizzle::k64B
                     : SmemSwizzle::k32B;
}
/// matrix-descriptor-encode(x).
STRATA_HOST_DEVICE constexpr uint64_t desc_encode(uint32_t bytes) {
  return uint64_t((bytes & 0x3FFFFu) >> 4);
}

/// The descriptor of an operand starting at shared byte address `start` (16-byte aligned).
/// base_offset: 0 whenever the swizzle pattern starts on its repeat boundary (always, for tiles
/// TMA writes and for CuTe's make_gmma_desc); see pattern_base_offset.
STRATA_HOST_DEVICE constexpr uint64_t make_desc(uint32_t start, uint32_t lbo_bytes,
                                                uint32_t sbo_bytes, SmemSwizzle swizzle,
                                                uint32_t base_offset = 0) {
  return desc_encode(start) | (desc_encode(lbo_bytes) << 16) | (desc_encode(sbo_bytes) << 32) |
         (uint64_t(base_offset & 7u) << 49) | (uint64_t(desc_swizzle_code(swizzle)) << 62);
}

/// A descriptor's fields, in bytes (start: the shared byte address, 18 bits).
struct Desc {
  uint32_t start = 0;
  uint32_t lbo = 0;
  uint32_t sbo = 0;
  uint32_t base_offset = 0;
  SmemSwizzle swizzle = SmemSwizzle::kNone;
};

/// The fields of descriptor `d` (read from the bit fields directly, not via make_desc).
STRATA_HOST_DEVICE constexpr Desc decode_desc(uint64_t d) {
  Desc f;
  f.start = uint32_t(d & 0x3FFFu) << 4;
  f.lbo = uint32_t((d >> 16) & 0x3FFFu) << 4;
  f.sbo = uint32_t((d >> 32) & 0x3FFFu) << 4;
  f.base_offset = uint32_t((d >> 49) & 0x7u);
  f.swizzle = swizzle_of_desc_code(uint32_t(d >> 62));
  return f;
}
/// The reserved bits of a descriptor (14-15, 30-31, 46-48, 52-61), for a simulator to fault on.
inline constexpr uint64_t kDescReservedMask = 0x3FF1'C000'C000'C000ull;

/// The base offset the ISA prescribes for a swizzle pattern that starts at shared byte address
/// `pattern_start`: (pattern_start >> 7) & 7 for 128B, which is 0 on a 1024-byte boundary. The
/// ISA's table also says 0 for 64B on a 512- and 32B on a 256-byte boundary, which the bare
/// formula contradicts (512 >> 7 & 7 = 4); masking to the pattern's rows reconciles the two.
STRATA_HOST_DEVICE constexpr uint32_t pattern_base_offset(uint32_t pattern_start, SmemSwizzle s) {
  return s == SmemSwizzle::kNone
             ? 0u
             : (pattern_start >> 7) & uint32_t(swizzle_repeat_bytes(s) / 128 - 1);
}

/// Whether element_offset models descriptor `d` exactly. The ISA says what base_offset to put in
/// but not how the hardware folds it into the swizzle, and nothing Strata builds uses it (TMA
/// swizzles on absolute addresses, so a TMA-written tile has base_offset 0), so a nonzero one is
/// refused rather than guessed. Reserved bits are the caller's to check (kDescReservedMask).
STRATA_HOST_DEVICE constexpr bool desc_supported(const Desc& d) {
  return d.base_offset == 0;
}

// ---------------------------------------------------------------------------------------------
// Reading an operand (ISA 9.7.15.5.1.2.1, "Canonical Layouts")
// ---------------------------------------------------------------------------------------------
// With T = 16 bytes / element size, the ISA's canonical layouts, in elements, are
//   K-major, none:     ((8,m),(T,2k)):((1T,SBO),(1,LBO))
//   K-major, W-byte:   ((8,m),(T,2k)):((W/16 T,SBO),(1,T))            (LBO unused, "assumed 1")
//   MN-major, none:    ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO))
//   MN-major, W-byte:  ((T,W/16,m),(8,k)):((1,T,LBO),(W/16 T,SBO))
// each then passed through Swizzle<b,4,3> on the byte address. In words (16-byte chunks):
//  * K-major: rows of the operand are rows of a core matrix; 8 of them make a group, and groups
//    are SBO apart. Unswizzled, a row is one 16-byte chunk and the next 8 K are LBO away; a
//    W-byte swizzle stores W bytes of K contiguously per row (K of one wgmma, 32 bytes, never
//    crosses it) and rows W bytes apart.
//  * MN-major: 8 K form the "rows" of a core matrix, each holding 16 (none) or W (W-byte swizzle)
//    bytes of consecutive MN elements. Note the swap: unswizzled, SBO steps MN by one 16-byte
//    chunk and LBO steps K by 8; swizzled, LBO steps MN by one W-byte row and SBO steps K by 8.

/// The shared byte address wgmma reads element (row, k) of an operand from: row is M (A: 0..63)
/// or N (B: 0..N-1), k is 0..K-1 of one instruction (16 for 2-byte types). `d` must satisfy
/// desc_supported. elem_bytes: 2 (f16/bf16); 4 and 1 follow the same ISA formulas (K-major only).
STRATA_HOST_DEVICE constexpr uint32_t element_offset(const Desc& d, Major major, int row, int k,
                                                     int elem_bytes = kElemBytes) {
  const uint32_t r = uint32_t(row), c = uint32_t(k), e = uint32_t(elem_bytes);
  const uint32_t t = 16u / e;  // elements per 16-byte chunk
  const uint32_t w = uint32_t(swizzle_row_bytes(d.swizzle));
  uint32_t lin = 0;
  if (major == Major::kK) {
    if (d.swizzle == SmemSwizzle::kNone)
      lin = (r % 8) * 16 + (r / 8) * d.sbo + (c % t) * e + (c / t) * d.lbo;
    else
      lin = (r % 8) * w + (r / 8) * d.sbo + c * e;
  } else {
    if (d.swizzle == SmemSwizzle::kNone)
      lin = (r % t) * e + (r / t) * d.sbo + (c % 8) * 16 + (c / 8) * d.lbo;
    else {
      const uint32_t span = w / e;  // MN elements per swizzled row
      lin = (r % span) * e + (r / span) * d.lbo + (c % 8) * w + (c / 8) * d.sbo;
    }
  }
  return swizzle_address(d.start + lin, d.swizzle);
}

// ---------------------------------------------------------------------------------------------
// Canonical tiles (how a kernel lays out a rows x k_tile operand tile, 2-byte elements)
// ---------------------------------------------------------------------------------------------
// An atom is one swizzle pattern (ISA Table 38): 8 rows of W bytes (W = 16 for none), i.e.
//   K-major:  8 (MN) x W/2 (K) elements, K contiguous;
//   MN-major: W/2 (MN) x 8 (K) elements, MN contiguous.
// These are CuTe's GMMA::Layout_{K,MN}_{INTER,SW32,SW64,SW128}_Atom<half_t/bfloat16_t>. A tile
// is a grid of atoms, each atom a contiguous 8W bytes, in one of two orders:
//   kMNFirst: atoms along MN are adjacent: tile_to_shape(atom, shape), CuTe's default order,
//             the one of FA3's Q and K tiles (K-major);
//   kKFirst:  atoms along K are adjacent: tile_to_shape(atom, shape, Step<_2,_1>). FA3 stores its
//             MN-major Vt (hdim x kBlockN, hopper/mainloop_fwd_sm90_tma_gmma_ws.hpp SmemLayoutVt)
//             this way: the bytes TMA leaves for a box of V (kBlockN rows, hdim contiguous).
// The tile base must be aligned to swizzle_repeat_bytes so that base_offset is 0.

/// Order of the atoms of a canonical tile.
enum class AtomOrder : uint8_t { kMNFirst, kKFirst };

/// A canonical operand tile: `rows` (M or N) x `k_tile` (K) elements of 2 bytes.
struct Tile {
  Major major = Major::kK;
  SmemSwizzle swizzle = SmemSwizzle::k128B;
  int rows = 64;
  int k_tile = 64;
  AtomOrder order = AtomOrder::kMNFirst;
};

/// MN extent of the tile's atom (elements).
STRATA_HOST_DEVICE constexpr int atom_rows(const Tile& t) {
  return t.major == Major::kK ? 8 : swizzle_row_bytes(t.swizzle) / kElemBytes;
}
/// K extent of the tile's atom (elements).
STRATA_HOST_DEVICE constexpr int atom_k(const Tile& t) {
  return t.major == Major::kK ? swizzle_row_bytes(t.swizzle) / kElemBytes : 8;
}
/// Whether the tile is a whole number of atoms and of k16 steps.
STRATA_HOST_DEVICE constexpr bool tile_valid(const Tile& t) {
  return t.rows > 0 && t.k_tile > 0 && t.rows % atom_rows(t) == 0 && t.k_tile % atom_k(t) == 0 &&
         t.k_tile % kInstrK == 0;
}
/// Bytes of the tile.
STRATA_HOST_DEVICE constexpr uint32_t tile_bytes(const Tile& t) {
  return uint32_t(t.rows) * uint32_t(t.k_tile) * kElemBytes;
}

/// Byte offset of element (row, k) of the tile from its base, before the swizzle (which acts on
/// the absolute address: the element lives at swizzle_address(base + tile_offset(...))).
/// Defined for any row, k >= 0 (beyond the tile it extends the atom grid), so that the strides
/// below can be read off it.
STRATA_HOST_DEVICE constexpr uint32_t tile_offset(const Tile& t, int row, int k) {
  const int w = swizzle_row_bytes(t.swizzle);
  const int ar = atom_rows(t), ak = atom_k(t);
  const int i = row / ar, j = k / ak;  // atom coordinates
  const int within = t.major == Major::kK ? (row % ar) * w + (k % ak) * kElemBytes
                                          : (row % ar) * kElemBytes + (k % ak) * w;
  const int atom = t.order == AtomOrder::kMNFirst ? i + j * (t.rows / ar) : j + i * (t.k_tile / ak);
  return uint32_t(atom * 8 * w + within);
}

/// LBO (bytes) a descriptor of the tile carries. Where the hardware does not read it, the value
/// CuTe's make_gmma_desc writes, so that Strata's descriptors equal CuTe's (FA3's) bit for bit:
/// K-major swizzled: 16 (encoded 1, what the ISA says is "assumed"); MN-major swizzled with
/// rows == atom_rows (a single MN atom, e.g. N = 64 at 128B): 0.
STRATA_HOST_DEVICE constexpr uint32_t tile_lbo(const Tile& t) {
  if (t.major == Major::kK) return t.swizzle == SmemSwizzle::kNone ? tile_offset(t, 0, 8) : 16u;
  if (t.swizzle == SmemSwizzle::kNone) return tile_offset(t, 0, 8);
  return t.rows > atom_rows(t) ? tile_offset(t, atom_rows(t), 0) : 0u;
}
/// SBO (bytes) a descriptor of the tile carries.
STRATA_HOST_DEVICE constexpr uint32_t tile_sbo(const Tile& t) {
  if (t.major == Major::kK) return tile_offset(t, 8, 0);
  return t.swizzle == SmemSwizzle::kNone ? tile_offset(t, 8, 0) : tile_offset(t, 0, 8);
}
/// Start-address advance (bytes from the tile base) of the tile's k16 step `s` (K elements
/// 16s..16s+15). Not always s times a constant: K-major 64B steps +32 within an atom and then
/// jumps to the next atom column; K-major 128B steps +32 four times per atom.
STRATA_HOST_DEVICE constexpr uint32_t tile_k16_offset(const Tile& t, int s) {
  return tile_offset(t, 0, kInstrK * s);
}
/// The descriptor of the tile's k16 step `s` for a tile based at shared address `base`.
STRATA_HOST_DEVICE constexpr uint64_t tile_desc(const Tile& t, uint32_t base, int s) {
  return make_desc(base + tile_k16_offset(t, s), tile_lbo(t), tile_sbo(t), t.swizzle, 0);
}

}  // namespace strata::arch::wgmma
