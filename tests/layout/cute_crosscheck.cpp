// Cross-check of strata/arch/wgmma_layout.hpp (written from the PTX ISA) against CuTe's SM90 GMMA
// layouts evaluated on the host: fragment maps, descriptor bit layout, canonical tile layouts, the
// LBO/SBO/start address of each k16 step, and element_offset (the address the simulator's wgmma
// reads) under the descriptors CuTe's make_gmma_desc builds. Also the PTX ISA's own worked
// examples (9.7.15.5.1.2: Table 38, the canonical-layout examples, the base-offset table).
// Standalone: plain main, one summary line per check, exit status 1 on any mismatch.
//
// CuTe comes from the PyPI package nvidia-cutlass (headers only; test-only dependency, installed
// by scripts/install_python_deps.sh). Compile and run from the repository root:
//
// clang-format off
//   CUTLASS_INC=$(~/.cache/strata-venv/bin/python -c "import cutlass_library as c, os; print(os.path.join(os.path.dirname(c.__file__), 'source', 'include'))")
//   g++ -std=c++17 -O1 -Wall -I include -isystem "$CUTLASS_INC" -isystem /usr/local/cuda/include -isystem /usr/local/cuda/include/cccl tests/layout/cute_crosscheck.cpp -o build/cute_crosscheck
//   build/cute_crosscheck            # add --strides to print every tile's LBO/SBO and k16 steps
// clang-format on
//
// (-isystem keeps CUTLASS's own warnings out; .../cuda/include and .../cuda/include/cccl, where
// CUDA 13 keeps libcu++, serve CUTLASS's includes of CUDA headers; nothing of CUDA is called.
// About 35 s of g++.)

#include <cstddef>
#include <cstdint>

// Host stand-in for shared memory. CuTe turns a shared pointer into the 32-bit shared address it
// puts in a descriptor with __cvta_generic_to_shared, which only exists in device code (on the host
// cast_smem_ptr_to_uint prints an error and returns 0). Here "shared memory" is the arena below,
// 1024-byte aligned so that host address bits [4, 10), which CuTe's swizzle pointers permute,
// equal those of the shared address; the shim gives CuTe the offset into it.
alignas(1024) static char g_smem[1 << 16];
inline size_t __cvta_generic_to_shared(const void* p) {  // NOLINT (reserved name: CUDA's)
  return size_t(static_cast<const char*>(p) - g_smem);
}
#define CUTE_CVTA_GENERIC_TO_SHARED_ACTIVATED 1

#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/tensor.hpp>

#include <cstdio>
#include <string>
#include <utility>

#include "strata/arch/tensor_map.hpp"
#include "strata/arch/wgmma_layout.hpp"

using namespace cute;
namespace wg = strata::arch::wgmma;
namespace G = cute::SM90::GMMA;

namespace {

int g_failures = 0;

// One check's tallies: comparisons made, mismatches, and up to 3 printed mismatches.
struct Check {
  const char* name;
  long compared = 0, bad = 0;
  explicit Check(const char* n) : name(n) {}
  template <class... Args>
  void expect(bool ok, const char* fmt, Args... args) {
    ++compared;
    if (ok) return;
    if (bad++ < 3) {
      std::printf("  MISMATCH [%s] ", name);
      std::printf(fmt, args...);
      std::printf("\n");
    }
  }
  ~Check() {
    std::printf("%-4s %-62s %8ld compared, %ld mismatches", bad ? "FAIL" : "ok", name, compared,
                bad);
    std::printf("\n");
    if (bad || compared == 0) ++g_failures;
  }
};

uint32_t smem_addr(const void* p) {
  return uint32_t(static_cast<const char*>(p) - g_smem);
}

// ---- fragment maps -----------------------------------------------------------------------------

template <int N>
void check_clayout(Check& c) {
  using C = G::CLayout_64xN<N>;
  for (int t = 0; t < 128; ++t)
    for (int v = 0; v < N / 2; ++v) {
      const int idx = C{}(t, v);  // (thread, value) -> m + 64 n
      const int m = idx % 64, n = idx / 64;
      c.expect(m == wg::acc_row(t, v) && n == wg::acc_col(t, v),
               "N=%d t=%d v=%d cute (%d,%d) strata (%d,%d)", N, t, v, m, n, wg::acc_row(t, v),
               wg::acc_col(t, v));
    }
}
template <int... I>
void check_clayouts(std::integer_sequence<int, I...>) {
  Check c("CLayout_64xN (N=8..256 step 8) vs acc_row/acc_col");
  (check_clayout<8 * (I + 1)>(c), ...);
}

void check_alayout() {
  Check c("ALayout_64x16 vs a_row/a_col");
  using A = G::ALayout_64x16;
  for (int t = 0; t < 128; ++t)
    for (int v = 0; v < 8; ++v) {
      const int idx = A{}(t, v);  // (thread, value) -> m + 64 k
      c.expect(idx % 64 == wg::a_row(t, v) && idx / 64 == wg::a_col(t, v), "t=%d v=%d", t, v);
    }
}

// ---- descriptor bit layout ---------------------------------------------------------------------

uint64_t lcg(uint64_t& s) {
  s = s * 6364136223846793005ull + 1442695040888963407ull;
  return s;
}

void check_descriptor_bits() {
  Check c("make_desc/decode_desc vs cute GmmaDescriptor bit fields");
  for (int s = 0; s < 4; ++s) {  // swizzle code <-> cute LayoutType
    const auto sw = wg::SmemSwizzle(s);
    const auto lt = s == 0   ? G::LayoutType::INTERLEAVE
                    : s == 1 ? G::LayoutType::B32
                    : s == 2 ? G::LayoutType::B64
                             : G::LayoutType::B128;
    c.expect(wg::desc_swizzle_code(sw) == uint32_t(lt), "swizzle %d code %u vs cute %u", s,
             wg::desc_swizzle_code(sw), unsigned(lt));
  }
  uint64_t seed = 12345;
  for (int i = 0; i < 100000; ++i) {
    const uint32_t start = uint32_t(lcg(seed) >> 20) & 0x3FFF0u;
    const uint32_t lbo = uint32_t(lcg(seed) >> 20) & 0x3FFF0u;
    const uint32_t sbo = uint32_t(lcg(seed) >> 20) & 0x3FFF0u;
    const uint32_t bo = uint32_t(lcg(seed) >> 40) & 7u;
    const auto sw = wg::SmemSwizzle(uint32_t(lcg(seed) >> 50) & 3u);
    cute::GmmaDescriptor d;
    d.bitfield.start_address_ = uint16_t(start >> 4);
    d.bitfield.leading_byte_offset_ = uint16_t(lbo >> 4);
    d.bitfield.stride_byte_offset_ = uint16_t(sbo >> 4);
    d.bitfield.base_offset_ = uint8_t(bo);
    d.bitfield.layout_type_ = uint8_t(wg::desc_swizzle_code(sw));
    const uint64_t mine = wg::make_desc(start, lbo, sbo, sw, bo);
    c.expect(mine == uint64_t(d), "make_desc %016llx vs cute %016llx", (unsigned long long)mine,
             (unsigned long long)uint64_t(d));
    // decode an arbitrary 64-bit value against cute's reading of the same bits
    const uint64_t raw = lcg(seed);
    cute::GmmaDescriptor r(raw);
    const wg::Desc f = wg::decode_desc(raw);
    c.expect(f.start == uint32_t(r.bitfield.start_address_) << 4 &&
                 f.lbo == uint32_t(r.bitfield.leading_byte_offset_) << 4 &&
                 f.sbo == uint32_t(r.bitfield.stride_byte_offset_) << 4 &&
                 f.base_offset == r.bitfield.base_offset_ &&
                 wg::desc_swizzle_code(f.swizzle) == r.bitfield.layout_type_,
             "decode_desc(%016llx)", (unsigned long long)raw);
    c.expect(wg::make_desc(f.start, f.lbo, f.sbo, f.swizzle, f.base_offset) ==
                 (raw & ~wg::kDescReservedMask),
             "reserved mask on %016llx", (unsigned long long)raw);
  }
}

void check_swizzle_function() {
  Check c("swizzle_address vs cute Swizzle<b,4,3> and tma::swizzle_offset");
  for (uint32_t a = 0; a < (1u << 18); a += 2) {
    c.expect(wg::swizzle_address(a, wg::SmemSwizzle::kNone) == a, "none %u", a);
    c.expect(wg::swizzle_address(a, wg::SmemSwizzle::k32B) == uint32_t(Swizzle<1, 4, 3>{}(int(a))),
             "32B %u", a);
    c.expect(wg::swizzle_address(a, wg::SmemSwizzle::k64B) == uint32_t(Swizzle<2, 4, 3>{}(int(a))),
             "64B %u", a);
    c.expect(wg::swizzle_address(a, wg::SmemSwizzle::k128B) == uint32_t(Swizzle<3, 4, 3>{}(int(a))),
             "128B %u", a);
    for (int s = 0; s < 4; ++s)
      c.expect(wg::swizzle_address(a, wg::SmemSwizzle(s)) ==
                   strata::tma::swizzle_offset(a, strata::tma::Swizzle(s)),
               "tma %d %u", s, a);
  }
}

// ---- canonical tiles vs CuTe -------------------------------------------------------------------

template <wg::Major M, wg::SmemSwizzle S>
auto atom() {
  using T = half_t;
  if constexpr (M == wg::Major::kK) {
    if constexpr (S == wg::SmemSwizzle::kNone)
      return G::Layout_K_INTER_Atom<T>{};
    else if constexpr (S == wg::SmemSwizzle::k32B)
      return G::Layout_K_SW32_Atom<T>{};
    else if constexpr (S == wg::SmemSwizzle::k64B)
      return G::Layout_K_SW64_Atom<T>{};
    else
      return G::Layout_K_SW128_Atom<T>{};
  } else {
    if constexpr (S == wg::SmemSwizzle::kNone)
      return G::Layout_MN_INTER_Atom<T>{};
    else if constexpr (S == wg::SmemSwizzle::k32B)
      return G::Layout_MN_SW32_Atom<T>{};
    else if constexpr (S == wg::SmemSwizzle::k64B)
      return G::Layout_MN_SW64_Atom<T>{};
    else
      return G::Layout_MN_SW128_Atom<T>{};
  }
}

const char* name(wg::Major m) {
  return m == wg::Major::kK ? "K" : "MN";
}
const char* name(wg::SmemSwizzle s) {
  return s == wg::SmemSwizzle::kNone  ? "INTER"
         : s == wg::SmemSwizzle::k32B ? "SW32"
         : s == wg::SmemSwizzle::k64B ? "SW64"
                                      : "SW128";
}

// (members report in reverse order of declaration, when they are destroyed)
struct TileChecks {
  Check read_mine{"element_offset(tile_desc) vs cute, every k16 slice"};
  Check read_cute{"element_offset(make_gmma_desc) vs cute, every k16 slice"};
  Check desc{"tile_desc vs make_gmma_desc, bit for bit, every k16 slice"};
  Check layout{"tile_offset vs tile_to_shape(atom), every element"};
};

bool print_strides = false;  // --strides: print each tile's LBO/SBO and k16 steps

constexpr uint32_t kTileBase = 3072;  // 1024-aligned (base_offset 0), nonzero

template <wg::Major M, wg::SmemSwizzle S, wg::AtomOrder O, int R>
void check_tile(TileChecks& tc) {
  constexpr int KT = 64;
  constexpr wg::Tile tile{M, S, R, KT, O};
  if constexpr (!wg::tile_valid(tile)) {
    return;  // rows not a multiple of the atom's MN extent: no such canonical tile
  } else {
    auto shape = Shape<Int<R>, Int<KT>>{};
    auto L = [&] {
      if constexpr (O == wg::AtomOrder::kMNFirst)
        return tile_to_shape(atom<M, S>(), shape);
      else
        return tile_to_shape(atom<M, S>(), shape, Step<_2, _1>{});
    }();
    auto t = make_tensor(make_smem_ptr(reinterpret_cast<half_t*>(g_smem + kTileBase)), L);
    static_assert(wg::tile_bytes(tile) + kTileBase <= sizeof(g_smem));
    const char* ord = O == wg::AtomOrder::kMNFirst ? "MNfirst" : "Kfirst";

    for (int r = 0; r < R; ++r)
      for (int k = 0; k < KT; ++k) {
        const uint32_t cute_a = smem_addr(&t(r, k));
        const uint32_t mine = wg::swizzle_address(kTileBase + wg::tile_offset(tile, r, k), S);
        tc.layout.expect(cute_a == mine, "%s %s %s R=%d (%d,%d) cute %u strata %u", name(M),
                         name(S), ord, R, r, k, cute_a, mine);
      }

    constexpr G::Major CM = M == wg::Major::kK ? G::Major::K : G::Major::MN;
    for (int s = 0; s < KT / 16; ++s) {
      auto slice = local_tile(t, Shape<Int<R>, _16>{}, make_coord(0, s));
      const uint64_t cd = uint64_t(G::make_gmma_desc<CM>(slice));
      const uint64_t md = wg::tile_desc(tile, kTileBase, s);
      const wg::Desc cf = wg::decode_desc(cd), mf = wg::decode_desc(md);
      tc.desc.expect(cd == md,
                     "%s %s %s R=%d s=%d cute %016llx (start %u lbo %u sbo %u) strata %016llx "
                     "(start %u lbo %u sbo %u)",
                     name(M), name(S), ord, R, s, (unsigned long long)cd, cf.start, cf.lbo, cf.sbo,
                     (unsigned long long)md, mf.start, mf.lbo, mf.sbo);
      if (s == 0 && print_strides)
        std::printf("  %-2s %-5s %-7s rows %3d: LBO %5u SBO %5u, k16 steps at +%u +%u +%u\n",
                    name(M), name(S), ord, R, mf.lbo, mf.sbo, wg::tile_k16_offset(tile, 1),
                    wg::tile_k16_offset(tile, 2), wg::tile_k16_offset(tile, 3));
      for (int r = 0; r < R; ++r)
        for (int k = 0; k < 16; ++k) {
          const uint32_t cute_a = smem_addr(&slice(r, k));
          const uint32_t a1 = wg::element_offset(cf, M, r, k);
          const uint32_t a2 = wg::element_offset(mf, M, r, k);
          tc.read_cute.expect(a1 == cute_a, "%s %s %s R=%d s=%d (%d,%d) cute %u strata %u", name(M),
                              name(S), ord, R, s, r, k, cute_a, a1);
          tc.read_mine.expect(a2 == cute_a, "%s %s %s R=%d s=%d (%d,%d) cute %u strata %u", name(M),
                              name(S), ord, R, s, r, k, cute_a, a2);
        }
    }
  }
}

template <wg::Major M, wg::SmemSwizzle S, wg::AtomOrder O>
void check_tiles_rows(TileChecks& tc) {
  check_tile<M, S, O, 64>(tc);
  check_tile<M, S, O, 80>(tc);
  check_tile<M, S, O, 128>(tc);
  check_tile<M, S, O, 176>(tc);
  check_tile<M, S, O, 256>(tc);
}
template <wg::Major M, wg::AtomOrder O>
void check_tiles_swizzles(TileChecks& tc) {
  check_tiles_rows<M, wg::SmemSwizzle::kNone, O>(tc);
  check_tiles_rows<M, wg::SmemSwizzle::k32B, O>(tc);
  check_tiles_rows<M, wg::SmemSwizzle::k64B, O>(tc);
  check_tiles_rows<M, wg::SmemSwizzle::k128B, O>(tc);
}

// Which (major, swizzle, rows) tiles exist, printed so the coverage is visible.
void print_tile_coverage() {
  for (auto m : {wg::Major::kK, wg::Major::kMN})
    for (int s = 0; s < 4; ++s) {
      std::printf("  tiles %-2s %-5s rows:", name(m), name(wg::SmemSwizzle(s)));
      for (int r : {64, 80, 128, 176, 256})
        if (wg::tile_valid(wg::Tile{m, wg::SmemSwizzle(s), r, 64, wg::AtomOrder::kMNFirst}))
          std::printf(" %d", r);
      std::printf(" (x K=64; atom orders MNfirst and Kfirst)\n");
    }
}

// ---- the PTX ISA's worked examples -------------------------------------------------------------

// ISA 9.7.15.5.1.2.1.3 examples: "Exact layout" (CuTe notation, element units) -> byte address
// under Swizzle<b,4,3>, vs element_offset with the LBO/SBO the example tabulates.
template <int B, class Layout>
void check_isa_example(Check& c, const char* what, Layout exact, wg::Major major,
                       wg::SmemSwizzle sw, int elem_bytes, int rows, int cols, uint32_t lbo_bytes,
                       uint32_t sbo_bytes, uint32_t lbo_enc, uint32_t sbo_enc) {
  c.expect(wg::desc_encode(lbo_bytes) == lbo_enc && wg::desc_encode(sbo_bytes) == sbo_enc,
           "%s: encodings", what);
  const wg::Desc d = wg::decode_desc(wg::make_desc(0, lbo_bytes, sbo_bytes, sw));
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < cols; ++k) {
      const uint32_t isa = uint32_t(Swizzle<B, 4, 3>{}(int(exact(r, k)) * elem_bytes));
      const uint32_t mine = wg::element_offset(d, major, r, k, elem_bytes);
      c.expect(isa == mine, "%s (%d,%d) isa %u strata %u", what, r, k, isa, mine);
    }
}

void check_isa_examples() {
  {
    Check c("ISA canonical-layout examples (Figs 166-170) vs element_offset");
    // K-major, no swizzle, tf32: Swizzle<0,4,3> o ((8,2),(4,4)):((4,32),(1,64)); LBO 64*4, SBO 32*4
    check_isa_example<0>(
        c, "K none tf32",
        make_layout(make_shape(make_shape(_8{}, _2{}), make_shape(_4{}, _4{})),
                    make_stride(make_stride(_4{}, _32{}), make_stride(_1{}, _64{}))),
        wg::Major::kK, wg::SmemSwizzle::kNone, 4, 16, 16, 64 * 4, 32 * 4, 16, 8);
    // K-major, 32B, tf32: Swizzle<1,4,3> o ((8,2),(4,4)):((8,64),(1,4)); SBO 64*4. The example's
    // K extent (k = 2, 16 tf32 = 64 bytes) overlaps itself in a 32-byte row ((0,8) and (1,0) both
    // map to 8); the first 8 K (one m64nNk8) are the part that is a layout, and are checked.
    check_isa_example<1>(
        c, "K 32B tf32",
        make_layout(make_shape(make_shape(_8{}, _2{}), make_shape(_4{}, _4{})),
                    make_stride(make_stride(_8{}, _64{}), make_stride(_1{}, _4{}))),
        wg::Major::kK, wg::SmemSwizzle::k32B, 4, 16, 8, 16 /*unused*/, 64 * 4, 1, 16);
    // MN-major, no swizzle, bf16: ((8,1,2),(8,2)):((1,8,64),(8,128)); LBO 128*2, SBO 64*2
    check_isa_example<0>(
        c, "MN none bf16",
        make_layout(make_shape(make_shape(_8{}, _1{}, _2{}), make_shape(_8{}, _2{})),
                    make_stride(make_stride(_1{}, _8{}, _64{}), make_stride(_8{}, _128{}))),
        wg::Major::kMN, wg::SmemSwizzle::kNone, 2, 16, 16, 128 * 2, 64 * 2, 16, 8);
    // MN-major, 32B, bf16: ((8,2,2),(8,2)):((1,8,128),(16,256)); LBO 128*2, SBO 256*2
    check_isa_example<1>(
        c, "MN 32B bf16",
        make_layout(make_shape(make_shape(_8{}, _2{}, _2{}), make_shape(_8{}, _2{})),
                    make_stride(make_stride(_1{}, _8{}, _128{}), make_stride(_16{}, _256{}))),
        wg::Major::kMN, wg::SmemSwizzle::k32B, 2, 32, 16, 128 * 2, 256 * 2, 16, 32);
    // MN-major, 64B, bf16: ((8,4,2),(8,2)):((1,8,256),(32,512)); LBO 256*2, SBO 512*2
    check_isa_example<2>(
        c, "MN 64B bf16",
        make_layout(make_shape(make_shape(_8{}, _4{}, _2{}), make_shape(_8{}, _2{})),
                    make_stride(make_stride(_1{}, _8{}, _256{}), make_stride(_32{}, _512{}))),
        wg::Major::kMN, wg::SmemSwizzle::k64B, 2, 64, 16, 256 * 2, 512 * 2, 32, 64);
  }
  {
    Check c("ISA Table 38 swizzle atoms (128-bit units) vs atom_rows/atom_k");
    // {swizzle, MN-major (MN x K), K-major (MN x K)} in 128-bit elements
    const int table[4][5] = {{0, 1, 8, 8, 1}, {1, 2, 8, 8, 2}, {2, 4, 8, 8, 4}, {3, 8, 8, 8, 8}};
    for (auto& row : table) {
      const auto s = wg::SmemSwizzle(row[0]);
      const wg::Tile mn{wg::Major::kMN, s, 64, 64}, k{wg::Major::kK, s, 64, 64};
      c.expect(wg::atom_rows(mn) == row[1] * 8 && wg::atom_k(mn) == row[2], "MN %s", name(s));
      c.expect(wg::atom_rows(k) == row[3] && wg::atom_k(k) == row[4] * 8, "K %s", name(s));
    }
  }
  {
    Check c("ISA descriptor base-offset table / formula vs pattern_base_offset");
    for (uint32_t n = 0; n < 64; ++n) {
      c.expect(wg::pattern_base_offset(1024 * n, wg::SmemSwizzle::k128B) == 0, "128B %u", n);
      c.expect(wg::pattern_base_offset(512 * n, wg::SmemSwizzle::k64B) == 0, "64B %u", n);
      c.expect(wg::pattern_base_offset(256 * n, wg::SmemSwizzle::k32B) == 0, "32B %u", n);
      for (uint32_t j = 0; j < 8; ++j)  // 128B: base offset = (pattern start addr >> 7) & 7
        c.expect(wg::pattern_base_offset(1024 * n + 128 * j, wg::SmemSwizzle::k128B) ==
                     ((1024 * n + 128 * j) >> 7 & 7),
                 "128B formula %u %u", n, j);
    }
    // the ISA's descriptor: a hand-assembled value, field by field
    const uint64_t want = (uint64_t(0x12340 >> 4)) | (uint64_t(256 >> 4) << 16) |
                          (uint64_t(1024 >> 4) << 32) | (uint64_t(3) << 49) | (uint64_t(1) << 62);
    c.expect(wg::make_desc(0x12340, 256, 1024, wg::SmemSwizzle::k128B, 3) == want, "assembled");
    c.expect(wg::make_desc(0x52340, 0, 0, wg::SmemSwizzle::kNone) == (0x12340 >> 4),
             "address & 0x3FFFF");
  }
}

}  // namespace

int main(int argc, char** argv) {
  print_strides = argc > 1 && std::string(argv[1]) == "--strides";
  check_clayouts(std::make_integer_sequence<int, 32>{});
  check_alayout();
  check_descriptor_bits();
  check_swizzle_function();
  print_tile_coverage();
  {
    TileChecks tc;
    check_tiles_swizzles<wg::Major::kK, wg::AtomOrder::kMNFirst>(tc);
    check_tiles_swizzles<wg::Major::kMN, wg::AtomOrder::kMNFirst>(tc);
    check_tiles_swizzles<wg::Major::kK, wg::AtomOrder::kKFirst>(tc);
    check_tiles_swizzles<wg::Major::kMN, wg::AtomOrder::kKFirst>(tc);
  }
  check_isa_examples();
  std::printf("%s: %d check(s) failed\n", g_failures ? "FAIL" : "PASS", g_failures);
  return g_failures ? 1 : 0;
}
