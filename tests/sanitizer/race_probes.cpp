// Sanitizer probes, one kernel per run: under ThreadSanitizer the racy kernels must produce a
// data-race report naming their lines and the correct ones none; under ASan the out-of-bounds
// kernels must produce an AddressSanitizer report.
#include <strata/strata.cuh>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "zoo/zoo.cuh"

template <int Bug>
__global__ void smem_broadcast(const float* in, float* out) {
  __shared__ float s;
  if (threadIdx.x == 0) s = in[blockIdx.x];
  if (Bug == 0) __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = s * float(threadIdx.x);  // RACE-LINE broadcast
}

__global__ void warp_exchange(float* out, int bug) {
  __shared__ float s[32];
  s[threadIdx.x] = float(threadIdx.x);
  if (!bug) __syncwarp();
  out[threadIdx.x] = s[(threadIdx.x + 1) % 32];
}

// Hopper's one-way handoffs: a producer warp's stores reach the consumer warp through an
// mbarrier arrival (release) and wait (acquire), or a named barrier's bar.arrive and bar.sync.
// Bug 1 stores after arriving: the consumer's read races with it.
template <int Bug>
__global__ void mbarrier_handoff(const float* in, float* out) {
  __shared__ float s[32];
  __shared__ uint64_t bar;
  if (threadIdx.x == 0) strata::arch::mbarrier_init(&bar, 32);
  __syncthreads();
  if (threadIdx.x < 32) {
    if (Bug == 0) s[threadIdx.x] = in[threadIdx.x];
    strata::arch::mbarrier_arrive(&bar);
    if (Bug == 1) s[threadIdx.x] = in[threadIdx.x];
  } else {
    strata::arch::mbarrier_wait(&bar, 0);
    out[threadIdx.x - 32] = s[(threadIdx.x + 1) % 32];
  }
}

template <int Bug>
__global__ void named_handoff(const float* in, float* out) {
  __shared__ float s[32];
  if (threadIdx.x < 32) {
    if (Bug == 0) s[threadIdx.x] = in[threadIdx.x];
    strata::arch::named_barrier_arrive(1, 64);
    if (Bug == 1) s[threadIdx.x] = in[threadIdx.x];
  } else {
    strata::arch::named_barrier_sync(1, 64);
    out[threadIdx.x - 32] = s[(threadIdx.x + 1) % 32];
  }
}

__global__ void static_smem_oob(float* out) {
  __shared__ float tile[64];
  tile[threadIdx.x + 1] = 1.f;  // thread 63 writes tile[64]
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

int main(int argc, char** argv) {
  const std::string k = argc > 1 ? argv[1] : "";
  std::vector<float> in(64, 1.f), out(4 * 64);
  strata::Status s;
  if (k == "broadcast_ok")
    s = strata::launch(smem_broadcast<0>, dim3(4), dim3(64), 0, 0, in.data(), out.data());
  else if (k == "broadcast_race")
    s = strata::launch(smem_broadcast<1>, dim3(4), dim3(64), 0, 0, in.data(), out.data());
  else if (k == "syncwarp_ok")
    s = strata::launch(warp_exchange, dim3(1), dim3(32), 0, 0, out.data(), 0);
  else if (k == "syncwarp_race")
    s = strata::launch(warp_exchange, dim3(1), dim3(32), 0, 0, out.data(), 1);
  else if (k == "mbarrier_ok" || k == "mbarrier_race")
    s = strata::launch(k == "mbarrier_ok" ? mbarrier_handoff<0> : mbarrier_handoff<1>, dim3(1),
                       dim3(64), 0, 0, in.data(), out.data());
  else if (k == "named_ok" || k == "named_race")
    s = strata::launch(k == "named_ok" ? named_handoff<0> : named_handoff<1>, dim3(1), dim3(64), 0,
                       0, in.data(), out.data());
  else if (k == "static_smem_oob")
    s = strata::launch(static_smem_oob, dim3(1), dim3(64), 0, 0, out.data());
  else if (k == "sgemm_ok" || k == "sgemm_war") {
    std::vector<float> A(48 * 48, 1.f), B(48 * 48, 1.f), C(48 * 48);
    s = k == "sgemm_ok" ? strata::launch(zoo::sgemm_tiled<16, 0>, dim3(3, 3), dim3(16, 16), 0, 0,
                                         A.data(), B.data(), C.data(), 48, 48, 48)
                        : strata::launch(zoo::sgemm_tiled<16, 2>, dim3(3, 3), dim3(16, 16), 0, 0,
                                         A.data(), B.data(), C.data(), 48, 48, 48);
  } else if (k == "flash_ok" || k == "flash_war") {
    const int S = 64, D = 64;
    std::vector<float> Q(S * D, .1f), K(S * D, .2f), V(S * D, .3f), O(S * D), L(S);
    s = k == "flash_ok"
            ? strata::launch(zoo::flash_fwd_simt<64, true, 0>, dim3(S / 16, 1), dim3(128), 0, 0,
                             Q.data(), K.data(), V.data(), O.data(), L.data(), S, .125f)
            : strata::launch(zoo::flash_fwd_simt<64, false, 1>, dim3(S / 16, 1), dim3(128), 0, 0,
                             Q.data(), K.data(), V.data(), O.data(), L.data(), S, .125f);
  } else {
    std::fprintf(stderr, "unknown probe '%s'\n", k.c_str());
    return 2;
  }
  std::printf("%s: %s\n", k.c_str(), s.message());
  return s.ok() ? 0 : 1;
}
