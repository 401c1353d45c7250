/// \file
/// Sanitizer integration of the simulator's fibers.
///
/// ASan must be told about every stack switch (or it reports false stack-buffer overflows), and
/// ThreadSanitizer models each CUDA thread as a TSan fiber: switching between fibers creates no
/// happens-before edge, so the only edges between CUDA threads are the ones the simulator adds at
/// barriers and __syncwarp. Unsynchronised shared-memory accesses between CUDA threads of a block
/// then become TSan data-race reports at the kernel's source lines.
#pragma once

#include <cstddef>

// A traffic build (sim/traffic.hpp) compiles with -fsanitize=kernel-address only to have every
// load and store call a Strata callback. g++ defines __SANITIZE_ADDRESS__ for it too, but there
// is no ASan runtime to tell about fiber switches: it is not an ASan build.
#ifndef STRATA_SIM_TRAFFIC
#define STRATA_SIM_TRAFFIC 0
#endif

#if STRATA_SIM_TRAFFIC
#define STRATA_SIM_ASAN 0
#elif defined(__SANITIZE_ADDRESS__)
#define STRATA_SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRATA_SIM_ASAN 1
#endif
#endif
#ifndef STRATA_SIM_ASAN
#define STRATA_SIM_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define STRATA_SIM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRATA_SIM_TSAN 1
#endif
#endif
#ifndef STRATA_SIM_TSAN
#define STRATA_SIM_TSAN 0
#endif

// Code a traffic build leaves uninstrumented: its own callbacks, and the copies the simulator
// makes for a kernel whose global bytes it counts explicitly (cp.async).
#if STRATA_SIM_TRAFFIC
#define STRATA_SIM_NO_TRAFFIC __attribute__((no_sanitize_address))
#else
#define STRATA_SIM_NO_TRAFFIC
#endif

#if STRATA_SIM_TSAN
#define STRATA_SIM_NO_TSAN __attribute__((no_sanitize("thread")))
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void* fiber);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
#if defined(__clang__)  // a g++ built-in under -fsanitize=thread
void __tsan_read_range(void* addr, unsigned long size);
void __tsan_write_range(void* addr, unsigned long size);
#endif
}
#else
#define STRATA_SIM_NO_TSAN
#endif

#if STRATA_SIM_ASAN
extern "C" {
void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom, size_t size);
void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old,
                                     size_t* size_old);
void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
void __asan_poison_memory_region(void const volatile* addr, size_t size);
}
#endif

namespace strata::sim::detail {

inline void tsan_release([[maybe_unused]] void* addr) {
#if STRATA_SIM_TSAN
  __tsan_release(addr);
#endif
}
inline void tsan_acquire([[maybe_unused]] void* addr) {
#if STRATA_SIM_TSAN
  __tsan_acquire(addr);
#endif
}
/// Tells ThreadSanitizer that the running CUDA thread reads [p, p + n) (for memory that the
/// simulator reads on its behalf, e.g. ldmatrix rows read by the lane completing the op).
inline void tsan_read([[maybe_unused]] const void* p, [[maybe_unused]] size_t n) {
#if STRATA_SIM_TSAN
  __tsan_read_range(const_cast<void*>(p), static_cast<long>(n));
#endif
}
/// Tells ThreadSanitizer that the running CUDA thread writes [p, p + n) (for memory the
/// simulator writes on its behalf, e.g. stmatrix rows, an mbarrier's init).
inline void tsan_write([[maybe_unused]] const void* p, [[maybe_unused]] size_t n) {
#if STRATA_SIM_TSAN
  __tsan_write_range(const_cast<void*>(p), static_cast<long>(n));
#endif
}
inline void asan_poison([[maybe_unused]] const void* p, [[maybe_unused]] size_t n) {
#if STRATA_SIM_ASAN
  __asan_poison_memory_region(p, n);
#endif
}
inline void asan_unpoison([[maybe_unused]] const void* p, [[maybe_unused]] size_t n) {
#if STRATA_SIM_ASAN
  __asan_unpoison_memory_region(p, n);
#endif
}

}  // namespace strata::sim::detail
