// The access-pattern counters (strata/sim/access_model.hpp): shared-memory wavefronts and bank
// conflicts, global 32-byte sectors, special-function operations. First the model on its own,
// with hand-counted cases; then kernels in a traffic build whose counters must equal them.
#include "common.hpp"

#include <strata/attention/tile_io.cuh>

#include <cstdint>
#include <new>
#include <vector>

static_assert(strata::sim::traffic::kEnabled, "tests/traffic must be compiled as a traffic build");

namespace {

using strata::sim::gmem_request_cost;
using strata::sim::LaneAccess;
using strata::sim::last_launch_counters;
using strata::sim::ldmatrix_cost;
using strata::sim::smem_request_cost;
namespace traffic = strata::sim::traffic;

/// 32 lanes, lane l accessing `bytes` at base + l * stride.
struct Lanes {
  LaneAccess a[32];
  Lanes(uintptr_t base, uintptr_t stride, uint32_t bytes) {
    for (int l = 0; l < 32; ++l) a[l] = {base + uintptr_t(l) * stride, bytes};
  }
};

constexpr uintptr_t kBase = 0x10000;  // 128-byte aligned

// ------------------------------------------------------------------------ the shared model
TEST(SmemModel, FourByteStridesGiveTheirConflictDegree) {
  // stride in words: 1 conflict-free, 2 -> 2-way, 4 -> 4-way, 32 -> 32-way; odd -> free
  const struct {
    uintptr_t stride_words;
    uint32_t wavefronts;
  } cases[] = {{1, 1}, {2, 2}, {4, 4}, {8, 8}, {32, 32}, {64, 32}, {3, 1}, {33, 1}};
  for (const auto& c : cases) {
    const auto cost = smem_request_cost(Lanes(kBase, 4 * c.stride_words, 4).a);
    EXPECT_EQ(cost.wavefronts, c.wavefronts) << c.stride_words;
    EXPECT_EQ(cost.conflicts, c.wavefronts - 1) << c.stride_words;
  }
}

TEST(SmemModel, BroadcastsAndSubWordAccessesShareAWord) {
  EXPECT_EQ(smem_request_cost(Lanes(kBase, 0, 4).a).wavefronts, 1u);  // all lanes, one word
  const auto bytes = smem_request_cost(Lanes(kBase, 1, 1).a);         // 32 bytes: 8 words
  EXPECT_EQ(bytes.wavefronts, 1u);
  EXPECT_EQ(bytes.conflicts, 0u);
  const auto halves = smem_request_cost(Lanes(kBase, 2, 2).a);  // 64 bytes: 16 words
  EXPECT_EQ(halves.wavefronts, 1u);
  // half the warp on word 0, half on word 32 (same bank, different words): 2-way
  Lanes split(kBase, 0, 4);
  for (int l = 16; l < 32; ++l) split.a[l].addr = kBase + 128;
  EXPECT_EQ(smem_request_cost(split.a).wavefronts, 2u);
  EXPECT_EQ(smem_request_cost(split.a).conflicts, 1u);
}

TEST(SmemModel, WideAccessesTakeOneWavefrontPer128Bytes) {
  const auto v2 = smem_request_cost(Lanes(kBase, 8, 8).a);  // 256 bytes, 2 half-warp phases
  EXPECT_EQ(v2.wavefronts, 2u);
  EXPECT_EQ(v2.conflicts, 0u);
  const auto v4 = smem_request_cost(Lanes(kBase, 16, 16).a);  // 512 bytes, 4 quarter-warp phases
  EXPECT_EQ(v4.wavefronts, 4u);
  EXPECT_EQ(v4.conflicts, 0u);
  // 8 bytes every 16: lanes l and l + 8 of a half-warp share banks -> 2 x 2 wavefronts
  const auto v2s = smem_request_cost(Lanes(kBase, 16, 8).a);
  EXPECT_EQ(v2s.wavefronts, 4u);
  EXPECT_EQ(v2s.conflicts, 2u);
  // 16 bytes every 32: lanes l and l + 4 of a quarter-warp share banks -> 4 x 2 wavefronts
  const auto v4s = smem_request_cost(Lanes(kBase, 32, 16).a);
  EXPECT_EQ(v4s.wavefronts, 8u);
  EXPECT_EQ(v4s.conflicts, 4u);
  // inactive lanes cost nothing: only lanes 0..7 of a 16-byte access -> one phase
  Lanes part(kBase, 16, 16);
  for (int l = 8; l < 32; ++l) part.a[l].bytes = 0;
  EXPECT_EQ(smem_request_cost(part.a).wavefronts, 1u);
}

/// Row addresses of an ldmatrix.x4 whose lane l names row l of a tile with `pitch` bytes per row
/// at 16-byte column chunk `chunk(l)`.
template <class Chunk>
std::vector<const unsigned char*> rows(const unsigned char* base, int pitch, Chunk chunk) {
  std::vector<const unsigned char*> r(32);
  for (int l = 0; l < 32; ++l) r[size_t(l)] = base + l * pitch + 16 * chunk(l);
  return r;
}

TEST(SmemModel, LdmatrixRowsByPitchAndSwizzle) {
  const auto* base = reinterpret_cast<const unsigned char*>(kBase);
  const auto col0 = [](int) { return 0; };
  // 64 bf16 per row unpadded (128 bytes): a matrix's 8 rows all sit in banks 0..3 -> 8-way
  const auto flat = ldmatrix_cost(rows(base, 128, col0).data(), 4);
  EXPECT_EQ(flat.wavefronts, 32u);
  EXPECT_EQ(flat.conflicts, 28u);
  // 64 bytes per row: rows alternate between two bank groups -> 4-way
  EXPECT_EQ(ldmatrix_cost(rows(base, 64, col0).data(), 4).wavefronts, 16u);
  // padded by 16 bytes (FlashAttention-1's and our 144-byte rows): conflict-free
  const auto padded = ldmatrix_cost(rows(base, 144, col0).data(), 4);
  EXPECT_EQ(padded.wavefronts, 4u);
  EXPECT_EQ(padded.conflicts, 0u);
  // 128-byte rows with chunk c of row r stored at chunk c ^ (r mod 8): conflict-free
  const auto swz = ldmatrix_cost(rows(base, 128, [](int l) { return (0 ^ l) & 7; }).data(), 4);
  EXPECT_EQ(swz.wavefronts, 4u);
  EXPECT_EQ(swz.conflicts, 0u);
  // .x1 and .x2 take one phase per matrix
  EXPECT_EQ(ldmatrix_cost(rows(base, 144, col0).data(), 1).wavefronts, 1u);
  EXPECT_EQ(ldmatrix_cost(rows(base, 128, col0).data(), 2).wavefronts, 16u);
}

// ------------------------------------------------------------------------ the sector model
TEST(GmemModel, SectorsOfStridedAndMisalignedRequests) {
  const struct {
    uintptr_t base, stride;
    uint32_t bytes, sectors, useful;
  } cases[] = {
      {kBase, 4, 4, 4, 128},       // 128 contiguous bytes
      {kBase + 16, 4, 4, 5, 128},  // the same, 16 bytes off a sector boundary
      {kBase, 8, 4, 8, 128},       // every other float: 50%
      {kBase, 32, 4, 32, 128},     // one float per sector: 12.5%
      {kBase, 128, 4, 32, 128},    // one float per line
      {kBase, 2, 2, 2, 64},        // 32 bf16
      {kBase, 16, 16, 16, 512},    // 16 bytes a lane (cp.async's shape)
      {kBase, 32, 16, 32, 512},    // 16 bytes every 32: 50%
      {kBase, 0, 4, 1, 4},         // all lanes on one word
      {kBase + 30, 0, 4, 2, 4},    // one word across a sector boundary
  };
  for (const auto& c : cases) {
    const auto cost = gmem_request_cost(Lanes(c.base, c.stride, c.bytes).a);
    EXPECT_EQ(cost.sectors, c.sectors) << c.base << " " << c.stride << " " << c.bytes;
    EXPECT_EQ(cost.bytes, c.useful) << c.base << " " << c.stride << " " << c.bytes;
  }
  strata::sim::GmemStats s;
  s.bytes = 128;
  s.sectors = 8;
  EXPECT_DOUBLE_EQ(s.sector_efficiency(), 0.5);
}

// The copy order of a tile's 16-byte chunks (attention/tile_io.cuh) visits every chunk once,
// and at D = 96 with 208-byte rows keeps each 8-lane phase of a cp.async on distinct banks.
TEST(TileChunks, EveryChunkOnceAndConflictFreePhasesAtD96) {
  for (const int nrows : {8, 32, 64, 12}) {
    SCOPED_TRACE(nrows);
    std::vector<int> seen(size_t(nrows) * 12, 0);
    for (int c = 0; c < nrows * 12; ++c) {
      int r = -1, chunk = -1;
      strata::attention::tile_chunk<96>(c, nrows, r, chunk);
      ASSERT_TRUE(r >= 0 && r < nrows && chunk >= 0 && chunk < 12) << c;
      ++seen[size_t(r * 12 + chunk)];
    }
    for (int v : seen) EXPECT_EQ(v, 1);
    if (nrows % 8) continue;
    for (int phase = 0; phase < nrows * 12; phase += 8) {
      LaneAccess lanes[32];
      for (int j = 0; j < 8; ++j) {
        int r, chunk;
        strata::attention::tile_chunk<96>(phase + j, nrows, r, chunk);
        lanes[j] = {kBase + uintptr_t(r) * 208 + uintptr_t(chunk) * 16, 16};
      }
      EXPECT_EQ(smem_request_cost(lanes).conflicts, 0u) << phase;
    }
  }
  int r, chunk;  // other head dims: row by row
  strata::attention::tile_chunk<64>(13, 64, r, chunk);
  EXPECT_EQ(r * 8 + chunk, 13);
}

// --------------------------------------------------------------------------- the kernels
/// Buffers on 128-byte boundaries, as cudaMalloc's are (sector counts depend on alignment).
template <class T>
struct Aligned128 {
  using value_type = T;
  Aligned128() = default;
  template <class U>
  Aligned128(const Aligned128<U>&) {}
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(128)));
  }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(128)); }
  friend bool operator==(const Aligned128&, const Aligned128&) { return true; }
};
template <class T>
using Buffer = std::vector<T, Aligned128<T>>;

struct AccessTest : ::testing::Test {
  strata_test::SimGuard guard;
  void SetUp() override {
    traffic::clear();
    strata::sim::options().access_profile = true;
  }
  void TearDown() override { traffic::clear(); }
};

// Lane l of each warp stores to and loads from s[warp * 32 * stride + l * stride].
__global__ void smem_strided(int stride, float* out) {
  STRATA_DYNAMIC_SMEM(float, s);
  const int t = int(threadIdx.x), l = t % 32, w = t / 32;
  float* mine = s + w * 32 * stride + l * stride;
  *mine = float(t);
  __syncthreads();
  out[t] = *mine;
}

TEST_F(AccessTest, PlainSharedAccessesCountPerWarpRequest) {
  for (const int stride : {1, 2, 4, 32, 3}) {
    SCOPED_TRACE(stride);
    const int threads = 64;
    Buffer<float> out(threads, -1.f);
    traffic::watch(out.data(), out.size() * sizeof(float));
    const strata::Status st =
        strata::launch(smem_strided, dim3(1), dim3(threads),
                       size_t(threads) * size_t(stride) * sizeof(float), 0, stride, out.data());
    ASSERT_TRUE(st.ok()) << st.message();
    for (int t = 0; t < threads; ++t) ASSERT_EQ(out[size_t(t)], float(t));
    const auto c = last_launch_counters();
    const uint64_t way = stride % 2 ? 1 : uint64_t(stride);
    for (const auto* s : {&c.smem_store, &c.smem_load}) {
      EXPECT_EQ(s->requests, 2u);  // one per warp
      EXPECT_EQ(s->bytes, 4u * threads);
      EXPECT_EQ(s->wavefronts, 2 * way);
      EXPECT_EQ(s->conflicts, 2 * (way - 1));
    }
    EXPECT_EQ(c.gmem_store.requests, 2u);
    EXPECT_EQ(c.gmem_store.sectors, 8u);
    EXPECT_EQ(c.gmem_store.bytes, 4u * threads);
    EXPECT_EQ(c.gmem_load.requests, 0u);
    traffic::clear();
  }
}

TEST_F(AccessTest, WithoutTheProfileOnlyBytesAndLdmatrixAreCounted) {
  strata::sim::options().access_profile = false;
  Buffer<float> out(32);
  traffic::watch(out.data(), out.size() * sizeof(float));
  ASSERT_TRUE(
      strata::launch(smem_strided, dim3(1), dim3(32), 32 * 2 * sizeof(float), 0, 2, out.data())
          .ok());
  const auto c = last_launch_counters();
  EXPECT_EQ(c.global_store_bytes, 128u);
  EXPECT_EQ(c.smem_load.requests + c.smem_store.requests + c.gmem_store.requests, 0u);
}

// Every lane reads n words of a row-major [n][32] tile, one row per iteration (a loop: the same
// instruction n times), and writes the sum.
__global__ void smem_rows(int n, float* out) {
  STRATA_DYNAMIC_SMEM(float, s);
  const int l = int(threadIdx.x);
  for (int r = 0; r < n; ++r) s[r * 32 + l] = float(r);
  __syncthreads();
  float acc = 0.f;
  for (int r = 0; r < n; ++r) acc += s[r * 32 + l];
  out[l] = acc;
}

TEST_F(AccessTest, ALoopIsOneRequestPerIteration) {
  const int n = 7;
  Buffer<float> out(32);
  traffic::watch(out.data(), out.size() * sizeof(float));
  ASSERT_TRUE(
      strata::launch(smem_rows, dim3(3), dim3(32), n * 32 * sizeof(float), 0, n, out.data()).ok());
  EXPECT_EQ(out[5], float(n * (n - 1) / 2));
  const auto c = last_launch_counters();
  EXPECT_EQ(c.smem_store.requests, 3u * n);  // three blocks
  EXPECT_EQ(c.smem_store.wavefronts, 3u * n);
  EXPECT_EQ(c.smem_load.requests, 3u * n);
  EXPECT_EQ(c.smem_load.wavefronts, 3u * n);
  EXPECT_EQ(c.smem_load.conflicts, 0u);
  EXPECT_EQ(c.gmem_store.requests, 3u);
  EXPECT_EQ(c.gmem_store.sectors, 12u);
}

// ldmatrix.x4 of a tile whose rows are `pitch` bytes apart, lane l naming row l at chunk
// (l mod 8) ^ 0 when `swizzle`, else chunk 0.
__global__ void ldsm_tile(int pitch, bool swizzle, uint32_t* out) {
  STRATA_DYNAMIC_SMEM(unsigned char, s);
  const int l = int(threadIdx.x);
  for (int i = l; i < 32 * pitch / 4; i += 32) reinterpret_cast<uint32_t*>(s)[i] = uint32_t(i);
  __syncthreads();
  uint32_t r[4];
  strata::arch::ldmatrix_x4(r, s + l * pitch + (swizzle ? 16 * (l & 7) : 0));
  out[l] = r[0] ^ r[1] ^ r[2] ^ r[3];
}

TEST_F(AccessTest, LdmatrixConflictsByLayout) {
  const struct {
    int pitch;
    bool swizzle;
    uint64_t wavefronts;
  } cases[] = {{128, false, 32}, {144, false, 4}, {128, true, 4}, {64, false, 16}};
  for (const auto& k : cases) {
    SCOPED_TRACE(k.pitch);
    Buffer<uint32_t> out(32);
    ASSERT_TRUE(strata::launch(ldsm_tile, dim3(1), dim3(32), size_t(32 * k.pitch), 0, k.pitch,
                               k.swizzle, out.data())
                    .ok());
    const auto c = last_launch_counters();
    // the plain fill loop: 32 * pitch / 4 words, conflict-free rows of 128 bytes
    EXPECT_EQ(c.smem_store.requests, uint64_t(k.pitch) / 4);
    EXPECT_EQ(c.smem_store.conflicts, 0u);
    // the ldmatrix: one request of 512 bytes
    EXPECT_EQ(c.ldmatrix, 1u);
    EXPECT_EQ(c.smem_load.requests, 1u);
    EXPECT_EQ(c.smem_load.bytes, 512u);
    EXPECT_EQ(c.smem_load.wavefronts, k.wavefronts);
    EXPECT_EQ(c.smem_load.conflicts, k.wavefronts - 4);
  }
}

// Thread t copies 16 bytes from x + t * chunk_stride (in 16-byte chunks) to shared memory at
// chunk t, by cp.async, and writes one word back.
__global__ void cp_async_gather(const uint4* x, int chunk_stride, uint32_t* out) {
  STRATA_DYNAMIC_SMEM(uint4, s);
  const int t = int(threadIdx.x);
  strata::arch::cp_async<16>(s + t, x + t * chunk_stride);
  strata::arch::cp_async_wait_all();
  __syncthreads();
  out[t] = s[t].x;
}

TEST_F(AccessTest, CpAsyncSectorsAndSharedWavefronts) {
  for (const int chunk_stride : {1, 2, 4}) {
    SCOPED_TRACE(chunk_stride);
    const int threads = 64;
    Buffer<uint4> x(size_t(threads * chunk_stride));
    for (size_t i = 0; i < x.size(); ++i) x[i] = make_uint4(unsigned(i), 0, 0, 0);
    Buffer<uint32_t> out(threads);
    traffic::watch(x.data(), x.size() * sizeof(uint4));
    ASSERT_TRUE(strata::launch(cp_async_gather, dim3(1), dim3(threads), threads * sizeof(uint4), 0,
                               x.data(), chunk_stride, out.data())
                    .ok());
    EXPECT_EQ(out[9], unsigned(9 * chunk_stride));
    const auto c = last_launch_counters();
    EXPECT_EQ(c.gmem_cp_async.requests, 2u);
    EXPECT_EQ(c.gmem_cp_async.bytes, 16u * threads);
    // 16 bytes per lane: two lanes per sector at stride 1, one per sector otherwise
    EXPECT_EQ(c.gmem_cp_async.sectors, chunk_stride == 1 ? 32u : 64u);
    EXPECT_DOUBLE_EQ(c.gmem_cp_async.sector_efficiency(), chunk_stride == 1 ? 1.0 : 0.5);
    EXPECT_EQ(c.global_load_bytes, 16u * threads);
    // the shared side: 512 contiguous bytes per warp, four conflict-free wavefronts
    EXPECT_EQ(c.smem_store.requests, 2u);
    EXPECT_EQ(c.smem_store.wavefronts, 8u);
    EXPECT_EQ(c.smem_store.conflicts, 0u);
    EXPECT_EQ(c.gmem_load.requests, 0u);  // the copy itself is not a plain load
    traffic::clear();
  }
}

// y[i] = x[stride * i]: a strided global gather.
__global__ void gather(const float* x, int stride, float* y) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  y[i] = x[i * stride];
}

TEST_F(AccessTest, StridedGlobalLoadsWasteSectors) {
  for (const int stride : {1, 2, 8, 32}) {
    SCOPED_TRACE(stride);
    const int n = 128;
    Buffer<float> x(size_t(n * stride), 1.f), y(n);
    traffic::watch(x.data(), x.size() * sizeof(float));
    traffic::watch(y.data(), y.size() * sizeof(float));
    ASSERT_TRUE(strata::launch(gather, dim3(2), dim3(64), 0, 0, x.data(), stride, y.data()).ok());
    const auto c = last_launch_counters();
    EXPECT_EQ(c.gmem_load.requests, 4u);
    EXPECT_EQ(c.gmem_load.bytes, 4u * n);
    EXPECT_EQ(c.gmem_load.sectors, 4u * uint64_t(std::min(32, 4 * stride)));
    EXPECT_EQ(c.gmem_store.sectors, 16u);
    EXPECT_DOUBLE_EQ(c.gmem_store.sector_efficiency(), 1.0);
    traffic::clear();
  }
}

// Special-function operations through strata/arch/sfu.hpp, per thread.
__global__ void sfu_mix(const float* x, float* y) {
  const int t = int(blockIdx.x * blockDim.x + threadIdx.x);
  float s, c;
  strata::arch::sincospi(x[t], s, c);                           // 2
  y[t] = strata::arch::ex2(x[t]) + strata::arch::rsqrt_rn(2.f)  // 1 + 2
         + s * c + strata::core::sigmoid(x[t])                  // + 1
         + strata::arch::ex2_ftz(x[t]);                         // + 1
}

TEST_F(AccessTest, SfuOperationsPerThread) {
  Buffer<float> x(4 * 96, 0.25f), y(4 * 96);
  // every worker OS thread counts into the blocks it runs: the same total with 1 and 3 workers
  for (const unsigned workers : {1u, 3u}) {
    strata::sim::set_workers(workers);
    ASSERT_TRUE(strata::launch(sfu_mix, dim3(4), dim3(96), 0, 0, x.data(), y.data()).ok());
    EXPECT_EQ(last_launch_counters().sfu, 4u * 96 * 7) << workers;
  }
}

}  // namespace
