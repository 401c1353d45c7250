// wgmma in the simulator (strata/arch/wgmma.hpp, sim/wgmma.hpp): SS and RS ops over canonical
// tiles (strata/arch/wgmma_layout.hpp) against an fp64 product for every N the kernels use, chains
// over K with commit / wait, and each asynchronous rule broken by a kernel that the simulator
// stops with a fault naming its line.
#include "common.hpp"

#include <cmath>
#include <cstring>
#include <string>

namespace {

using strata::Status;
using strata::StatusCode;
namespace arch = strata::arch;
namespace L = strata::arch::wgmma;

constexpr int kK = 64;  // K of a chain: four k16 steps

uint16_t to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float from_bf16(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

/// Operands in global memory as row-major bf16: A (64 x kK), B as N rows of kK (K-major, a K
/// tile) or as kK rows of N (MN-major, a V tile).
struct Problem {
  int n;
  bool b_mn;  // B stored MN-major (V: K rows of N), read with trans-b = 1
  std::vector<uint16_t> a, b;
  std::vector<double> want;  // 64 x n
  Problem(int n_, bool b_mn_, uint64_t seed) : n(n_), b_mn(b_mn_), a(64 * kK), b(size_t(n_) * kK) {
    strata_test::Rng rng(seed);
    for (auto& x : a) x = to_bf16(rng.uniform());
    for (auto& x : b) x = to_bf16(rng.uniform());
    want.assign(size_t(64) * n, 0.0);
    for (int m = 0; m < 64; ++m)
      for (int j = 0; j < n; ++j)
        for (int k = 0; k < kK; ++k)
          want[size_t(m) * n + j] +=
              double(from_bf16(a[size_t(m) * kK + k])) * double(from_bf16(bval(j, k)));
  }
  uint16_t bval(int j, int k) const { return b_mn ? b[size_t(k) * n + j] : b[size_t(j) * kK + k]; }
};

L::Tile a_tile() {
  return L::Tile{L::Major::kK, L::SmemSwizzle::k128B, 64, kK, L::AtomOrder::kMNFirst};
}
/// B's tile: K-major (a K tile, 128B swizzle), or MN-major (a V tile as FA3 stores it) with the
/// widest swizzle whose atom (W/2 elements of N) divides N: 128B at d = 64, 128; 64B at d = 96.
template <int N>
L::Tile b_tile(bool mn) {
  constexpr L::SmemSwizzle mn_swizzle = N % 64 == 0   ? L::SmemSwizzle::k128B
                                        : N % 32 == 0 ? L::SmemSwizzle::k64B
                                                      : L::SmemSwizzle::k32B;
  return mn ? L::Tile{L::Major::kMN, mn_swizzle, N, kK, L::AtomOrder::kKFirst}
            : L::Tile{L::Major::kK, L::SmemSwizzle::k128B, N, kK, L::AtomOrder::kMNFirst};
}
/// Byte of element (row, k) of a tile based at shared address `base`.
uint32_t at(const L::Tile& t, uint32_t base, int row, int k) {
  return L::swizzle_address(base + L::tile_offset(t, row, k), t.swizzle);
}

/// One warpgroup: the tiles are copied into dynamic shared memory in their canonical layouts,
/// then D = A * B over four k16 steps, SS (A from shared memory) or RS (A from registers, as
/// FA3's P), one commit, one wait.
template <int N, bool Rs, bool BMn>
__global__ void __launch_bounds__(128, 1) gemm(const uint16_t* a, const uint16_t* b, float* d) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  const L::Tile ta = a_tile(), tb = b_tile<N>(BMn);
  const uint32_t a_base = 0, b_base = 16384;  // both 1024-byte aligned
  for (int i = int(threadIdx.x); i < 64 * kK; i += 128)
    std::memcpy(smem + at(ta, a_base, i / kK, i % kK), &a[i], 2);
  for (int i = int(threadIdx.x); i < N * kK; i += 128) {
    const int j = BMn ? i % N : i / kK, k = BMn ? i / N : i % kK;  // global row-major order
    std::memcpy(smem + at(tb, b_base, j, k), &b[i], 2);
  }
  arch::fence_proxy_async();
  __syncthreads();
  arch::WgmmaAcc<N> acc;
  for (int i = 0; i < N / 2; ++i) acc.r[i] = 0.f;
  arch::wgmma_fence();
  for (int s = 0; s < kK / 16; ++s) {
    if constexpr (Rs) {
      uint32_t ar[4];
      for (int r = 0; r < 4; ++r) {
        uint16_t lo, hi;
        const int t = int(threadIdx.x);
        lo = a[L::a_row(t, 2 * r) * kK + 16 * s + L::a_col(t, 2 * r)];
        hi = a[L::a_row(t, 2 * r + 1) * kK + 16 * s + L::a_col(t, 2 * r + 1)];
        ar[r] = uint32_t(lo) | uint32_t(hi) << 16;
      }
      arch::wgmma_rs<N, __nv_bfloat16, BMn ? 1 : 0>(acc, ar, L::tile_desc(tb, b_base, s), s > 0);
      arch::wgmma_commit();  // RS: ar dies with this iteration, so wait before it does
      arch::wgmma_wait<0>();
      arch::wgmma_fence();
    } else {
      arch::wgmma_ss<N, __nv_bfloat16, 0, BMn ? 1 : 0>(acc, L::tile_desc(ta, a_base, s),
                                                       L::tile_desc(tb, b_base, s), s > 0);
    }
  }
  arch::wgmma_commit();
  arch::wgmma_wait<0>();
  for (int v = 0; v < N / 2; ++v)
    d[L::acc_row(int(threadIdx.x), v) * N + L::acc_col(int(threadIdx.x), v)] = acc.r[v];
}

template <int N, bool Rs, bool BMn>
void check_gemm(uint64_t seed) {
  Problem p(N, BMn, seed);
  std::vector<float> d(size_t(64) * N, -7.f);
  const Status s = strata::launch(gemm<N, Rs, BMn>, dim3(1), dim3(128), 16384 + size_t(N) * kK * 2,
                                  0, p.a.data(), p.b.data(), d.data());
  ASSERT_TRUE(s.ok()) << s.message();
  double worst = 0;
  for (size_t i = 0; i < d.size(); ++i)
    worst = std::max(worst, std::fabs(double(d[i]) - p.want[i]));
  // exact products, f32 rounding of each k16 step's sum: a few ulps of the magnitudes involved
  EXPECT_LT(worst, 1e-4) << "N " << N << (Rs ? " RS" : " SS")
                         << (BMn ? " B MN-major" : " B K-major");
}

class Wgmma : public strata_test::ScheduleTest {};

TEST_P(Wgmma, SsAndRsAgainstFp64ForTheKernelsN) {
  check_gemm<64, false, false>(1);
  check_gemm<128, false, false>(2);
  check_gemm<176, false, false>(3);
  check_gemm<64, true, true>(4);   // P V at d = 64
  check_gemm<128, true, true>(5);  // P V at d = 128
  check_gemm<96, true, true>(6);
  check_gemm<256, false, true>(7);
  const auto c = strata::sim::last_launch_counters();
  EXPECT_EQ(c.wgmma_collectives, 4u * 4u);  // four warps, four k16 steps
  EXPECT_EQ(c.wgmma_flops, uint64_t(2) * 64 * 256 * kK);
}

// The shared-window address wgmma descriptors are decoded in: in the simulator, the offset into
// the launch's dynamic shared memory (arch::smem_u32, what kernels build descriptors from).
__global__ void smem_addresses(uint32_t* out) {
  STRATA_DYNAMIC_SMEM(unsigned char, smem);
  out[threadIdx.x] = arch::smem_u32(smem + 16 * threadIdx.x);
}
TEST_P(Wgmma, SharedAddressesAreArenaOffsets) {
  std::vector<uint32_t> out(32);
  ASSERT_TRUE(strata::launch(smem_addresses, dim3(1), dim3(32), 1024, 0, out.data()).ok());
  for (uint32_t i = 0; i < 32; ++i) EXPECT_EQ(out[i], 16 * i);
}

// ------------------------------------------------------------------------------- faults
// clang-format off
#define MARK(name) constexpr int name = __LINE__ + 1

/// A warpgroup's setup: tiles of zeros in shared memory, descriptors for step 0.
#define STRATA_WGMMA_SETUP()                                                   \
  STRATA_DYNAMIC_SMEM(unsigned char, smem);                                    \
  for (int i = int(threadIdx.x); i < 32768; i += 128) smem[i] = 0;             \
  __syncthreads();                                                             \
  const uint64_t da = L::tile_desc(a_tile(), 0, 0);                           \
  [[maybe_unused]] const uint64_t db = L::tile_desc(b_tile<64>(false), 16384, 0)

MARK(kNoFenceLine);
__global__ void no_fence(float* out) {
  STRATA_WGMMA_SETUP();
  arch::WgmmaAcc<64> acc;
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, false);
  arch::wgmma_commit();
  arch::wgmma_wait<0>();
  out[threadIdx.x] = acc.r[0];
}

MARK(kNoFenceAgainLine);
__global__ void no_fence_after_wait(float* out) {
  STRATA_WGMMA_SETUP();
  arch::WgmmaAcc<64> acc;
  arch::wgmma_fence();
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, false);
  arch::wgmma_commit();
  arch::wgmma_wait<0>();
  acc.r[0] *= 2.f;                                          // rescale, as the softmax does
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, true);     // no fence since the wait
  arch::wgmma_commit();
  arch::wgmma_wait<0>();
  out[threadIdx.x] = acc.r[0];
}

__global__ void read_before_wait(float* out) {
  STRATA_WGMMA_SETUP();
  arch::WgmmaAcc<64> acc;
  arch::wgmma_fence();
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, false);
  arch::wgmma_commit();
  out[threadIdx.x] = acc.r[0];  // in flight: NaN
  arch::wgmma_wait<0>();
}

MARK(kWriteInFlightLine);
__global__ void write_in_flight(float* out) {
  STRATA_WGMMA_SETUP();
  arch::WgmmaAcc<64> acc;
  arch::wgmma_fence();
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, false);
  arch::wgmma_commit();
  acc.r[3] = 0.f;  // while the op is in flight
  arch::wgmma_wait<0>();
  out[threadIdx.x] = acc.r[0];
}

MARK(kOperandChangedLine);
__global__ void operand_changed(float* out) {
  STRATA_WGMMA_SETUP();
  arch::WgmmaAcc<64> acc;
  arch::wgmma_fence();
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, false);
  arch::wgmma_commit();
  if (threadIdx.x == 0) smem[16384 + 2] = 1;  // B changes before the wait
  __syncthreads();
  arch::wgmma_wait<0>();
  out[threadIdx.x] = acc.r[0];
}

MARK(kTmaIntoOperandLine);
__global__ void tma_into_operand(const strata::tma::TensorMap* map, int dst, float* out) {
  STRATA_WGMMA_SETUP();
  auto* bar = reinterpret_cast<uint64_t*>(smem + 32768);
  if (threadIdx.x == 0) arch::mbarrier_init(bar, 1);
  __syncthreads();
  arch::WgmmaAcc<64> acc;
  arch::wgmma_fence();
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, false);
  arch::wgmma_commit();
  if (threadIdx.x == 0) {
    arch::mbarrier_arrive_expect_tx(bar, 8192);
    arch::tma_load_2d(smem + dst, map, bar, 0, 0);  // 16384: refills B's stage under the op
  }
  arch::wgmma_wait<0>();
  arch::mbarrier_wait(bar, 0);
  out[threadIdx.x] = acc.r[0];
}

MARK(kDisagreeLine);
__global__ void warps_disagree(float* out) {
  STRATA_WGMMA_SETUP();
  arch::WgmmaAcc<64> acc;
  arch::wgmma_fence();
  const uint64_t mine = threadIdx.x < 32 ? db : L::tile_desc(b_tile<64>(false), 16384, 1);
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, mine, false);
  arch::wgmma_commit();
  arch::wgmma_wait<0>();
  out[threadIdx.x] = acc.r[0];
}

MARK(kDiesLine);
__global__ void dies_in_flight(float* out) {
  STRATA_WGMMA_SETUP();
  {
    arch::WgmmaAcc<64> acc;
    arch::wgmma_fence();
    arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, false);
    arch::wgmma_commit();
  }  // no wait
  out[threadIdx.x] = 1.f;
}

MARK(kPastSmemLine);
__global__ void desc_past_smem(float* out) {
  STRATA_WGMMA_SETUP();
  arch::WgmmaAcc<64> acc;
  arch::wgmma_fence();
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, L::tile_desc(b_tile<64>(false), 65536, 0), false);
  arch::wgmma_commit();
  arch::wgmma_wait<0>();
  out[threadIdx.x] = acc.r[0];
}

MARK(kStmatrixLine);
__global__ void stmatrix_operand_without_proxy_fence(float* out) {
  STRATA_WGMMA_SETUP();
  const uint32_t r[4] = {0, 0, 0, 0};
  arch::stmatrix<4, false>(smem + 16384 + 64 * (threadIdx.x % 32) + 2048 * (threadIdx.x / 32), r);
  __syncthreads();  // but no fence.proxy.async
  arch::WgmmaAcc<64> acc;
  arch::wgmma_fence();
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, false);
  arch::wgmma_commit();
  arch::wgmma_wait<0>();
  out[threadIdx.x] = acc.r[0];
}

MARK(kStmatrixInFlightLine);
__global__ void stmatrix_into_operand_in_flight(float* out) {
  STRATA_WGMMA_SETUP();
  arch::WgmmaAcc<64> acc;
  arch::wgmma_fence();
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, false);
  arch::wgmma_commit();
  const uint32_t r[4] = {0, 0, 0, 0};  // B's rows, rewritten before the wait
  arch::stmatrix<4, false>(smem + 16384 + 64 * (threadIdx.x % 32) + 2048 * (threadIdx.x / 32), r);
  arch::wgmma_wait<0>();
  out[threadIdx.x] = acc.r[0];
}

// A generic 16-byte store (arch::store16: st.shared) into an operand, read by wgmma without or
// with the writer's fence.proxy.async: the kernels' zeroing of ragged rows and ResFormer's V mix.
MARK(kStore16Line);
__global__ void store16_operand(bool fence, float* out) {
  STRATA_WGMMA_SETUP();
  for (int c = int(threadIdx.x); c < 512; c += 128) arch::store16(smem + 16384 + 16 * c, uint4{});
  if (fence) arch::fence_proxy_async();
  __syncthreads();
  arch::WgmmaAcc<64> acc;
  arch::wgmma_fence();
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, false);
  arch::wgmma_commit();
  arch::wgmma_wait<0>();
  out[threadIdx.x] = acc.r[0];
}

MARK(kStore16InFlightLine);
__global__ void store16_into_operand_in_flight(float* out) {
  STRATA_WGMMA_SETUP();
  arch::WgmmaAcc<64> acc;
  arch::wgmma_fence();
  arch::wgmma_ss<64, __nv_bfloat16>(acc, da, db, false);
  arch::wgmma_commit();
  arch::store16(smem + 16384 + 16 * threadIdx.x, uint4{});  // B, before the wait
  arch::wgmma_wait<0>();
  out[threadIdx.x] = acc.r[0];
}

MARK(kStore16UnlandedLine);
__global__ void store16_into_unlanded_tma(const strata::tma::TensorMap* map, float* out) {
  STRATA_WGMMA_SETUP();
  (void)da;
  auto* bar = reinterpret_cast<uint64_t*>(smem + 32768);
  if (threadIdx.x == 0) arch::mbarrier_init(bar, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    arch::mbarrier_arrive_expect_tx(bar, 8192);
    arch::tma_load_2d(smem, map, bar, 0, 0);
    arch::store16(smem + 4096, uint4{});  // before the wait: the landing would overwrite it
    arch::mbarrier_wait(bar, 0);
  }
  out[threadIdx.x] = 0.f;
}
// clang-format on

void expect_fault(const Status& s, const char* needle, int line) {
  strata_test::expect_kernel_fault(s, needle, "test_wgmma.cpp", line);
}

std::vector<float> g_out(128);
constexpr size_t kSmem = 32768 + 16;

TEST_P(Wgmma, NoFenceBeforeTheFirst) {
  expect_fault(strata::launch(no_fence, dim3(1), dim3(128), kSmem, 0, g_out.data()),
               "no wgmma.fence before it", kNoFenceLine + 3);
}
TEST_P(Wgmma, NoFenceAfterTouchingTheAccumulators) {
  expect_fault(strata::launch(no_fence_after_wait, dim3(1), dim3(128), kSmem, 0, g_out.data()),
               "since this thread's last wgmma.wait_group", kNoFenceAgainLine + 8);
}
TEST_P(Wgmma, AccumulatorsReadBeforeTheWaitAreNaN) {
  ASSERT_TRUE(strata::launch(read_before_wait, dim3(1), dim3(128), kSmem, 0, g_out.data()).ok());
  for (float v : g_out) EXPECT_TRUE(std::isnan(v));
}
TEST_P(Wgmma, AccumulatorsWrittenInFlight) {
  expect_fault(strata::launch(write_in_flight, dim3(1), dim3(128), kSmem, 0, g_out.data()),
               "written while it was in flight", kWriteInFlightLine + 7);
}
TEST_P(Wgmma, SharedOperandChangedBeforeTheWait) {
  expect_fault(strata::launch(operand_changed, dim3(1), dim3(128), kSmem, 0, g_out.data()),
               "changed before its wgmma.wait_group", kOperandChangedLine + 8);
}
strata::tma::TensorMap* tile_map_64x64(std::vector<uint16_t>& g) {
  alignas(64) static strata::tma::TensorMap map;
  strata::tma::Tiled t;
  t.dtype = strata::tma::DataType::kBF16;
  t.rank = 2;
  t.global_address = g.data();
  t.global_dim[0] = 64;
  t.global_dim[1] = 64;
  t.global_stride[0] = 128;
  t.box_dim[0] = 64;
  t.box_dim[1] = 64;
  t.swizzle = strata::tma::Swizzle::k128B;
  EXPECT_TRUE(strata::tma::encode_tiled(&map, t).ok());
  return &map;
}
// A stage between an in-flight SS op's A (bytes 0..8191) and B (16384..24575) is not read by it:
// a pipeline may refill it (the sm_90 forward's K stage 0 lies between Q and K stage 1).
TEST_P(Wgmma, TmaLoadBetweenTheOperandsOfAnOpInFlight) {
  std::vector<uint16_t> g(64 * 64, 0);
  const strata::Status s = strata::launch(tma_into_operand, dim3(1), dim3(128), kSmem + 16, 0,
                                          tile_map_64x64(g), 8192, g_out.data());
  EXPECT_TRUE(s.ok()) << s.message();
}
TEST_P(Wgmma, TmaLoadIntoAnOperandInFlight) {
  std::vector<uint16_t> g(64 * 64);
  expect_fault(strata::launch(tma_into_operand, dim3(1), dim3(128), kSmem + 16, 0,
                              tile_map_64x64(g), 16384, g_out.data()),
               "still reads it", kTmaIntoOperandLine + 11);
  expect_fault(strata::launch(tma_into_operand, dim3(1), dim3(128), kSmem + 16, 0,
                              tile_map_64x64(g), 0, g_out.data()),
               "still reads it", kTmaIntoOperandLine + 11);  // into A
}
TEST_P(Wgmma, WarpsOfTheWarpgroupDisagree) {
  expect_fault(strata::launch(warps_disagree, dim3(1), dim3(128), kSmem, 0, g_out.data()),
               "differs from its warpgroup's first warp's", kDisagreeLine + 5);
}
TEST_P(Wgmma, AccumulatorsDieInFlight) {
  expect_fault(strata::launch(dies_in_flight, dim3(1), dim3(128), kSmem, 0, g_out.data()),
               "went out of scope", kDiesLine + 5);
}
TEST_P(Wgmma, DescriptorPastDynamicSharedMemory) {
  expect_fault(strata::launch(desc_past_smem, dim3(1), dim3(128), kSmem, 0, g_out.data()),
               "past the launch's", kPastSmemLine + 4);
}
TEST_P(Wgmma, StmatrixOperandWithoutProxyFence) {
  expect_fault(strata::launch(stmatrix_operand_without_proxy_fence, dim3(1), dim3(128), kSmem, 0,
                              g_out.data()),
               "fence.proxy.async is missing", kStmatrixLine + 7);
}

TEST_P(Wgmma, StmatrixIntoAnOperandInFlight) {
  expect_fault(
      strata::launch(stmatrix_into_operand_in_flight, dim3(1), dim3(128), kSmem, 0, g_out.data()),
      "still reads it", kStmatrixInFlightLine + 7);
}

TEST_P(Wgmma, Store16OperandWithoutProxyFence) {
  expect_fault(strata::launch(store16_operand, dim3(1), dim3(128), kSmem, 0, false, g_out.data()),
               "fence.proxy.async is missing", kStore16Line + 7);
  const Status s =
      strata::launch(store16_operand, dim3(1), dim3(128), kSmem, 0, true, g_out.data());
  EXPECT_TRUE(s.ok()) << s.message();
}

TEST_P(Wgmma, Store16IntoAnOperandInFlight) {
  expect_fault(
      strata::launch(store16_into_operand_in_flight, dim3(1), dim3(128), kSmem, 0, g_out.data()),
      "still reads it", kStore16InFlightLine + 6);
}

TEST_P(Wgmma, Store16IntoAnUnlandedTmaDestination) {
  std::vector<uint16_t> g(64 * 64, 0);
  expect_fault(strata::launch(store16_into_unlanded_tma, dim3(1), dim3(128), kSmem + 16, 0,
                              tile_map_64x64(g), g_out.data()),
               "has not landed", kStore16UnlandedLine + 9);
}

INSTANTIATE_TEST_SUITE_P(AllSchedules, Wgmma, ::testing::Range(0, 5));

}  // namespace
