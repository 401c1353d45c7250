/// \file
/// Global-memory traffic of a launch: the bytes its kernel reads from and writes to the tensors
/// of the problem, for tests that hold a kernel to a cost model's minimum.
///
/// Kernels in the simulator are plain C++, so their loads and stores cannot be intercepted at
/// run time: the compiler has to call out on each of them. A *traffic build* of a translation
/// unit compiles it (g++ 12) with
///
///   -fsanitize=kernel-address --param=asan-instrumentation-with-call-threshold=0
///   --param=asan-stack=0 --param=asan-globals=0 --param=asan-instrument-allocas=0
///   -fno-sanitize-address-use-after-scope -DSTRATA_SIM_TRAFFIC=1
///
/// and passes no -fsanitize option to the linker. kernel-address with the call threshold at 0
/// turns every load and store through a pointer into a call __asan_{load,store}{1,2,4,8,16}_noabort
/// (addr) or __asan_{load,store}N_noabort(addr, size) and expects the kernel, not libasan, to
/// provide them; no shadow memory is touched, no runtime is linked, and this header defines the
/// callbacks. asan-stack=0, asan-globals=0, asan-instrument-allocas=0 and no use-after-scope keep
/// the compiler from poisoning a shadow that does not exist; accesses to locals and to named
/// globals are not instrumented, so only memory reached through pointers (the problem's tensors) is
/// counted.
///
/// The callbacks count bytes that fall inside *watched* ranges (traffic::watch) and only on a
/// worker OS thread while it runs the blocks of a launch: host code filling inputs or reading
/// outputs, the simulator's bookkeeping, shared memory and fiber stacks are never counted.
/// Counts accumulate per OS thread and are added to the launch's Counters when the worker is
/// done (global_load_bytes, global_store_bytes). cp.async copies with memcpy, which is not
/// instrumented: emu::cp_async reports the copy explicitly (traffic_cp_async) and the copy
/// itself (PendingCopy::land) is left uninstrumented, so nothing is counted twice.
///
/// With Options::access_profile set, the same callbacks also log each access to the running
/// block's shared memory, and each watched global access, with the return address of the callback
/// (the instruction that made it) into the CUDA thread's access log. At every completed
/// __syncthreads and at the end of a block the runtime groups each warp's logs into warp-wide
/// requests (the k-th execution of an instruction by each lane) and counts shared-memory wavefronts
/// and bank conflicts, and global 32-byte sectors (sim/access_model.hpp;
/// Counters::smem_load/smem_store, gmem_load/gmem_store/ gmem_cp_async). Static __shared__
/// variables of template kernels are not recognised as shared memory under g++ (sim/smem.hpp: they
/// leave the section), so kernels should use dynamic shared memory where their accesses are to be
/// counted.
///
/// g++ emits an atomic read-modify-write (atomicAdd, ...) as one store check: it counts once,
/// as a store. A memcpy whose size is a run-time value or large stays a call into libc, which is
/// not instrumented: kernels should load and store through typed pointers. The callbacks are inline
/// extern "C" functions marked `used`, so each traffic TU emits them in a COMDAT and any number of
/// traffic TUs link together; all TUs of one program that include Strata must be traffic builds
/// (the launch code differs between the two builds). Outside a traffic build nothing here runs: the
/// counters stay 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "strata/sim/access_model.hpp"
#include "strata/sim/counters.hpp"
#include "strata/sim/runtime.hpp"
#include "strata/sim/sanitizers.hpp"

#if STRATA_SIM_TRAFFIC && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#error "STRATA_SIM_TRAFFIC needs -fsanitize=kernel-address (see strata/sim/traffic.hpp)"
#endif

namespace strata::sim::detail {

struct TrafficRange {
  uintptr_t lo, hi;  // [lo, hi)
};
/// The watched ranges as the callbacks read them: sorted, disjoint, with their hull as a cheap
/// first test. Changed only between launches, so the workers read it without a lock.
struct TrafficTable {
  const TrafficRange* r = nullptr;
  size_t n = 0;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
};
inline TrafficTable g_traffic_table;

inline std::vector<TrafficRange>& traffic_ranges() {
  static std::vector<TrafficRange> v;
  return v;
}
inline void publish_traffic_table() {
  const auto& v = traffic_ranges();
  g_traffic_table =
      v.empty() ? TrafficTable{} : TrafficTable{v.data(), v.size(), v.front().lo, v.back().hi};
}

#if STRATA_SIM_TRAFFIC
// Per OS thread: counting on (between traffic_begin and traffic_end) and the bytes so far.
// volatile: g++ treats the instrumentation callbacks as builtins that touch no user memory; in a
// function whose only calls are instrumentation it folds a count read after them to its value
// before them, and could likewise drop the store that turns counting on as dead.
// (g_traffic_on itself lives in sim/access_model.hpp: the runtime turns it off while it tallies.)
inline thread_local volatile uint64_t g_traffic_load = 0;
inline thread_local volatile uint64_t g_traffic_store = 0;

/// Bytes of [a, a + n) inside watched ranges. Everything the callbacks reach must be
/// uninstrumented (an instrumented helper would call back into them), hence no std::min.
STRATA_SIM_NO_TRAFFIC inline uint64_t traffic_watched(uintptr_t a, uintptr_t n) {
  const TrafficTable& t = g_traffic_table;
  const uintptr_t e = a + n;
  if (e <= t.lo || a >= t.hi) return 0;
  size_t i = 0, j = t.n;  // the first range that ends after a
  while (i < j) {
    const size_t m = (i + j) / 2;
    if (t.r[m].hi <= a)
      i = m + 1;
    else
      j = m;
  }
  uint64_t bytes = 0;
  for (; i < t.n && t.r[i].lo < e; ++i)
    bytes += (e < t.r[i].hi ? e : t.r[i].hi) - (a > t.r[i].lo ? a : t.r[i].lo);
  return bytes;
}
/// One load or store of the running kernel, made by the instruction at `pc`: shared-memory
/// accesses and watched global ones go to the CUDA thread's access log (tallied per warp into
/// requests, wavefronts and sectors: sim/access_model.hpp); watched bytes are counted.
STRATA_SIM_NO_TRAFFIC inline void traffic_access(const void* p, uintptr_t n, uintptr_t pc,
                                                 bool store) {
  if (!g_traffic_on) return;
  const uintptr_t a = uintptr_t(p);
  Thread* t = g_access_profile ? g_cur : nullptr;
  if (t && in_shared(a)) {
    t->alog.push(pc, a, uint32_t(n), store ? kSmemStore : kSmemLoad);
    return;
  }
  const uint64_t w = traffic_watched(a, n);
  if (!w) return;
  if (store)
    g_traffic_store = g_traffic_store + w;
  else
    g_traffic_load = g_traffic_load + w;
  if (t) t->alog.push(pc, a, uint32_t(n), store ? kGmemStore : kGmemLoad);
}

/// A worker starts running the blocks of a launch.
STRATA_SIM_NO_TRAFFIC inline void traffic_begin() {
  g_traffic_load = 0;
  g_traffic_store = 0;
  g_traffic_on = true;
}
/// The worker is done: its bytes go to its counters.
STRATA_SIM_NO_TRAFFIC inline void traffic_end(Counters& c) {
  g_traffic_on = false;
  c.global_load_bytes += g_traffic_load;
  c.global_store_bytes += g_traffic_store;
}
/// A cp.async of the running thread, issued at `site`: its global source bytes (`src_bytes` of
/// them are read) and its shared destination go to the access log under one key per site.
STRATA_SIM_NO_TRAFFIC inline void traffic_cp_async(void* smem, const void* gmem, int bytes,
                                                   int src_bytes, const Site& site) {
  if (!g_traffic_on) return;
  Thread* t = g_access_profile ? g_cur : nullptr;
  // a key no code address takes: the site's file-name literal and line, tagged in the top bit
  const uintptr_t key = (uintptr_t(1) << 63) | ((uintptr_t(site.file_name()) << 16) ^ site.line());
  if (t) t->alog.push(key, uintptr_t(smem), uint32_t(bytes), kSmemStore);
  if (src_bytes <= 0) return;
  const uint64_t w = traffic_watched(uintptr_t(gmem), uintptr_t(src_bytes));
  if (!w) return;
  g_traffic_load = g_traffic_load + w;
  if (t) t->alog.push(key, uintptr_t(gmem), uint32_t(src_bytes), kGmemCpAsync);
}
#else
inline void traffic_begin() {}
inline void traffic_end(Counters&) {}
inline void traffic_cp_async(void*, const void*, int, int, const Site&) {}
#endif

}  // namespace strata::sim::detail

#if STRATA_SIM_TRAFFIC
// The calls -fsanitize=kernel-address emits (outline instrumentation, recoverable: _noabort).
#define STRATA_SIM_TRAFFIC_CALLBACK extern "C" inline __attribute__((used, no_sanitize_address))
// The return address names the instruction: the k-th execution of it by each lane of a warp is
// one warp-wide request.
#define STRATA_SIM_TRAFFIC_PC uintptr_t(__builtin_return_address(0))
#define STRATA_SIM_TRAFFIC_FIXED(n)                                            \
  STRATA_SIM_TRAFFIC_CALLBACK void __asan_load##n##_noabort(void* p) {         \
    ::strata::sim::detail::traffic_access(p, n, STRATA_SIM_TRAFFIC_PC, false); \
  }                                                                            \
  STRATA_SIM_TRAFFIC_CALLBACK void __asan_store##n##_noabort(void* p) {        \
    ::strata::sim::detail::traffic_access(p, n, STRATA_SIM_TRAFFIC_PC, true);  \
  }
STRATA_SIM_TRAFFIC_FIXED(1)
STRATA_SIM_TRAFFIC_FIXED(2)
STRATA_SIM_TRAFFIC_FIXED(4)
STRATA_SIM_TRAFFIC_FIXED(8)
STRATA_SIM_TRAFFIC_FIXED(16)
#undef STRATA_SIM_TRAFFIC_FIXED
// (the size is g++'s built-in declaration's type, a signed pointer-sized integer)
STRATA_SIM_TRAFFIC_CALLBACK void __asan_loadN_noabort(void* p, intptr_t n) {
  ::strata::sim::detail::traffic_access(p, uintptr_t(n), STRATA_SIM_TRAFFIC_PC, false);
}
STRATA_SIM_TRAFFIC_CALLBACK void __asan_storeN_noabort(void* p, intptr_t n) {
  ::strata::sim::detail::traffic_access(p, uintptr_t(n), STRATA_SIM_TRAFFIC_PC, true);
}
// Emitted before calls that do not return (throw, abort), and around the dynamic initialisers
// of a TU (ASan's init-order check); there is no shadow to clean or poison.
STRATA_SIM_TRAFFIC_CALLBACK void __asan_handle_no_return() {}
STRATA_SIM_TRAFFIC_CALLBACK void __asan_before_dynamic_init(const void*) {}
STRATA_SIM_TRAFFIC_CALLBACK void __asan_after_dynamic_init() {}
#undef STRATA_SIM_TRAFFIC_CALLBACK
#undef STRATA_SIM_TRAFFIC_PC
#endif

namespace strata::sim::traffic {

/// True in a traffic build (STRATA_SIM_TRAFFIC): only then are global bytes counted.
inline constexpr bool kEnabled = STRATA_SIM_TRAFFIC != 0;

/// Counts accesses to [p, p + bytes) from now on (overlapping ranges count once). Between
/// launches only: running workers read the ranges without a lock.
inline void watch(const void* p, size_t bytes) {
  if (bytes == 0) return;
  uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + bytes;
  auto& v = detail::traffic_ranges();
  std::vector<detail::TrafficRange> out;
  out.reserve(v.size() + 1);
  size_t i = 0;
  for (; i < v.size() && v[i].hi < lo; ++i) out.push_back(v[i]);
  for (; i < v.size() && v[i].lo <= hi; ++i) {  // overlapping or adjacent: merge
    lo = v[i].lo < lo ? v[i].lo : lo;
    hi = v[i].hi > hi ? v[i].hi : hi;
  }
  out.push_back({lo, hi});
  for (; i < v.size(); ++i) out.push_back(v[i]);
  v.swap(out);
  detail::publish_traffic_table();
}

/// Stops counting accesses to [p, p + bytes) (a range may be split). Between launches only.
inline void unwatch(const void* p, size_t bytes) {
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + bytes;
  auto& v = detail::traffic_ranges();
  std::vector<detail::TrafficRange> out;
  out.reserve(v.size() + 1);
  for (const auto& r : v) {
    if (r.hi <= lo || r.lo >= hi) {
      out.push_back(r);
      continue;
    }
    if (r.lo < lo) out.push_back({r.lo, lo});
    if (r.hi > hi) out.push_back({hi, r.hi});
  }
  v.swap(out);
  detail::publish_traffic_table();
}

/// Stops counting everywhere. Between launches only.
inline void clear() {
  detail::traffic_ranges().clear();
  detail::publish_traffic_table();
}

/// Bytes currently watched (the sum of the disjoint ranges).
inline size_t watched_bytes() {
  size_t s = 0;
  for (const auto& r : detail::traffic_ranges()) s += r.hi - r.lo;
  return s;
}

}  // namespace strata::sim::traffic
