// Running your own CUDA kernel on the CPU with Strata's simulator (docs/simulator.md).
//
// The kernel below is ordinary CUDA C++: a tiled matrix transpose through shared memory. Built by
// g++ or clang and linked against strata::sim, strata::launch runs it on the CPU, one fiber per
// CUDA thread. The program runs it under several thread schedules and checks every result, and
// shows what the simulator does with two classic bugs:
//
//   own_kernel check   correct kernel: right under every schedule; the variant without its
//                      __syncthreads reads shared memory before it is written and gets NaN
//                      (shared memory starts as 0xFF bytes), so every schedule catches it
//   own_kernel race    the variant without the barrier, for a -fsanitize=thread build: TSan
//                      reports the shared-memory race at the kernel's line
//   own_kernel oob     a kernel that writes one element past its __shared__ array, for a
//                      -fsanitize=address build: ASan reports the overflow at the kernel's line
//
// The same file compiles with nvcc (the kernel then runs on a GPU); nothing in the kernel is
// simulator-specific.
#include <strata/strata.cuh>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

constexpr int kTile = 32;

/// out[j][i] = in[i][j] for an n x n matrix, one kTile x kTile tile per block of kTile x 8
/// threads (each thread moves kTile / 8 elements). kSync = false drops the barrier between the
/// tile's writes and its transposed reads: the bug under test.
template <bool kSync>
__global__ void transpose(const float* in, float* out, int n) {
  __shared__ float tile[kTile][kTile + 1];  // +1: no bank conflicts on the column reads
  const int x = blockIdx.x * kTile + threadIdx.x;
  for (int r = threadIdx.y; r < kTile; r += 8) {
    const int y = blockIdx.y * kTile + r;
    if (x < n && y < n) tile[r][threadIdx.x] = in[y * n + x];
  }
  if (kSync) __syncthreads();
  const int tx = blockIdx.y * kTile + threadIdx.x;  // the transposed tile's column
  for (int r = threadIdx.y; r < kTile; r += 8) {
    const int ty = blockIdx.x * kTile + r;
    if (tx < n && ty < n) out[ty * n + tx] = tile[threadIdx.x][r];  // RACE-LINE without kSync
  }
}

/// Writes tile[threadIdx.x + 1]: thread 63 of 64 writes one past the end of the array.
__global__ void shared_overflow(float* out) {
  __shared__ float tile[64];
  tile[threadIdx.x + 1] = float(threadIdx.x);  // OOB-LINE
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

namespace {

/// Launches transpose<kSync> over an n x n matrix; returns the number of wrong elements, or -1
/// when the launch failed.
template <bool kSync>
long run_transpose(int n, const char* what) {
  std::vector<float> in(size_t(n) * n), out(size_t(n) * n, -1.f);
  for (size_t i = 0; i < in.size(); ++i) in[i] = float(i);
  const dim3 grid((n + kTile - 1) / kTile, (n + kTile - 1) / kTile), block(kTile, 8);
  const strata::Status s =
      strata::launch(transpose<kSync>, grid, block, /*smem_bytes=*/0, /*stream=*/0,
                     static_cast<const float*>(in.data()), out.data(), n);
  if (!s.ok()) {
    std::printf("  %s: launch failed: %s\n", what, s.message());
    return -1;
  }
  long wrong = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) wrong += out[size_t(j) * n + i] != in[size_t(i) * n + j];
  const strata::sim::Counters c = strata::sim::last_launch_counters();
  std::printf("  %s: %ld wrong of %d (%llu blocks, %llu threads, %llu barriers)\n", what, wrong,
              n * n, (unsigned long long)c.blocks, (unsigned long long)c.threads,
              (unsigned long long)c.barriers);
  return wrong;
}

int check() {
  const int n = 70;  // ragged: the last tiles are partial
  const strata::sim::Schedule schedules[] = {
      strata::sim::Schedule::Forward(), strata::sim::Schedule::Reverse(),
      strata::sim::Schedule::Random(1), strata::sim::Schedule::Random(2)};
  bool ok = true;
  for (const strata::sim::Schedule& s : schedules) {
    strata::sim::set_schedule(s);
    std::printf("schedule %s\n", s.to_string().c_str());
    ok &= run_transpose<true>(n, "transpose with __syncthreads   ") == 0;
    ok &= run_transpose<false>(n, "transpose without __syncthreads") > 0;  // must be caught
  }
  strata::sim::set_schedule(strata::sim::Schedule::Forward());
  std::printf(ok ? "own_kernel: correct kernel passes, missing barrier caught\n"
                 : "own_kernel: FAILED\n");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "check";
  if (mode == "check") return check();
  if (mode == "race") {  // meant for the -fsanitize=thread build
    run_transpose<false>(64, "transpose without __syncthreads");
    return 0;
  }
  if (mode == "oob") {  // meant for the -fsanitize=address build
    std::vector<float> out(64);
    const strata::Status s = strata::launch(shared_overflow, dim3(1), dim3(64), 0, 0, out.data());
    std::printf("shared_overflow: %s\n", s.message());
    return 0;
  }
  std::fprintf(stderr, "usage: own_kernel [check|race|oob]\n");
  return 2;
}
