// TMA in the simulator (strata/arch/tensor_map.hpp, tma.hpp; sim/tma.hpp): the host encoder
// refuses every tensor map the driver would refuse, naming the field; loads land the box the
// tensor map describes (out-of-bounds zeros, the swizzle patterns) once their barrier phase is
// waited for; a TMA-fed pipeline reuses its stages correctly under every schedule; stores write
// back the in-bounds elements; and each misuse is a fault naming the kernel's line.
#include "common.hpp"

#include <cstring>
#include <string>

namespace {

using strata::Status;
using strata::StatusCode;
namespace arch = strata::arch;
namespace tma = strata::tma;

tma::Tiled tiled_2d(const void* base, tma::DataType dt, uint64_t cols, uint64_t rows,
                    uint32_t box_cols, uint32_t box_rows, tma::Swizzle swz) {
  tma::Tiled t;
  t.dtype = dt;
  t.rank = 2;
  t.global_address = base;
  t.global_dim[0] = cols;
  t.global_dim[1] = rows;
  t.global_stride[0] = cols * uint64_t(tma::element_bytes(dt));
  t.box_dim[0] = box_cols;
  t.box_dim[1] = box_rows;
  t.swizzle = swz;
  return t;
}

// ------------------------------------------------------------------------------- encoder
TEST(TmaEncoder, AcceptsTheKernelsMapsAndNamesEveryRefusedField) {
  alignas(64) static uint16_t g[64 * 128];
  tma::TensorMap map;
  EXPECT_TRUE(tma::encode_tiled(
                  &map, tiled_2d(g, tma::DataType::kBF16, 128, 64, 64, 64, tma::Swizzle::k128B))
                  .ok());
  struct Case {
    const char* field;
    void (*spoil)(tma::Tiled&);
  };
  const Case cases[] = {
      {"rank", [](tma::Tiled& t) { t.rank = 6; }},
      {"global_address",
       [](tma::Tiled& t) { t.global_address = static_cast<const char*>(t.global_address) + 8; }},
      {"global_dim[1]", [](tma::Tiled& t) { t.global_dim[1] = 0; }},
      {"global_dim[0]", [](tma::Tiled& t) { t.global_dim[0] = (uint64_t(1) << 32) + 1; }},
      {"global_stride[0]",
       [](tma::Tiled& t) { t.global_stride[0] = 200; }},  // not a multiple of 16
      {"global_stride[0]", [](tma::Tiled& t) { t.global_stride[0] = 128; }},  // less than a row
      {"box_dim[1]", [](tma::Tiled& t) { t.box_dim[1] = 257; }},
      {"box_dim[0]", [](tma::Tiled& t) { t.box_dim[0] = 12; }},   // 24 bytes: not a multiple of 16
      {"box_dim[0]", [](tma::Tiled& t) { t.box_dim[0] = 128; }},  // 256 bytes > the 128B span
      {"box_dim[0]",
       [](tma::Tiled& t) {
         t.swizzle = tma::Swizzle::k32B;
         t.box_dim[0] = 32;  // 64 bytes > the 32B span
       }},
      {"oob_nan",
       [](tma::Tiled& t) {
         t.dtype = tma::DataType::kU16;
         t.oob_nan = true;
       }},
  };
  for (const Case& c : cases) {
    tma::Tiled t = tiled_2d(g, tma::DataType::kBF16, 128, 64, 64, 64, tma::Swizzle::k128B);
    c.spoil(t);
    const Status s = tma::encode_tiled(&map, t);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(std::string(s.message()).find(std::string("tma::Tiled.") + c.field),
              std::string::npos)
        << c.field << ": " << s.message();
  }
  alignas(64) unsigned char raw[128 + 64];
  EXPECT_EQ(
      tma::encode_tiled(reinterpret_cast<tma::TensorMap*>(raw + 32),
                        tiled_2d(g, tma::DataType::kBF16, 128, 64, 64, 64, tma::Swizzle::kNone))
          .code(),
      StatusCode::kInvalidArgument);
}

// The swizzle patterns as the PTX ISA states them, row by row: in a 128B swizzle, 16-byte chunk c
// of 128-byte row r lands at chunk c ^ (r % 8); 64B: chunk c of 64-byte row r at c ^ (r / 2 % 4);
// 32B: chunk c of 32-byte row r at c ^ (r / 4 % 2).
TEST(TmaSwizzle, PatternsMatchThePtxTables) {
  for (uint32_t r = 0; r < 16; ++r)
    for (uint32_t c = 0; c < 8; ++c)
      for (uint32_t b = 0; b < 16; b += 2) {
        EXPECT_EQ(tma::swizzle_offset(128 * r + 16 * c + b, tma::Swizzle::k128B),
                  128 * r + 16 * (c ^ (r % 8)) + b);
        if (c < 4) {
          EXPECT_EQ(tma::swizzle_offset(64 * r + 16 * c + b, tma::Swizzle::k64B),
                    64 * r + 16 * (c ^ (r / 2 % 4)) + b);
        }
        if (c < 2) {
          EXPECT_EQ(tma::swizzle_offset(32 * r + 16 * c + b, tma::Swizzle::k32B),
                    32 * r + 16 * (c ^ (r / 4 % 2)) + b);
        }
        EXPECT_EQ(tma::swizzle_offset(128 * r + 16 * c + b, tma::Swizzle::kNone),
                  128 * r + 16 * c + b);
      }
}

// ------------------------------------------------------------------------------- loads
// One elected thread loads the box at (c0, c1) into dynamic shared memory; every thread waits and
// copies the shared bytes out.
__global__ void load_box_2d(const tma::TensorMap* map, int c0, int c1, uint32_t bytes,
                            unsigned char* out) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  auto* bar = reinterpret_cast<uint64_t*>(smem + bytes);
  if (threadIdx.x == 0) arch::mbarrier_init(bar, 1);
  __syncthreads();
  if (threadIdx.x < 32 && arch::elect_one()) {
    arch::mbarrier_arrive_expect_tx(bar, bytes);
    arch::tma_load_2d(smem, map, bar, c0, c1);
  }
  arch::mbarrier_wait(bar, 0);
  for (uint32_t i = threadIdx.x; i < bytes; i += blockDim.x) out[i] = smem[i];
}

template <class T>
void check_box(tma::Swizzle swz, uint32_t box_cols, uint32_t box_rows, int c0, int c1) {
  const uint64_t cols = 80, rows = 37;  // ragged against the boxes
  std::vector<T> g(cols * rows);
  for (size_t i = 0; i < g.size(); ++i) g[i] = T(i + 1);
  alignas(64) tma::TensorMap map;
  const tma::DataType dt = sizeof(T) == 2 ? tma::DataType::kU16 : tma::DataType::kU32;
  ASSERT_TRUE(
      tma::encode_tiled(&map, tiled_2d(g.data(), dt, cols, rows, box_cols, box_rows, swz)).ok());
  const uint32_t bytes = box_cols * box_rows * uint32_t(sizeof(T));
  std::vector<unsigned char> out(bytes);
  const Status s =
      strata::launch(load_box_2d, dim3(1), dim3(64), bytes + 8, 0, &map, c0, c1, bytes, out.data());
  ASSERT_TRUE(s.ok()) << s.message();
  for (uint32_t r = 0; r < box_rows; ++r)
    for (uint32_t c = 0; c < box_cols; ++c) {
      const int64_t gc = c0 + int64_t(c), gr = c1 + int64_t(r);
      const T want = gc < 0 || gr < 0 || gc >= int64_t(cols) || gr >= int64_t(rows)
                         ? T(0)
                         : g[size_t(gr) * cols + size_t(gc)];
      T got;
      std::memcpy(&got, &out[tma::swizzle_offset(uint32_t((r * box_cols + c) * sizeof(T)), swz)],
                  sizeof(T));
      ASSERT_EQ(got, want) << "swizzle " << int(swz) << " box (" << c0 << ", " << c1
                           << ") element (" << c << ", " << r << ")";
    }
  EXPECT_EQ(strata::sim::last_launch_counters().tma_loads, 1u);
  EXPECT_EQ(strata::sim::last_launch_counters().tma_load_bytes, bytes);
}

class Tma : public strata_test::ScheduleTest {};

TEST_P(Tma, LoadsTheBoxWithEverySwizzleAndZeroFillsOutOfBounds) {
  for (auto swz :
       {tma::Swizzle::kNone, tma::Swizzle::k32B, tma::Swizzle::k64B, tma::Swizzle::k128B}) {
    const uint32_t span = swz == tma::Swizzle::kNone ? 128 : uint32_t(tma::swizzle_span(swz));
    const int corners[][2] = {{0, 0}, {8, 5}, {-8, -3}, {64, 30}, {-16, 33}};
    for (const auto& c : corners) {
      check_box<uint16_t>(swz, span / 2, 16, c[0], c[1]);
      check_box<uint32_t>(swz, span / 4, 9, c[0], c[1]);
    }
  }
}

// A [heads, seqlen, d = 128] tensor read as FA3 reads K at d = 128 with the 128B swizzle: two
// boxes of 64 columns per tile, each its own 1024-byte aligned buffer.
__global__ void load_head_tile_3d(const tma::TensorMap* map, int head, int row0, uint16_t* out) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  auto* bar = reinterpret_cast<uint64_t*>(smem + 2 * 8192);
  if (threadIdx.x == 0) arch::mbarrier_init(bar, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    arch::mbarrier_arrive_expect_tx(bar, 2 * 8192);
    arch::tma_load_3d(smem, map, bar, 0, row0, head);
    arch::tma_load_3d(smem + 8192, map, bar, 64, row0, head);
  }
  arch::mbarrier_wait(bar, 0);
  for (int i = int(threadIdx.x); i < 64 * 128; i += int(blockDim.x)) {  // row r, column c
    const int r = i / 128, c = i % 128;
    const uint32_t off = tma::swizzle_offset(uint32_t((r * 64 + c % 64) * 2), tma::Swizzle::k128B);
    std::memcpy(&out[i], smem + (c / 64) * 8192 + off, 2);
  }
}
TEST_P(Tma, LoadsHeadTilesOf3dTensorsAsFa3Does) {
  const int heads = 3, seqlen = 100, d = 128;
  std::vector<uint16_t> g(size_t(heads) * seqlen * d);
  for (size_t i = 0; i < g.size(); ++i) g[i] = uint16_t(i * 7 + 1);
  tma::Tiled t;
  t.dtype = tma::DataType::kBF16;
  t.rank = 3;
  t.global_address = g.data();
  t.global_dim[0] = d;
  t.global_dim[1] = seqlen;
  t.global_dim[2] = heads;
  t.global_stride[0] = d * 2;
  t.global_stride[1] = uint64_t(seqlen) * d * 2;
  t.box_dim[0] = 64;
  t.box_dim[1] = 64;
  t.box_dim[2] = 1;
  t.swizzle = tma::Swizzle::k128B;
  alignas(64) tma::TensorMap map;
  ASSERT_TRUE(tma::encode_tiled(&map, t).ok());
  std::vector<uint16_t> out(64 * 128);
  ASSERT_TRUE(strata::launch(load_head_tile_3d, dim3(1), dim3(128), 2 * 8192 + 8, 0, &map, 2, 64,
                             out.data())
                  .ok());
  for (int r = 0; r < 64; ++r)
    for (int c = 0; c < 128; ++c)
      ASSERT_EQ(out[size_t(r * 128 + c)],
                64 + r < seqlen ? g[(size_t(2) * seqlen + 64 + r) * d + c] : 0)
          << r << " " << c;
}

// A TMA-fed pipeline: the producer's elected lane announces and issues each tile's load into one
// of two stages; the consumer warpgroup waits, reads, releases the stage. Seven tiles: each stage
// is refilled three times, so a release or a wait out of order shows.
constexpr int kTileRows = 16, kTileCols = 64, kTiles = 7;
__global__ void __launch_bounds__(256, 1) tma_pipeline(const tma::TensorMap* map, float* out) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  constexpr uint32_t kStageBytes = kTileRows * kTileCols * 2;
  auto* full = reinterpret_cast<uint64_t*>(smem + 2 * kStageBytes);
  uint64_t* empty = full + 2;
  if (threadIdx.x == 0)
    for (int s = 0; s < 2; ++s) {
      arch::mbarrier_init(&full[s], 1);
      arch::mbarrier_init(&empty[s], 4);
    }
  __syncthreads();
  if (threadIdx.x < 128) {
    arch::setmaxnreg_dec<40>();
    if (threadIdx.x >= 32) return;
    for (int t = 0; t < kTiles; ++t) {
      const int s = t % 2;
      arch::mbarrier_wait(&empty[s], uint32_t(t / 2 % 2) ^ 1u);
      if (arch::elect_one()) {
        arch::mbarrier_arrive_expect_tx(&full[s], kStageBytes);
        arch::tma_load_2d(smem + s * kStageBytes, map, &full[s], 0, t * kTileRows);
      }
    }
    return;
  }
  arch::setmaxnreg_inc<256>();
  const int ct = int(threadIdx.x) - 128;
  for (int t = 0; t < kTiles; ++t) {
    const int s = t % 2;
    arch::mbarrier_wait(&full[s], uint32_t(t / 2 % 2));
    const auto* tile = reinterpret_cast<const uint16_t*>(smem + s * kStageBytes);
    float acc = 0.f;
    for (int r = 0; r < kTileRows; ++r)
      if (ct < kTileCols)
        acc += float(
            tile[tma::swizzle_offset(uint32_t((r * kTileCols + ct) * 2), tma::Swizzle::k128B) / 2]);
    if (ct < kTileCols) out[t * kTileCols + ct] = acc;
    arch::syncwarp();
    if (arch::elect_one()) arch::mbarrier_arrive(&empty[s]);
  }
}
TEST_P(Tma, PipelineRefillsStagesInOrder) {
  const int rows = kTiles * kTileRows - 5;  // the last tile is ragged: zero rows
  std::vector<uint16_t> g(size_t(rows) * kTileCols);
  for (size_t i = 0; i < g.size(); ++i) g[i] = uint16_t(i % 251);
  alignas(64) tma::TensorMap map;
  ASSERT_TRUE(
      tma::encode_tiled(&map, tiled_2d(g.data(), tma::DataType::kU16, kTileCols, uint64_t(rows),
                                       kTileCols, kTileRows, tma::Swizzle::k128B))
          .ok());
  std::vector<float> out(kTiles * kTileCols, -1.f);
  const Status s = strata::launch(tma_pipeline, dim3(1), dim3(256),
                                  2 * kTileRows * kTileCols * 2 + 32, 0, &map, out.data());
  ASSERT_TRUE(s.ok()) << s.message();
  for (int t = 0; t < kTiles; ++t)
    for (int c = 0; c < kTileCols; ++c) {
      float want = 0.f;
      for (int r = t * kTileRows; r < std::min(rows, (t + 1) * kTileRows); ++r)
        want += float(g[size_t(r) * kTileCols + c]);
      ASSERT_EQ(out[size_t(t * kTileCols + c)], want) << "tile " << t << " column " << c;
    }
  EXPECT_EQ(strata::sim::last_launch_counters().tma_loads, uint64_t(kTiles));
}

// ------------------------------------------------------------------------------- stores
// stmatrix writes a 64 x 16 box (bf16), fence.proxy.async orders it for the async proxy, a
// barrier publishes it, one thread stores it and waits for the read.
template <bool Fence>
__global__ void store_box(const tma::TensorMap* map, int c0, int c1) {
  STRATA_DYNAMIC_SMEM(uint16_t, tile);
  const int l = int(threadIdx.x);
  // four 8x8 matrices: rows 8i..8i+7 of the 32 x 8 ... box rows are 16 bf16 = 32 bytes
  uint32_t r[4];
  for (int i = 0; i < 4; ++i) r[i] = uint32_t(1 + 4 * l + i) | (uint32_t(1001 + 4 * l + i) << 16);
  // matrix i covers box rows 8*(l/8)...: each lane names row l of a 32 x 8 slab in column half w
  const int w = int(threadIdx.x) / 32;
  arch::stmatrix<4, false>(&tile[(l % 32) * 16 + w * 8], r);
  if (Fence) arch::fence_proxy_async();
  __syncthreads();
  if (threadIdx.x == 0) {
    arch::tma_store_2d(map, tile, c0, c1);
    arch::tma_store_commit();
    arch::tma_store_wait_read<0>();
  }
}
TEST_P(Tma, StoreWritesTheInBoundsElementsOfTheBox) {
  const uint64_t cols = 24, rows = 40;
  std::vector<uint16_t> g(cols * rows, 0xBEEF);
  alignas(64) tma::TensorMap map;
  ASSERT_TRUE(tma::encode_tiled(&map, tiled_2d(g.data(), tma::DataType::kBF16, cols, rows, 16, 32,
                                               tma::Swizzle::kNone))
                  .ok());
  ASSERT_TRUE(
      strata::launch(store_box<true>, dim3(1), dim3(64), 16 * 32 * 2, 0, &map, 16, 20).ok());
  // what stmatrix put in the box (non-transposed map), then where the store puts it
  std::vector<uint16_t> box(16 * 32);
  for (int w = 0; w < 2; ++w)
    for (int l = 0; l < 32; ++l)
      for (int i = 0; i < 4; ++i)
        for (int h = 0; h < 2; ++h) {
          const int row = 8 * i + l / 4, col = 2 * (l % 4) + h;  // of matrix i, rows named 8i..
          const uint16_t v = uint16_t(h ? 1001 + 4 * (32 * w + l) + i : 1 + 4 * (32 * w + l) + i);
          box[size_t(row) * 16 + size_t(w * 8 + col)] = v;
        }
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t c = 0; c < cols; ++c) {
      const bool in_box = c >= 16 && r >= 20 && r < 52;
      ASSERT_EQ(g[r * cols + c], in_box ? box[(r - 20) * 16 + (c - 16)] : 0xBEEF) << r << " " << c;
    }
}

// ------------------------------------------------------------------------------- faults
// clang-format off
#define MARK(name) constexpr int name = __LINE__ + 1

// The consumer forgets the wait: it reads the poisoned destination, never the data.
__global__ void skip_the_wait(const tma::TensorMap* map, uint16_t* out) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  auto* bar = reinterpret_cast<uint64_t*>(smem + 2048);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    arch::mbarrier_arrive_expect_tx(bar, 2048);
    arch::tma_load_2d(smem, map, bar, 0, 0);
  }
  __syncthreads();
  std::memcpy(&out[threadIdx.x], smem + 2 * threadIdx.x, 2);  // no mbarrier_wait
}

MARK(kTooFewLine);
__global__ void expect_too_few(const tma::TensorMap* map) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  auto* bar = reinterpret_cast<uint64_t*>(smem + 2048);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    arch::mbarrier_arrive_expect_tx(bar, 1024);  // the box is 2048 bytes
    arch::tma_load_2d(smem, map, bar, 0, 0);
  }
  __syncthreads();
  arch::mbarrier_wait(bar, 0);
}

__global__ void expect_too_many(const tma::TensorMap* map) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  auto* bar = reinterpret_cast<uint64_t*>(smem + 2048);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    arch::mbarrier_arrive_expect_tx(bar, 4096);  // one box of 2048 is all that comes
    arch::tma_load_2d(smem, map, bar, 0, 0);
  }
  __syncthreads();
  arch::mbarrier_wait(bar, 0);
}

MARK(kMisalignedLine);
__global__ void misaligned_box(const tma::TensorMap* map) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  auto* bar = reinterpret_cast<uint64_t*>(smem + 4096);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    arch::mbarrier_arrive_expect_tx(bar, 2048);
    arch::tma_load_2d(smem + 512, map, bar, 0, 0);  // the 128B swizzle needs 1024
  }
}

MARK(kForeignLine);
__global__ void foreign_map(const tma::TensorMap* map) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  auto* bar = reinterpret_cast<uint64_t*>(smem + 2048);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    arch::tma_load_2d(smem, map, bar, 0, 0);
  }
}

MARK(kRankLine);
__global__ void rank_mismatch(const tma::TensorMap* map) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  auto* bar = reinterpret_cast<uint64_t*>(smem + 2048);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(bar, 1);
    arch::tma_load_3d(smem, map, bar, 0, 0, 0);  // a 2D map
  }
}

MARK(kReuseLine);
__global__ void stage_reused_early(const tma::TensorMap* map) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  auto* bar = reinterpret_cast<uint64_t*>(smem + 2048);
  if (threadIdx.x == 0) {
    arch::mbarrier_init(&bar[0], 1);
    arch::mbarrier_init(&bar[1], 1);
    arch::mbarrier_arrive_expect_tx(&bar[0], 2048);
    arch::tma_load_2d(smem, map, &bar[0], 0, 0);
    arch::mbarrier_arrive_expect_tx(&bar[1], 2048);
    arch::tma_load_2d(smem, map, &bar[1], 0, 16);  // the same stage, the first load not landed
  }
}

MARK(kChangedLine);
__global__ void source_changed(const tma::TensorMap* map) {
  STRATA_DYNAMIC_SMEM(uint16_t, tile);
  for (int i = int(threadIdx.x); i < 16 * 32; i += 32) tile[i] = uint16_t(i);
  arch::fence_proxy_async();
  __syncwarp();
  if (threadIdx.x == 0) {
    arch::tma_store_2d(map, tile, 0, 0);
    arch::tma_store_commit();
    tile[0] = 7;  // before the store has read its source
    arch::tma_store_wait_read<0>();
  }
}
// clang-format on

void expect_fault(const Status& s, const char* needle, int line) {
  strata_test::expect_kernel_fault(s, needle, "test_tma.cpp", line);
}

struct Fixture {
  std::vector<uint16_t> g = std::vector<uint16_t>(64 * 64, 0x3f80);  // bf16 1.0
  alignas(64) tma::TensorMap map{};
  alignas(64) tma::TensorMap garbage{};
  Fixture() {
    EXPECT_TRUE(tma::encode_tiled(&map, tiled_2d(g.data(), tma::DataType::kBF16, 64, 64, 64, 16,
                                                 tma::Swizzle::k128B))
                    .ok());
    std::memset(&garbage, 0x5A, sizeof garbage);
  }
};

TEST_P(Tma, SkippedWaitReadsPoisonNotData) {
  Fixture f;
  std::vector<uint16_t> out(32, 0);
  ASSERT_TRUE(
      strata::launch(skip_the_wait, dim3(1), dim3(32), 2048 + 8, 0, &f.map, out.data()).ok());
  for (uint16_t v : out) EXPECT_EQ(v, 0xFFFF);  // NaN: the data never landed for this reader
}
TEST_P(Tma, ExpectTxTooFewBytes) {
  Fixture f;
  expect_fault(strata::launch(expect_too_few, dim3(1), dim3(32), 2048 + 8, 0, &f.map),
               "announced too few bytes", 0);
}
TEST_P(Tma, ExpectTxTooManyBytesDeadlocks) {
  Fixture f;
  const Status s = strata::launch(expect_too_many, dim3(1), dim3(32), 2048 + 8, 0, &f.map);
  expect_fault(s, "deadlock", 0);
  EXPECT_NE(std::string(s.message()).find("tx-count 2048 bytes"), std::string::npos) << s.message();
}
TEST_P(Tma, SwizzledBoxMisaligned) {
  Fixture f;
  expect_fault(strata::launch(misaligned_box, dim3(1), dim3(32), 4096 + 8, 0, &f.map),
               "not 1024-byte aligned", kMisalignedLine + 6);
}
TEST_P(Tma, ForeignTensorMap) {
  Fixture f;
  expect_fault(strata::launch(foreign_map, dim3(1), dim3(32), 2048 + 8, 0, &f.garbage),
               "strata::tma::encode_tiled", kForeignLine + 5);
}
TEST_P(Tma, RankMismatch) {
  Fixture f;
  expect_fault(strata::launch(rank_mismatch, dim3(1), dim3(32), 2048 + 8, 0, &f.map),
               "rank-2 tensor map used by a 3D copy", kRankLine + 5);
}
TEST_P(Tma, StageReusedBeforeTheLoadLanded) {
  Fixture f;
  expect_fault(strata::launch(stage_reused_early, dim3(1), dim3(32), 2048 + 16, 0, &f.map),
               "has not landed", kReuseLine + 9);
}
TEST_P(Tma, StoreAfterStmatrixWithoutProxyFence) {
  std::vector<uint16_t> g(24 * 40);
  alignas(64) tma::TensorMap map;
  ASSERT_TRUE(tma::encode_tiled(&map, tiled_2d(g.data(), tma::DataType::kBF16, 24, 40, 16, 32,
                                               tma::Swizzle::kNone))
                  .ok());
  expect_fault(strata::launch(store_box<false>, dim3(1), dim3(64), 16 * 32 * 2, 0, &map, 0, 0),
               "fence.proxy.async is missing", 0);
}
TEST_P(Tma, StoreSourceChangedBeforeTheRead) {
  std::vector<uint16_t> g(64 * 64);
  alignas(64) tma::TensorMap map;
  ASSERT_TRUE(tma::encode_tiled(&map, tiled_2d(g.data(), tma::DataType::kBF16, 64, 64, 16, 32,
                                               tma::Swizzle::kNone))
                  .ok());
  expect_fault(strata::launch(source_changed, dim3(1), dim3(32), 16 * 32 * 2, 0, &map),
               "changed before", kChangedLine + 6);
}

INSTANTIATE_TEST_SUITE_P(AllSchedules, Tma, ::testing::Range(0, 5));

}  // namespace
