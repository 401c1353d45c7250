/// \file
/// Shared memory in the simulator.
///
/// Static `__shared__` variables become thread-local statics (a block runs on one worker OS
/// thread, so each concurrently running block has its own copy), placed in the section
/// `strata_sim_smem` so that the simulator can find and poison them at every block start.
/// Under ASan and TSan they are plain statics instead (red zones; initialisation guards TSan
/// understands), so sanitizer builds run one block at a time and do not poison static shared
/// memory.
///
/// Caveat: g++ ignores the section attribute for statics of template instantiations (it puts
/// them in COMDAT sections), so with g++ only static shared memory of non-template kernels is
/// poisoned; with clang all of it is. Dynamic shared memory is always poisoned.
///
/// Dynamic shared memory is an arena that starts 1024-byte aligned (the alignment of Hopper's
/// 128-byte swizzle pattern, which TMA and wgmma compute from address bits) and ends less than
/// 1 KiB below 1 MiB of PROT_NONE address space: a kernel that reads or writes far past the
/// bytes its launch requested gets a fault naming the thread and byte offset; the slack before
/// the guard page holds a canary checked at block end (a write there is a fault; under ASan a
/// read there is one too).
#pragma once

#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "strata/sim/sanitizers.hpp"

#ifndef DOXYGEN
// Bounds of the static-shared-memory section, defined by the linker (weak: absent if unused).
extern "C" char __start_strata_sim_smem[] __attribute__((weak));
extern "C" char __stop_strata_sim_smem[] __attribute__((weak));
#endif

namespace strata::sim::detail {

/// This OS thread's instance of the `strata_sim_smem` TLS section (static shared memory).
struct StaticSmemRange {
  unsigned char* lo = nullptr;
  size_t bytes = 0;
};

inline int find_static_smem_cb(dl_phdr_info* info, size_t, void* data) {
  auto* r = static_cast<StaticSmemRange*>(data);
  const auto start = reinterpret_cast<uintptr_t>(__start_strata_sim_smem);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_TLS) continue;
    const uintptr_t seg = info->dlpi_addr + ph.p_vaddr;
    if (start < seg || start >= seg + ph.p_memsz || !info->dlpi_tls_data) continue;
    r->lo = static_cast<unsigned char*>(info->dlpi_tls_data) + (start - seg);
    r->bytes = size_t(__stop_strata_sim_smem - __start_strata_sim_smem);
    return 1;
  }
  return 0;
}

/// Static shared memory of the calling OS thread (empty under the sanitizers, or when no kernel
/// has any).
inline StaticSmemRange static_smem_range() {
  thread_local StaticSmemRange r = [] {
    StaticSmemRange out;
#if !STRATA_SIM_ASAN && !STRATA_SIM_TSAN
    if (__start_strata_sim_smem && (__stop_strata_sim_smem - __start_strata_sim_smem) > 0)
      dl_iterate_phdr(&find_static_smem_cb, &out);
#endif
    return out;
  }();
  return r;
}

/// Dynamic shared memory of one worker: `bytes` usable bytes ending right below a guard page.
class DynamicSmemArena {
 public:
  static constexpr size_t kCanary = 0xA5;
  static constexpr size_t kGuardBytes = size_t(1) << 20;
  /// Alignment of the first byte (the guard page is page aligned, the data ends at a multiple).
  static constexpr size_t kAlign = 1024;

  DynamicSmemArena() = default;
  DynamicSmemArena(const DynamicSmemArena&) = delete;
  DynamicSmemArena& operator=(const DynamicSmemArena&) = delete;
  ~DynamicSmemArena() { release(); }

  /// Makes room for `bytes`; returns false if memory could not be mapped.
  bool reserve(size_t bytes) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    const size_t need = (bytes + kAlign + page - 1) / page * page + kGuardBytes;  // data + guard
    if (need > mapped_) {
      release();
      void* p = mmap(nullptr, need, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) return false;
      base_ = static_cast<unsigned char*>(p);
      mapped_ = need;
      guard_ = base_ + need - kGuardBytes;
      if (mprotect(guard_, kGuardBytes, PROT_NONE) != 0) return false;
    }
    bytes_ = bytes;
    const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
    data_ = guard_ - rounded;
    return true;
  }
  unsigned char* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  /// The guard region: an access here is an overrun of dynamic shared memory.
  bool in_guard(const void* p) const {
    const auto* c = static_cast<const unsigned char*>(p);
    return guard_ && c >= guard_ && c < base_ + mapped_;
  }
  /// Poisons the data (optionally) and writes the canary into the slack before the guard page.
  void start_block(bool poison) {
    asan_unpoison(data_, size_t(guard_ - data_));
    if (poison) std::memset(data_, 0xFF, bytes_);
    std::memset(data_ + bytes_, int(kCanary), size_t(guard_ - (data_ + bytes_)));
    asan_poison(data_ + bytes_, size_t(guard_ - (data_ + bytes_)));
  }
  /// Byte offset of the first damaged canary byte past the requested size, or -1.
  long canary_damage() const {
    asan_unpoison(data_ + bytes_, size_t(guard_ - (data_ + bytes_)));
    for (unsigned char* p = data_ + bytes_; p < guard_; ++p)
      if (*p != kCanary) return long(p - data_);
    return -1;
  }

 private:
  void release() {
    if (base_) munmap(base_, mapped_);
    base_ = guard_ = data_ = nullptr;
    mapped_ = bytes_ = 0;
  }
  unsigned char* base_ = nullptr;
  unsigned char* guard_ = nullptr;
  unsigned char* data_ = nullptr;
  size_t mapped_ = 0;
  size_t bytes_ = 0;
};

}  // namespace strata::sim::detail
