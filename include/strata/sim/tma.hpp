/// \file
/// Emulated TMA (cp.async.bulk.tensor, strata/arch/tma.hpp): tiled loads that complete
/// transaction bytes on an mbarrier, and stores in bulk groups.
///
/// A load checks its tensor map (one Strata's encoder made, of the instruction's rank), its
/// destination's alignment (128 bytes, or the swizzle pattern's 256/512/1024 so that the pattern
/// starts at the buffer) and that no other load in flight writes the same bytes (a stage reused
/// before its consumers released it). The destination then reads as NaN (0xFF bytes) until the
/// data lands, which it does lazily: when the barrier phase the load completes has all its
/// arrivals and a thread waits for it (sim/hopper_sync.hpp). A consumer that skips the wait reads
/// NaN; byte counts that do not add up are faults.
///
/// A store fingerprints its shared source when issued and reads it at
/// cp.async.bulk.wait_group.read (or when the thread exits): a source changed in between is a
/// fault, as is a source chunk written by stmatrix or arch::store16 with no fence.proxy.async by
/// its writer since.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "strata/arch/tensor_map.hpp"
#include "strata/sim/hopper_sync.hpp"
#include "strata/sim/tma_box.hpp"

namespace strata::sim::emu {

namespace tma_detail {

/// The tensor map at `map`, or a fault.
STRATA_SIM_NO_TSAN inline const tma::SimEncoding& decode(Thread& t, const void* map, int rank,
                                                         const char* op, const ::strata::Site& s) {
  if (reinterpret_cast<uintptr_t>(map) % 64)
    detail::fault_at(t, s, std::string(op) + ": the tensor map is not 64-byte aligned");
  const auto& m = *static_cast<const tma::SimEncoding*>(map);
  if (m.magic != tma::SimEncoding::kMagic)
    detail::fault_at(t, s,
                     std::string(op) +
                         ": the tensor map was not filled by strata::tma::encode_tiled (or was "
                         "overwritten)");
  if (m.rank != rank)
    detail::fault_at(t, s,
                     std::string(op) + ": a rank-" + std::to_string(m.rank) +
                         " tensor map used by a " + std::to_string(rank) + "D copy");
  return m;
}

STRATA_SIM_NO_TSAN inline void check_smem_box(Thread& t, const void* p, const tma::SimEncoding& m,
                                              const char* op, const ::strata::Site& s) {
  const auto swz = tma::Swizzle(m.swizzle);
  const int align = tma::swizzle_alignment(swz);
  if (reinterpret_cast<uintptr_t>(p) % unsigned(align))
    detail::fault_at(
        t, s,
        std::string(op) + ": the shared-memory box at " + hopper_detail::where(p) + " is not " +
            std::to_string(align) + "-byte aligned" +
            (swz == tma::Swizzle::kNone ? ""
                                        : " (the " + std::to_string(tma::swizzle_span(swz)) +
                                              "B swizzle pattern would not start at the box)"));
}

}  // namespace tma_detail

/// cp.async.bulk.tensor.{Rank}d.shared::cluster.global.mbarrier::complete_tx::bytes.
template <int Rank>
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void tma_load(void* dst, const void* map, void* bar,
                                                              const int32_t (&coord)[Rank],
                                                              const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  Block& b = *detail::g_block;
  const char* op = "cp.async.bulk.tensor (TMA load)";
  const tma::SimEncoding& m = tma_detail::decode(t, map, Rank, op, s);
  tma_detail::check_smem_box(t, dst, m, op, s);
  const int slot = hopper_detail::mbarrier_slot(t, bar, op, s);
  uint64_t bytes = uint64_t(tma::element_bytes(tma::DataType(m.dtype)));
  for (int i = 0; i < Rank; ++i) bytes *= m.box_dim[i];
  auto* d = static_cast<unsigned char*>(dst);
  for (int k = 0; k < b.n_tma_loads; ++k) {
    const detail::TmaLoad& o = b.tma_loads[k];
    if (d < o.dst + o.bytes && o.dst < d + bytes)
      detail::fault_at(t, s,
                       std::string(op) + " into " + hopper_detail::where(d) + " (" +
                           std::to_string(bytes) + " bytes) while the TMA load issued at " +
                           detail::site_str(o.site) + " into " + hopper_detail::where(o.dst) +
                           " has not landed (a stage reused before its consumers released it)");
  }
  for (int k = 0; k < b.n_wg_fp; ++k) {
    const detail::WgmmaFootprint& o = b.wg_fp[k];
    if ((d < o.hi[0] && o.lo[0] < d + bytes) || (d < o.hi[1] && o.lo[1] < d + bytes))
      detail::fault_at(t, s,
                       std::string(op) + " into " + hopper_detail::where(d) + " (" +
                           std::to_string(bytes) + " bytes) while the wgmma issued at " +
                           detail::site_str(o.site) +
                           " still reads it (wait for its group before refilling the stage)");
  }
  if (b.n_tma_loads == detail::kMaxTmaLoads)
    detail::fault_at(t, s,
                     "more than " + std::to_string(detail::kMaxTmaLoads) +
                         " TMA loads in flight in one block (the simulator's limit)");
  detail::TmaLoad& ld = b.tma_loads[b.n_tma_loads++];
  b.hopper_used = true;
  ld.dst = d;
  ld.bytes = uint32_t(bytes);
  ld.slot = slot;
  ld.map = m;
  ld.at = detail::TmaCoords{};
  for (int i = 0; i < Rank; ++i) ld.at.c[i] = coord[i];
  ld.site = s;
  std::memset(d, 0xFF, size_t(bytes));  // NaN until it lands
  detail::clear_generic_stamps(reinterpret_cast<uintptr_t>(d), bytes);
  // ThreadSanitizer: the copy (its poisoning here, its landing later, wherever that runs)
  // happens before the completion of the phase it belongs to
  detail::tsan_release(&b.mbar[slot].tsan[b.mbar[slot].phase & 3]);
  ++b.ctr.tma_loads;
  b.ctr.tma_load_bytes += bytes;
  if (b.mbar[slot].pending == 0 && b.mbar[slot].waiters > 0) hopper_detail::land_tma_loads(t, slot);
}

/// cp.async.bulk.tensor.{Rank}d.global.shared::cta.bulk_group: a store of the box at `src`.
template <int Rank>
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void tma_store(const void* map, const void* src,
                                                               const int32_t (&coord)[Rank],
                                                               const ::strata::Site& s) {
  Thread& t = *detail::g_cur;
  Block& b = *detail::g_block;
  const char* op = "cp.async.bulk.tensor (TMA store)";
  const tma::SimEncoding& m = tma_detail::decode(t, map, Rank, op, s);
  tma_detail::check_smem_box(t, src, m, op, s);
  uint64_t bytes = uint64_t(tma::element_bytes(tma::DataType(m.dtype)));
  for (int i = 0; i < Rank; ++i) bytes *= m.box_dim[i];
  const auto* p = static_cast<const unsigned char*>(src);
  // the async proxy reads the source: generic writes to it (stmatrix, store16) need a
  // fence.proxy.async by their writer since
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (b.stp && a >= detail::g_smem_lo && a + bytes <= detail::g_smem_hi)
    for (uint64_t c = (a - detail::g_smem_lo) / 16; c < (a + bytes - detail::g_smem_lo) / 16; ++c) {
      const uint64_t stamp = b.stp[c];
      if (!stamp) continue;
      const Thread& w = b.tp[(stamp >> 32) - 1];
      if (w.proxy_fences == uint32_t(stamp))
        detail::fault_at(
            t, s,
            std::string(op) + " reads " +
                hopper_detail::where(reinterpret_cast<const void*>(detail::g_smem_lo + 16 * c)) +
                ", which " + detail::who(w) +
                " wrote (stmatrix or st.shared) and has not ordered for the async proxy since: "
                "fence.proxy.async is missing between the write and the store");
    }
  detail::TmaStore st;
  st.src = p;
  st.bytes = uint32_t(bytes);
  st.print = detail::fingerprint(p, size_t(bytes));
  st.map = m;
  for (int i = 0; i < Rank; ++i) st.at.c[i] = coord[i];
  st.site = s;
  t.bulk_open.push_back(st);
  ++b.ctr.tma_stores;
  b.ctr.tma_store_bytes += bytes;
}

/// cp.async.bulk.commit_group: closes the bulk group of the TMA stores issued since the last.
STRATA_SIM_NO_TSAN inline void tma_store_commit() {
  Thread& t = *detail::g_cur;
  t.bulk_groups.push_back(std::move(t.bulk_open));
  t.bulk_open.clear();
}

/// cp.async.bulk.wait_group.read N: all but the N newest groups have read their sources (the
/// emulation performs those stores here).
STRATA_SIM_NO_TSAN STRATA_SIM_NO_TRAFFIC inline void tma_store_wait_read(int n) {
  Thread& t = *detail::g_cur;
  if (t.bulk_groups.size() <= size_t(n)) return;
  const size_t done = t.bulk_groups.size() - size_t(n);
  for (size_t g = 0; g < done; ++g)
    for (const auto& st : t.bulk_groups[g]) {
      if (detail::fingerprint(st.src, st.bytes) != st.print)
        detail::fault_at(t, st.site,
                         "the shared source of this TMA store changed before "
                         "cp.async.bulk.wait_group.read (the store reads it asynchronously)");
      detail::tma_box_store(st.src, st.map, st.at);
    }
  t.bulk_groups.erase(t.bulk_groups.begin(), t.bulk_groups.begin() + long(done));
}

}  // namespace strata::sim::emu
