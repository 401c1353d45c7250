/// \file
/// Strata configuration: which executor compiles this translation unit, the host/device
/// qualifiers every pure function carries, and the feature macros kernels branch on.
///
/// One kernel source, two executors (DESIGN.md section 1):
///  * nvcc (`__CUDACC__`): the real product, with `__CUDA_ARCH__` set in the device pass;
///  * the SIMT simulator (any other compiler): the same CUDA C++ runs on the CPU, a fiber per
///    CUDA thread. `STRATA_SIM` is 1 there.
/// Kernels never test `__CUDA_ARCH__` themselves: they test the feature macros below, which are
/// defined so that the simulator executes the path sm_80 and sm_90 compile.
#pragma once

#if defined(__CUDACC__)
#define STRATA_SIM 0
#else
/// 1 when this translation unit runs kernels in the CPU SIMT simulator (no nvcc).
#define STRATA_SIM 1
#endif

// Executor namespaces. A program may hold both kinds of translation unit (a PyTorch extension
// with a CPU part and a CUDA part, say), and the linker keeps one copy of each inline function
// and template instantiation per mangled name. Everything whose definition depends on the
// executor (kernels, device helpers, arch ops, launchers and whatever calls them) is therefore
// declared inside an inline namespace named after the executor, the innermost namespace around
// it: `strata::api::flash_fwd` is `strata::api::sim_v1::flash_fwd` in a simulator build and
// `strata::api::cuda_v1::flash_fwd` under nvcc, spelled the same in source, distinct at link time.
// Executor-neutral code (Params structs, validation, core math, reference, cost model) stays
// outside, so a user's declaration that takes a Params struct links from either kind of TU; it
// never calls into an executor namespace (tests/package/mixed_executors audits the symbols).
#if STRATA_SIM
/// The inline namespace of this translation unit's executor.
#define STRATA_EXECUTOR_NS sim_v1
#else
#define STRATA_EXECUTOR_NS cuda_v1
#endif
/// Opens the executor's inline namespace (innermost: inside `namespace strata::x { ... }`).
#define STRATA_EXECUTOR_BEGIN inline namespace STRATA_EXECUTOR_NS {
/// Closes what STRATA_EXECUTOR_BEGIN opened.
#define STRATA_EXECUTOR_END }

#if defined(__CUDA_ARCH__)
#define STRATA_DEVICE_PASS 1
#else
/// 1 in nvcc's device compilation pass only.
#define STRATA_DEVICE_PASS 0
#endif

#if STRATA_SIM
#define STRATA_HOST_DEVICE inline
#define STRATA_DEVICE inline
#else
/// Qualifier of every pure function: callable from host code, device code and the simulator.
#define STRATA_HOST_DEVICE __host__ __device__ __forceinline__
/// Qualifier of device-only functions (kernel helpers, arch ops).
#define STRATA_DEVICE __device__ __forceinline__
#endif

// Feature macros. The simulator emulates the sm_80 warp-level tensor-core path, so it takes
// the same branch as an sm_80/sm_90 device pass.
#if STRATA_SIM || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
/// mma.sync m16n8k16 (f16/bf16 -> f32), ldmatrix and cp.async are available.
#define STRATA_HAS_MMA_SM80 1
#else
#define STRATA_HAS_MMA_SM80 0
#endif

// Hopper. The simulator emulates these too (sim/hopper_sync.hpp), so a Hopper kernel runs there
// on the same path an sm_90a device pass compiles; an sm_80 pass compiles it away.
#if STRATA_SIM || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900)
/// sm_90: mbarrier try_wait / expect_tx / complete_tx, elect.sync, stmatrix, fence.proxy.async.
#define STRATA_HAS_SM90 1
#else
#define STRATA_HAS_SM90 0
#endif
#if STRATA_SIM || defined(__CUDA_ARCH_FEAT_SM90_ALL)
/// sm_90a's architecture-specific features: setmaxnreg (and wgmma). `-arch=sm_90` without the
/// `a` does not have them.
#define STRATA_HAS_SM90A 1
#else
#define STRATA_HAS_SM90A 0
#endif

// Call-site capture. In the simulator every synchronising operation records the kernel's
// file:line, so a fault names the line of the kernel, not a line of a helper. Helpers that
// synchronise take `STRATA_SITE_DECL` as their last parameter and pass `STRATA_SITE_ARG` on.
// Under nvcc the parameter does not exist, so the PTX is unaffected.
#if STRATA_SIM
namespace strata {
/// A source location (file and line), captured as a defaulted argument at the caller. Not
/// std::source_location: clang 14 cannot provide that with libstdc++.
struct Site {
  const char* file = "";
  unsigned line_no = 0;
  static constexpr Site current(const char* f = __builtin_FILE(), unsigned l = __builtin_LINE()) {
    return {f, l};
  }
  constexpr const char* file_name() const { return file; }
  constexpr unsigned line() const { return line_no; }
};
}  // namespace strata
#define STRATA_SITE_DECL , ::strata::Site strata_site_ = ::strata::Site::current()
/// STRATA_SITE_DECL for a function without other parameters.
#define STRATA_SITE_DECL_FIRST ::strata::Site strata_site_ = ::strata::Site::current()
#define STRATA_SITE_ARG , strata_site_
#else
#define STRATA_SITE_DECL
#define STRATA_SITE_DECL_FIRST
#define STRATA_SITE_ARG
#endif

/// `#pragma unroll` for nvcc; nothing for the simulator's host compiler.
/// `#pragma unroll N` likewise.
#if STRATA_SIM
#define STRATA_UNROLL
#define STRATA_UNROLL_N(n)
#else
#define STRATA_UNROLL _Pragma("unroll")
#define STRATA_UNROLL_N(n) _Pragma(STRATA_STRINGIFY(unroll n))
#endif

#define STRATA_STRINGIFY_IMPL(x) #x
#define STRATA_STRINGIFY(x) STRATA_STRINGIFY_IMPL(x)
