// The interface between the two halves of the mixed-executor test program: one translation unit
// compiled by g++ (the simulator) and one by nvcc, linked into one executable or loaded as two
// shared objects. Everything named here is executor-neutral (strata::Status, FlashFwdParams), so
// this one header declares functions that either kind of TU defines, as a user's would.
#pragma once

#include <strata/attention/params.hpp>
#include <strata/status.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mixed {

/// The problem: bf16, d = 128 (52,224 bytes of dynamic shared memory, above the 48 KB default),
/// two sequences of 70 and 37 tokens, 4 query heads over 2 KV heads, causal.
inline constexpr int kD = 128, kH = 4, kHk = 2, kB = 2, kSeqMax = 70;
inline const std::vector<int> kCuSeqlens = {0, 70, 107};
inline int total() {
  return kCuSeqlens.back();
}

/// Host inputs (bf16 bits) and outputs of one run.
struct Buffers {
  std::vector<uint16_t> q, k, v, o;
  std::vector<float> lse;
};
Buffers make_inputs();  ///< deterministic, in mixed_common.cpp

/// Params over the given pointers (contiguous [total, heads, d]). Inline and used by both
/// halves: an executor-neutral function that both objects define (the symbol audit checks that
/// such functions call nothing executor-specific).
inline strata::attention::FlashFwdParams params(const void* q, const void* k, const void* v,
                                                void* o, float* lse, const int* cu_seqlens) {
  strata::attention::FlashFwdParams p;
  p.q = q, p.k = k, p.v = v, p.o = o, p.lse = lse;
  p.cu_seqlens_q = p.cu_seqlens_k = cu_seqlens;
  p.cu_seqlens_q_host = p.cu_seqlens_k_host = kCuSeqlens.data();
  p.b = kB, p.seqlen_q = p.seqlen_k = kSeqMax, p.total_q = total();
  p.h = kH, p.h_k = kHk, p.d = kD;
  p.q_row_stride = p.o_row_stride = int64_t(kH) * kD;
  p.k_row_stride = p.v_row_stride = int64_t(kHk) * kD;
  p.q_head_stride = p.k_head_stride = p.v_head_stride = p.o_head_stride = kD;
  p.softmax_scale = 0.08838834764831845f;  // 1 / sqrt(128)
  p.is_causal = true;
  p.dtype = strata::attention::Dtype::kBf16;
  return p;
}

/// Each executor's answers, so the program can show that both halves keep their own.
struct ExecutorReport {
  strata::Status status = strata::Status::Ok();
  size_t max_dynamic_smem = 0;  ///< strata::max_dynamic_smem_bytes() as this TU sees it
  const char* executor = "";    ///< STRATA_STRINGIFY(STRATA_EXECUTOR_NS) of this TU
};

/// The simulator half (sim_part.cpp): runs the forward into `b.o`, `b.lse`, then a user kernel
/// from a header both halves include.
ExecutorReport sim_forward(Buffers& b);
/// The nvcc half (gpu_part.cu): the same forward on a GPU, through device buffers; without a
/// device, a CudaError status and nothing written.
ExecutorReport gpu_forward(Buffers& b);

}  // namespace mixed

namespace mixed {
using Half = ExecutorReport (*)(Buffers&);
/// Runs both halves and checks them (mixed_common.cpp); 0 when every check passed.
int run_program(Half sim, Half gpu);
}  // namespace mixed

// What dl_main looks up in the two shared objects.
extern "C" mixed::Half mixed_sim_half();
extern "C" mixed::Half mixed_gpu_half();
