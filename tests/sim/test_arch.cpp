// The arch ops and warp built-ins against independent statements of their semantics: the mma
// fragment maps against CuTe's SM80 MMA traits, the emulated mma against an fp64 product whose
// fragments are placed by those traits, ldmatrix and cp.async against the PTX ISA's words.
#include "common.hpp"

#include <algorithm>
#include <cstring>

namespace {

using strata_test::Rng;

// ---------------------------------------------------------------- CuTe's layouts, evaluated
// cute/atom/mma_traits_sm80.hpp, SM80_16x8x16_F32{BF16,F16}..._TN:
//   ALayout = Layout<Shape<Shape<_4,_8>,Shape<_2,_2,_2>>,
//   Stride<Stride<_32,_1>,Stride<_16,_8,_128>>> BLayout = Layout<Shape<Shape<_4,_8>,Shape<_2,_2>>,
//   Stride<Stride<_16,_1>,Stride<_8,_64>>> CLayout = Layout<Shape<Shape<_4,_8>,Shape<_2,_2>>,
//   Stride<Stride<_32,_1>,Stride<_16,_8>>>
// (thread, value) -> column-major index into (M,K) = (16,16), (N,K) = (8,16), (M,N) = (16,8).
int cute_eval(int t, int v, const int* vshape, const int* vstride, int nv, int tstride0) {
  int idx = (t % 4) * tstride0 + (t / 4) * 1;
  for (int i = 0; i < nv; ++i) {
    idx += (v % vshape[i]) * vstride[i];
    v /= vshape[i];
  }
  return idx;
}
void cute_a(int lane, int v, int& m, int& k) {
  const int vs[3] = {2, 2, 2}, vd[3] = {16, 8, 128};
  const int idx = cute_eval(lane, v, vs, vd, 3, 32);
  m = idx % 16;
  k = idx / 16;
}
void cute_b(int lane, int v, int& k, int& n) {
  const int vs[2] = {2, 2}, vd[2] = {8, 64};
  const int idx = cute_eval(lane, v, vs, vd, 2, 16);
  n = idx % 8;
  k = idx / 8;
}
void cute_c(int lane, int v, int& m, int& n) {
  const int vs[2] = {2, 2}, vd[2] = {16, 8};
  const int idx = cute_eval(lane, v, vs, vd, 2, 32);
  m = idx % 16;
  n = idx / 16;
}

TEST(Fragments, MatchCuteSm80MmaTraitsForAllLanes) {
  for (int lane = 0; lane < 32; ++lane) {
    for (int v = 0; v < 8; ++v) {
      int m, k, m2, k2;
      strata::arch::mma_a_coord(lane, v, m, k);
      cute_a(lane, v, m2, k2);
      EXPECT_EQ(m, m2) << lane << " " << v;
      EXPECT_EQ(k, k2) << lane << " " << v;
    }
    for (int v = 0; v < 4; ++v) {
      int k, n, k2, n2, m, m2;
      strata::arch::mma_b_coord(lane, v, k, n);
      cute_b(lane, v, k2, n2);
      EXPECT_EQ(k, k2);
      EXPECT_EQ(n, n2);
      strata::arch::mma_c_coord(lane, v, m, n);
      cute_c(lane, v, m2, n2);
      EXPECT_EQ(m, m2);
      EXPECT_EQ(n, n2);
    }
  }
}

// ------------------------------------------------------------------------ emulated mma
// Each lane packs its registers from the whole matrices with CuTe's maps (not the library's).
struct MmaMaps {
  int a[32][8][2], b[32][4][2], c[32][4][2];
};
MmaMaps cute_maps() {
  MmaMaps M{};
  for (int l = 0; l < 32; ++l) {
    for (int v = 0; v < 8; ++v) cute_a(l, v, M.a[l][v][0], M.a[l][v][1]);
    for (int v = 0; v < 4; ++v) {
      cute_b(l, v, M.b[l][v][0], M.b[l][v][1]);
      cute_c(l, v, M.c[l][v][0], M.c[l][v][1]);
    }
  }
  return M;
}

template <class T>
__global__ void mma_probe(const T* A, const T* B, const float* C, float* D, const MmaMaps* maps) {
  const int lane = int(threadIdx.x);
  uint32_t a[4], b[2];
  float c[4], d[4];
  auto bits = [](T x) {
    uint16_t u;
    std::memcpy(&u, &x, 2);
    return uint32_t(u);
  };
  for (int r = 0; r < 4; ++r)
    a[r] = bits(A[maps->a[lane][2 * r][0] * 16 + maps->a[lane][2 * r][1]]) |
           bits(A[maps->a[lane][2 * r + 1][0] * 16 + maps->a[lane][2 * r + 1][1]]) << 16;
  for (int r = 0; r < 2; ++r)
    b[r] = bits(B[maps->b[lane][2 * r][0] * 8 + maps->b[lane][2 * r][1]]) |
           bits(B[maps->b[lane][2 * r + 1][0] * 8 + maps->b[lane][2 * r + 1][1]]) << 16;
  for (int r = 0; r < 4; ++r) c[r] = C[maps->c[lane][r][0] * 8 + maps->c[lane][r][1]];
  strata::arch::mma_m16n8k16<T>(d, a, b, c);
  for (int r = 0; r < 4; ++r) D[maps->c[lane][r][0] * 8 + maps->c[lane][r][1]] = d[r];
}

template <class T>
void check_mma(T (*from_float)(float), float (*to_float)(T)) {
  const MmaMaps maps = cute_maps();
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    Rng rng(seed);
    std::vector<T> A(256), B(128);
    std::vector<float> C(128), D(128, NAN);
    for (auto& x : A) x = from_float(rng.uniform() * (seed == 4 ? 60.f : 2.f));
    for (auto& x : B) x = from_float(rng.uniform() * 2.f);
    for (auto& x : C) x = rng.uniform();
    ASSERT_TRUE(strata::launch(mma_probe<T>, dim3(1), dim3(32), 0, 0, A.data(), B.data(), C.data(),
                               D.data(), &maps)
                    .ok());
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n) {
        double ref = C[size_t(m * 8 + n)];
        double mag = std::fabs(ref);
        for (int k = 0; k < 16; ++k) {
          const double p =
              double(to_float(A[size_t(m * 16 + k)])) * double(to_float(B[size_t(k * 8 + n)]));
          ref += p;
          mag += std::fabs(p);
        }
        // one rounding to f32 of the exact sum
        EXPECT_LE(std::fabs(D[size_t(m * 8 + n)] - ref), std::ldexp(mag, -23) + 1e-30)
            << m << "," << n;
      }
  }
}

TEST(EmulatedMma, Bf16MatchesFp64ProductPlacedByCuteMaps) {
  check_mma<__nv_bfloat16>([](float x) { return __float2bfloat16_rn(x); },
                           [](__nv_bfloat16 x) { return __bfloat162float(x); });
  EXPECT_EQ(strata::sim::last_launch_counters().mma, 1u);
}
TEST(EmulatedMma, F16MatchesFp64ProductPlacedByCuteMaps) {
  check_mma<__half>([](float x) { return __float2half_rn(x); },
                    [](__half x) { return __half2float(x); });
}

// ------------------------------------------------------------------------------ ldmatrix
// Four 8x8 matrices of 16-bit values v = 1000*i + 10*row + col, rows scattered in shared
// memory: lane l gives the address of row perm(l). PTX ISA: without .trans, thread t holds
// elements (row t/4, cols 2(t%4), 2(t%4)+1) of each matrix; .trans delivers the transpose.
template <int N, bool Trans>
__global__ void ldmatrix_probe(uint32_t* out) {
  __shared__ __align__(16) uint16_t rows[32][8];
  const int l = int(threadIdx.x);
  const int stored = (l * 7 + 3) % 32;  // matrix row l lives at rows[stored]
  for (int c = 0; c < 8; ++c) rows[stored][c] = uint16_t(1000 * (l / 8) + 10 * (l % 8) + c);
  __syncwarp();
  uint32_t r[N];
  strata::arch::ldmatrix<N, Trans>(r, rows[stored]);
  for (int i = 0; i < N; ++i) out[l * 4 + i] = r[i];
}

template <int N, bool Trans>
void check_ldmatrix() {
  std::vector<uint32_t> out(128, 0);
  ASSERT_TRUE(strata::launch(ldmatrix_probe<N, Trans>, dim3(1), dim3(32), 0, 0, out.data()).ok());
  for (int t = 0; t < 32; ++t)
    for (int i = 0; i < N; ++i) {
      const int row = t / 4, col = 2 * (t % 4);
      uint32_t lo, hi;
      if (!Trans) {
        lo = uint32_t(1000 * i + 10 * row + col);
        hi = uint32_t(1000 * i + 10 * row + col + 1);
      } else {  // element (r, c) of the transpose is element (c, r) of the stored matrix
        lo = uint32_t(1000 * i + 10 * col + row);
        hi = uint32_t(1000 * i + 10 * (col + 1) + row);
      }
      EXPECT_EQ(out[size_t(t * 4 + i)], lo | hi << 16) << "lane " << t << " matrix " << i;
    }
}
TEST(Ldmatrix, X1) {
  check_ldmatrix<1, false>();
}
TEST(Ldmatrix, X2) {
  check_ldmatrix<2, false>();
}
TEST(Ldmatrix, X4) {
  check_ldmatrix<4, false>();
}
TEST(Ldmatrix, X1Trans) {
  check_ldmatrix<1, true>();
}
TEST(Ldmatrix, X2Trans) {
  check_ldmatrix<2, true>();
}
TEST(Ldmatrix, X4Trans) {
  check_ldmatrix<4, true>();
}

// ------------------------------------------------------------------------------ cp.async
// Thread t copies 4, 8 and 16 bytes with src_bytes = t % (size + 1): the tail is zero-filled.
// Per thread 32 bytes: [0,4) [8,16) [16,32). Two groups: after wait_group<1> the first has
// landed and the second still reads as poison.
__global__ void cp_async_probe(const uint8_t* src, uint8_t* out) {
  STRATA_DYNAMIC_SMEM(uint8_t, s);  // 2 groups x 32 threads x 32 bytes
  const int t = int(threadIdx.x);
  uint8_t* g0 = s + t * 32;
  uint8_t* g1 = s + 32 * 32 + t * 32;
  strata::arch::cp_async<4>(g0, src + t * 32, t % 5);
  strata::arch::cp_async<8>(g0 + 8, src + t * 32 + 8, t % 9);
  strata::arch::cp_async<16>(g0 + 16, src + t * 32 + 16, t % 17);
  strata::arch::cp_async_commit();
  strata::arch::cp_async<16>(g1 + 16, src + t * 32 + 16, 16);
  strata::arch::cp_async_commit();
  strata::arch::cp_async_wait<1>();
  for (int i = 0; i < 32; ++i) out[t * 32 + i] = (i >= 4 && i < 8) ? 0 : g0[i];
  out[32 * 32 + t] = g1[16];  // not landed yet: poison (0xFF)
  strata::arch::cp_async_wait<0>();
  out[32 * 32 + 32 + t] = g1[16];
}

TEST(CpAsync, SizesZeroFillAndGroupLanding) {
  std::vector<uint8_t> src(32 * 32), out(32 * 32 + 64, 0);
  for (size_t i = 0; i < src.size(); ++i) src[i] = uint8_t(1 + i % 250);
  const strata::Status st =
      strata::launch(cp_async_probe, dim3(1), dim3(32), 2 * 32 * 32, 0, src.data(), out.data());
  ASSERT_TRUE(st.ok()) << st.message();
  for (int t = 0; t < 32; ++t) {
    const int seg[3][2] = {{0, 4}, {8, 8}, {16, 16}};
    const int srcb[3] = {t % 5, t % 9, t % 17};
    for (int k = 0; k < 3; ++k)
      for (int i = 0; i < seg[k][1]; ++i) {
        const size_t at = size_t(t * 32 + seg[k][0] + i);
        EXPECT_EQ(out[at], i < srcb[k] ? src[at] : 0)
            << "thread " << t << " copy " << k << " byte " << i;
      }
    EXPECT_EQ(out[size_t(32 * 32 + t)], 0xFF);
    EXPECT_EQ(out[size_t(32 * 32 + 32 + t)], src[size_t(t * 32 + 16)]);
  }
  const auto c = strata::sim::last_launch_counters();
  EXPECT_EQ(c.cp_async, 32u * 4);
  EXPECT_EQ(c.cp_async_bytes, 32u * (4 + 8 + 16 + 16));
}

// ---------------------------------------------------------------------------- warp helpers
__global__ void shuffle_probe(int* out) {
  const int l = int(threadIdx.x);
  const int v = 100 + l;
  int* o = out + l * 16;
  o[0] = strata::arch::shfl(v, 5);
  o[1] = strata::arch::shfl(v, 3, 8);
  o[2] = strata::arch::shfl_up(v, 2);
  o[3] = strata::arch::shfl_up(v, 3, 16);
  o[4] = strata::arch::shfl_down(v, 4);
  o[5] = strata::arch::shfl_down(v, 1, 8);
  o[6] = strata::arch::shfl_xor(v, 9);
  o[7] = strata::arch::shfl_xor(v, 2, 4);
  o[8] = int(strata::arch::ballot(l % 3 == 0));
  o[9] = strata::arch::any(l == 17);
  o[10] = strata::arch::all(l < 31);
  o[11] = strata::arch::warp_sum(l);
  o[12] = strata::arch::warp_max<8>(l * 7 % 11);
  o[13] = strata::arch::warp_min<16>(50 - l);
  // two half-warps run disjoint collectives at the same time
  const unsigned half = l < 16 ? 0x0000ffffu : 0xffff0000u;
  o[14] = strata::arch::shfl_xor(v, 1, 32, half);
  o[15] = int(strata::arch::ballot(l % 2 == 1, half));
}

TEST(WarpHelpers, ShufflesVotesAndReductionsFollowCudaSemantics) {
  std::vector<int> out(32 * 16, -1);
  ASSERT_TRUE(strata::launch(shuffle_probe, dim3(1), dim3(32), 0, 0, out.data()).ok());
  unsigned ballot = 0;
  for (int l = 0; l < 32; l += 3) ballot |= 1u << l;
  for (int l = 0; l < 32; ++l) {
    const int* o = &out[size_t(l * 16)];
    EXPECT_EQ(o[0], 105);
    EXPECT_EQ(o[1], 100 + (l & ~7) + 3);
    EXPECT_EQ(o[2], l >= 2 ? 100 + l - 2 : 100 + l);
    EXPECT_EQ(o[3], l % 16 >= 3 ? 100 + l - 3 : 100 + l);
    EXPECT_EQ(o[4], l + 4 < 32 ? 100 + l + 4 : 100 + l);
    EXPECT_EQ(o[5], l % 8 + 1 < 8 ? 100 + l + 1 : 100 + l);
    EXPECT_EQ(o[6], 100 + (l ^ 9));
    EXPECT_EQ(o[7], 100 + (l ^ 2));
    EXPECT_EQ(unsigned(o[8]), ballot);
    EXPECT_EQ(o[9], 1);
    EXPECT_EQ(o[10], 0);
    EXPECT_EQ(o[11], 31 * 32 / 2);
    int mx = 0;
    for (int j = l & ~7; j < (l & ~7) + 8; ++j) mx = std::max(mx, j * 7 % 11);
    EXPECT_EQ(o[12], mx);
    EXPECT_EQ(o[13], 50 - ((l & ~15) + 15));
    EXPECT_EQ(o[14], 100 + (l ^ 1));
    EXPECT_EQ(unsigned(o[15]), l < 16 ? 0x0000aaaau : 0xaaaa0000u);
  }
}

__global__ void syncthreads_reductions(int* out) {
  const int t = int(threadIdx.x);
  const int c = __syncthreads_count(t % 3 == 0);
  const int a = __syncthreads_and(t < 1000);
  const int o = __syncthreads_or(t == 77);
  const int z = __syncthreads_or(0);
  out[t] = c * 1000 + a * 100 + o * 10 + z;
}

TEST(Barriers, ReducingSyncthreads) {
  std::vector<int> out(96, -1);
  ASSERT_TRUE(strata::launch(syncthreads_reductions, dim3(1), dim3(96), 0, 0, out.data()).ok());
  for (int v : out) EXPECT_EQ(v, 32 * 1000 + 100 + 10);
  EXPECT_EQ(strata::sim::last_launch_counters().barriers, 4u);
}

}  // namespace
