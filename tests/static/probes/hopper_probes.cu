// Golden-PTX probes of the Hopper-only strata/arch ops (mbarrier.hpp, named_barrier.hpp, sm90.hpp,
// stmatrix.hpp), in the style of arch_probes.cu: operands from distinct parameters or offsets,
// results stored, shared addresses indexed by threadIdx.
// golden-archs: sm_90a
#include <strata/strata.cuh>

#include <cstdint>

using namespace strata::arch;

namespace {
__device__ __forceinline__ int tid() { return int(threadIdx.x); }
}  // namespace

// ---- mbarrier ---------------------------------------------------------------------------------
extern "C" __global__ void probe_mbarrier_init(uint32_t count) {
  __shared__ uint64_t bar[4];
  mbarrier_init(&bar[tid() % 4], count);
}
extern "C" __global__ void probe_mbarrier_inval() {
  __shared__ uint64_t bar[4];
  mbarrier_inval(&bar[tid() % 4]);
}
extern "C" __global__ void probe_mbarrier_arrive() {
  __shared__ uint64_t bar[4];
  mbarrier_arrive(&bar[tid() % 4]);
}
extern "C" __global__ void probe_mbarrier_arrive_count(uint32_t count) {
  __shared__ uint64_t bar[4];
  mbarrier_arrive(&bar[tid() % 4], count);
}
extern "C" __global__ void probe_mbarrier_arrive_expect_tx(uint32_t bytes) {
  __shared__ uint64_t bar[4];
  mbarrier_arrive_expect_tx(&bar[tid() % 4], bytes);
}
extern "C" __global__ void probe_mbarrier_expect_tx(uint32_t bytes) {
  __shared__ uint64_t bar[4];
  mbarrier_expect_tx(&bar[tid() % 4], bytes);
}
extern "C" __global__ void probe_mbarrier_complete_tx(uint32_t bytes) {
  __shared__ uint64_t bar[4];
  mbarrier_complete_tx(&bar[tid() % 4], bytes);
}
extern "C" __global__ void probe_mbarrier_try_wait_parity(uint32_t parity, int* out) {
  __shared__ uint64_t bar[4];
  out[tid()] = mbarrier_try_wait_parity(&bar[tid() % 4], parity) ? 1 : 0;
}
extern "C" __global__ void probe_mbarrier_wait(uint32_t parity) {
  __shared__ uint64_t bar[4];
  mbarrier_wait(&bar[tid() % 4], parity);
}

// ---- named barriers ---------------------------------------------------------------------------
extern "C" __global__ void probe_named_barrier_sync(int id, int count) { named_barrier_sync(id, count); }
extern "C" __global__ void probe_named_barrier_arrive(int id, int count) { named_barrier_arrive(id, count); }

// ---- elect.sync, setmaxnreg, fence.proxy.async ------------------------------------------------
extern "C" __global__ void probe_elect_one(unsigned mask, int* out) { out[tid()] = elect_one(mask) ? 1 : 0; }
extern "C" __global__ void __launch_bounds__(384, 1) probe_setmaxnreg_inc() { setmaxnreg_inc<240>(); }
extern "C" __global__ void __launch_bounds__(384, 1) probe_setmaxnreg_dec() { setmaxnreg_dec<24>(); }
extern "C" __global__ void probe_fence_proxy_async() { fence_proxy_async(); }

// ---- stmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 -----------------------------------
// r = in[0..N), row = tile + 8 * tid.
#define STRATA_PROBE_STMATRIX(name, N, T)                        \
  extern "C" __global__ void name(const uint32_t* in, uint16_t* out) { \
    __shared__ __align__(16) uint16_t tile[32 * 8];                \
    uint32_t r[N];                                                 \
    for (int i = 0; i < N; ++i) r[i] = in[i];                      \
    stmatrix<N, T>(&tile[8 * tid()], r);                           \
    out[tid()] = tile[(tid() * 3) % 256];                          \
  }
STRATA_PROBE_STMATRIX(probe_stmatrix_x1, 1, false)
STRATA_PROBE_STMATRIX(probe_stmatrix_x2, 2, false)
STRATA_PROBE_STMATRIX(probe_stmatrix_x4, 4, false)
STRATA_PROBE_STMATRIX(probe_stmatrix_x1_trans, 1, true)
STRATA_PROBE_STMATRIX(probe_stmatrix_x2_trans, 2, true)
STRATA_PROBE_STMATRIX(probe_stmatrix_x4_trans, 4, true)

// ---- TMA: cp.async.bulk.tensor loads and stores, bulk groups ---------------------------------
// The map by address (a __grid_constant__ parameter), coordinates from parameters.
extern "C" __global__ void probe_tma_load_2d(const __grid_constant__ strata::tma::TensorMap map, int c0, int c1) {
  __shared__ __align__(1024) unsigned char box[4096];
  __shared__ uint64_t bar;
  tma_load_2d(box, &map, &bar, c0, c1);
}
extern "C" __global__ void probe_tma_load_3d(const __grid_constant__ strata::tma::TensorMap map, int c0, int c1, int c2) {
  __shared__ __align__(1024) unsigned char box[4096];
  __shared__ uint64_t bar;
  tma_load_3d(box, &map, &bar, c0, c1, c2);
}
extern "C" __global__ void probe_tma_store_2d(const __grid_constant__ strata::tma::TensorMap map, int c0, int c1) {
  __shared__ __align__(1024) unsigned char box[4096];
  tma_store_2d(&map, box, c0, c1);
}
extern "C" __global__ void probe_tma_store_3d(const __grid_constant__ strata::tma::TensorMap map, int c0, int c1, int c2) {
  __shared__ __align__(1024) unsigned char box[4096];
  tma_store_3d(&map, box, c0, c1, c2);
}
extern "C" __global__ void probe_tma_store_commit() { tma_store_commit(); }
extern "C" __global__ void probe_tma_store_wait_read_1() { tma_store_wait_read<1>(); }

// ---- wgmma: fence, commit, wait, and every generated m64nNk16 body ---------------------------
extern "C" __global__ void probe_wgmma_fence() { wgmma_fence(); }
extern "C" __global__ void probe_wgmma_commit() { wgmma_commit(); }
extern "C" __global__ void probe_wgmma_wait_1() { wgmma_wait<1>(); }
// acc = fin[0..N/2), desc_a / desc_b / scale_d from parameters (a = in[0..4) for RS), acc -> out.
#define STRATA_PROBE_WGMMA_SS(N, T, TA, TB, name)                                                    \
  extern "C" __global__ void name(const float* fin, uint64_t da, uint64_t db, int acc, float* out) { \
    WgmmaAcc<N> d;                                                                                   \
    for (int i = 0; i < N / 2; ++i) d.r[i] = fin[i];                                                 \
    wgmma_ss<N, T, TA, TB>(d, da, db, acc != 0);                                                     \
    for (int i = 0; i < N / 2; ++i) out[i] = d.r[i];                                                 \
  }
#define STRATA_PROBE_WGMMA_RS(N, T, TB, name)                                                        \
  extern "C" __global__ void name(const float* fin, const uint32_t* in, uint64_t db, int acc, float* out) { \
    WgmmaAcc<N> d;                                                                                   \
    uint32_t a[4];                                                                                   \
    for (int i = 0; i < N / 2; ++i) d.r[i] = fin[i];                                                 \
    for (int i = 0; i < 4; ++i) a[i] = in[i];                                                        \
    wgmma_rs<N, T, TB>(d, a, db, acc != 0);                                                          \
    for (int i = 0; i < N / 2; ++i) out[i] = d.r[i];                                                 \
  }
#define STRATA_PROBE_WGMMA_N(N)                                                          \
  STRATA_PROBE_WGMMA_SS(N, __nv_bfloat16, 0, 0, probe_wgmma_ss_m64n##N##k16_bf16)        \
  STRATA_PROBE_WGMMA_SS(N, __half, 0, 1, probe_wgmma_ss_m64n##N##k16_f16_tb)             \
  STRATA_PROBE_WGMMA_RS(N, __nv_bfloat16, 1, probe_wgmma_rs_m64n##N##k16_bf16_tb)        \
  STRATA_PROBE_WGMMA_RS(N, __half, 0, probe_wgmma_rs_m64n##N##k16_f16)
STRATA_PROBE_WGMMA_N(16)
STRATA_PROBE_WGMMA_N(32)
STRATA_PROBE_WGMMA_N(64)
STRATA_PROBE_WGMMA_N(80)
STRATA_PROBE_WGMMA_N(96)
STRATA_PROBE_WGMMA_N(128)
STRATA_PROBE_WGMMA_N(176)
STRATA_PROBE_WGMMA_N(192)
STRATA_PROBE_WGMMA_N(256)
// SS with A transposed (MN-major A)
STRATA_PROBE_WGMMA_SS(64, __nv_bfloat16, 1, 0, probe_wgmma_ss_m64n64k16_bf16_ta)
