// Golden-PTX probes: one tiny extern "C" kernel per strata/arch op variant. Every probe loads its
// inputs from distinct offsets of a global buffer, calls the op once and stores every output to a
// distinct offset, so the normalized PTX (tests/static/golden/) pins each asm string, its operand
// order and its dataflow: a swapped operand in an asm statement changes the expected text.
// Shared-memory operands are indexed by threadIdx so that their addresses are not folded away.
// Runtime masks, lanes and byte counts come from parameters for the same reason.
#include <strata/strata.cuh>

#include <cstdint>

using namespace strata::arch;

namespace {
__device__ __forceinline__ int tid() { return int(threadIdx.x); }
}  // namespace

// ---- mma.sync.aligned.m16n8k16 --------------------------------------------------------------
// a = in[0..3], b = in[4..5], c = fin[0..3], d -> out[0..3].

extern "C" __global__ void probe_mma_m16n8k16_bf16(const uint32_t* in, const float* fin, float* out) {
  uint32_t a[4], b[2];
  float c[4], d[4];
  for (int i = 0; i < 4; ++i) a[i] = in[i];
  for (int j = 0; j < 2; ++j) b[j] = in[4 + j];
  for (int k = 0; k < 4; ++k) c[k] = fin[k];
  mma_m16n8k16_bf16(d, a, b, c);
  for (int k = 0; k < 4; ++k) out[k] = d[k];
}

extern "C" __global__ void probe_mma_m16n8k16_f16(const uint32_t* in, const float* fin, float* out) {
  uint32_t a[4], b[2];
  float c[4], d[4];
  for (int i = 0; i < 4; ++i) a[i] = in[i];
  for (int j = 0; j < 2; ++j) b[j] = in[4 + j];
  for (int k = 0; k < 4; ++k) c[k] = fin[k];
  mma_m16n8k16_f16(d, a, b, c);
  for (int k = 0; k < 4; ++k) out[k] = d[k];
}

// ---- ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16 ---------------------------------
// Each lane stages one 16-byte row in shared memory and passes the address of row `row[lane]`;
// register i of lane t goes to out[N * t + i].

#define STRATA_LDMATRIX_PROBE(NAME, N, TRANS)                                       \
  extern "C" __global__ void NAME(const uint4* in, const int* row, uint32_t* out) { \
    __shared__ __align__(16) uint4 s[32];                                          \
    s[tid()] = in[tid()];                                                          \
    __syncwarp();                                                                  \
    uint32_t r[N];                                                                 \
    ldmatrix<N, TRANS>(r, &s[row[tid()]]);                                         \
    for (int i = 0; i < N; ++i) out[N * tid() + i] = r[i];                         \
  }

STRATA_LDMATRIX_PROBE(probe_ldmatrix_x1, 1, false)
STRATA_LDMATRIX_PROBE(probe_ldmatrix_x1_trans, 1, true)
STRATA_LDMATRIX_PROBE(probe_ldmatrix_x2, 2, false)
STRATA_LDMATRIX_PROBE(probe_ldmatrix_x2_trans, 2, true)
STRATA_LDMATRIX_PROBE(probe_ldmatrix_x4, 4, false)
STRATA_LDMATRIX_PROBE(probe_ldmatrix_x4_trans, 4, true)
#undef STRATA_LDMATRIX_PROBE

// The named forms must be the same instructions.
extern "C" __global__ void probe_ldmatrix_x4_named_trans(const uint4* in, const int* row, uint32_t* out) {
  __shared__ __align__(16) uint4 s[32];
  s[tid()] = in[tid()];
  __syncwarp();
  uint32_t r[4];
  ldmatrix_x4<true>(r, &s[row[tid()]]);
  for (int i = 0; i < 4; ++i) out[4 * tid() + i] = r[i];
}

// ---- cp.async ------------------------------------------------------------------------------
// Lane t copies element src_idx[t] of `in` into shared element t with a runtime src_bytes, then
// waits for it and writes shared element t back to out[t].

#define STRATA_CP_ASYNC_PROBE(NAME, BYTES, T)                                                      \
  extern "C" __global__ void NAME(const T* in, const int* src_idx, int src_bytes, T* out) {       \
    __shared__ __align__(16) T s[32];                                                              \
    cp_async<BYTES>(&s[tid()], &in[src_idx[tid()]], src_bytes);                                    \
    cp_async_wait_all();                                                                           \
    out[tid()] = s[tid()];                                                                         \
  }

STRATA_CP_ASYNC_PROBE(probe_cp_async_4, 4, uint32_t)
STRATA_CP_ASYNC_PROBE(probe_cp_async_8, 8, uint2)
STRATA_CP_ASYNC_PROBE(probe_cp_async_16, 16, uint4)
#undef STRATA_CP_ASYNC_PROBE

// Default src_bytes = Bytes: a full copy with an immediate size.
extern "C" __global__ void probe_cp_async_16_full(const uint4* in, uint4* out) {
  __shared__ __align__(16) uint4 s[32];
  cp_async<16>(&s[tid()], &in[tid()]);
  cp_async_wait_all();
  out[tid()] = s[tid()];
}

extern "C" __global__ void probe_cp_async_commit() { cp_async_commit(); }
extern "C" __global__ void probe_cp_async_wait_0() { cp_async_wait<0>(); }
extern "C" __global__ void probe_cp_async_wait_1() { cp_async_wait<1>(); }
extern "C" __global__ void probe_cp_async_wait_all() { cp_async_wait_all(); }

// ---- warp helpers --------------------------------------------------------------------------
// v = fin[t], lane/delta = iin[t], member mask = the `mask` parameter; result -> out[t].

extern "C" __global__ void probe_shfl(const float* fin, const int* iin, unsigned mask, float* out) {
  out[tid()] = shfl(fin[tid()], iin[tid()], 32, mask);
}
extern "C" __global__ void probe_shfl_up(const float* fin, const int* iin, unsigned mask, float* out) {
  out[tid()] = shfl_up(fin[tid()], unsigned(iin[tid()]), 32, mask);
}
extern "C" __global__ void probe_shfl_down(const float* fin, const int* iin, unsigned mask, float* out) {
  out[tid()] = shfl_down(fin[tid()], unsigned(iin[tid()]), 32, mask);
}
extern "C" __global__ void probe_shfl_xor(const float* fin, const int* iin, unsigned mask, float* out) {
  out[tid()] = shfl_xor(fin[tid()], iin[tid()], 32, mask);
}
// Segments of 16 lanes: pins the width -> c-operand encoding.
extern "C" __global__ void probe_shfl_xor_w16(const float* fin, const int* iin, unsigned mask, float* out) {
  out[tid()] = shfl_xor(fin[tid()], iin[tid()], 16, mask);
}
// Default arguments (full warp, width 32).
extern "C" __global__ void probe_shfl_default(const float* fin, const int* iin, float* out) {
  out[tid()] = shfl(fin[tid()], iin[tid()]);
}
extern "C" __global__ void probe_ballot(const int* iin, unsigned mask, unsigned* out) {
  out[tid()] = ballot(iin[tid()] != 0, mask);
}
extern "C" __global__ void probe_any(const int* iin, unsigned mask, int* out) {
  out[tid()] = any(iin[tid()] != 0, mask) ? 1 : 0;
}
extern "C" __global__ void probe_all(const int* iin, unsigned mask, int* out) {
  out[tid()] = all(iin[tid()] != 0, mask) ? 1 : 0;
}
extern "C" __global__ void probe_syncwarp(unsigned mask) { syncwarp(mask); }
extern "C" __global__ void probe_syncwarp_full() { syncwarp(); }
extern "C" __global__ void probe_warp_sum_f32(const float* fin, float* out) {
  out[tid()] = warp_sum<32>(fin[tid()]);
}

// ---- ex2.approx.ftz.f32 (sfu.hpp: the softmax exponentials) -----------------------------------
extern "C" __global__ void probe_ex2_ftz(const float* fin, float* out) {
  out[tid()] = ex2_ftz(fin[tid()]);
}
