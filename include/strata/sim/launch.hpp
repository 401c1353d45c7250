/// \file
/// Running a launch in the simulator: blocks are spread over worker OS threads, each block runs
/// to completion on one of them, and the first fault aborts the launch.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "strata/arch/sfu.hpp"
#include "strata/sim/counters.hpp"
#include "strata/sim/options.hpp"
#include "strata/sim/runtime.hpp"
#include "strata/sim/traffic.hpp"
#include "strata/status.hpp"

namespace strata::sim::detail {

/// Per-OS-thread simulator state, kept between launches so stacks and arenas are reused.
/// On the heap: a Block holds the Hopper state's fixed arrays (sim/barrier_state.hpp), too big
/// for every thread's static TLS (a dlopen-ed simulator library would feel it).
inline Block& worker_block() {
  thread_local std::unique_ptr<Block> b = std::make_unique<Block>();
  return *b;
}

/// Prepares `b` for blocks of shape `block` with `smem` bytes of dynamic shared memory.
inline bool prepare_worker(Block& b, dim3 grid, dim3 block, size_t smem, const Options& o) {
  const int n = int(block.x * block.y * block.z);
  b.bdim = block;
  b.gdim = grid;
  b.n = n;
  b.order = o.schedule.kind;
  b.defer_cp_async = o.defer_cp_async;
  b.ctr = Counters{};
  if (!b.stacks.ensure(size_t(n), o.stack_bytes)) return false;
  if (!b.dyn.reserve(smem)) return false;
  b.th.resize(size_t(n));
  b.rq_mask = int(std::bit_ceil(unsigned(n))) - 1;
  b.rq.assign(size_t(b.rq_mask) + 1, 0);
  b.ids.assign(size_t(n), 0);
  b.warps.assign(size_t((n + 31) / 32), Warp{});
  b.reg_entry = o.entry_registers > 0 ? o.entry_registers : std::min(248, 65536 / n / 8 * 8);
  // resized, not refilled, every launch: mbarrier.init sets its slot's entries, and the stamps
  // are cleared by run_block after a block that used them (Block::hopper_used)
  b.mbar_seen.resize(size_t(kMaxMbarriers) * size_t(n));
  b.smem_stamps.resize((smem + 15) / 16);
  if (b.wg_stages.size() < size_t((n + 31) / 32)) b.wg_stages.resize(size_t((n + 31) / 32));
  for (int i = 0; i < n; ++i) {
    Thread& t = b.th[size_t(i)];
    t.tid = make_uint3(unsigned(i) % block.x, unsigned(i) / block.x % block.y,
                       unsigned(i) / (block.x * block.y));
    t.lane = i % 32;
    t.warp = i / 32;
    b.warps[size_t(i / 32)].present |= 1u << (i % 32);
  }
  b.tp = b.th.data();
  b.wp = b.warps.data();
  b.rqp = b.rq.data();
  b.idp = b.ids.data();
  b.sp = b.stacks.stacks.data();
  b.msp = b.mbar_seen.data();
  b.stp = b.smem_stamps.empty() ? nullptr : b.smem_stamps.data();
  b.wsp = b.wg_stages.data();
  install_segv_handler();
  return true;
}

/// Runs every block of a launch whose kernel body is `body(arg)`.
inline Status run_launch(dim3 grid, dim3 block, size_t smem, void (*body)(void*), void* arg) {
  const Options o = options();
  if (!o.env_error.empty()) return Status::InvalidArgument(o.env_error);
  // strata::launch validates fully; this guards direct callers of sim::run
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (threads == 0 || threads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0)
    return Status::InvalidLaunch("strata::sim: empty grid or block, or more than 1024 threads");
  const unsigned long long nblocks = 1ull * grid.x * grid.y * grid.z;
  std::atomic<unsigned long long> next{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::string first_fault;
  Counters total;
  total.launches = 1;

  auto worker = [&] {
    Block& b = worker_block();
    if (!prepare_worker(b, grid, block, smem, o)) {
      std::lock_guard<std::mutex> lk(mu);
      if (first_fault.empty())
        first_fault = "simulator could not map fiber stacks or shared memory";
      stop = true;
      return;
    }
    b.body = body;
    b.body_arg = arg;
    const StaticSmemRange st = static_smem_range();
    g_smem_lo = reinterpret_cast<uintptr_t>(b.dyn.data());
    g_smem_hi = g_smem_lo + b.dyn.bytes();
    g_static_smem_lo = reinterpret_cast<uintptr_t>(st.lo);
    g_static_smem_hi = g_static_smem_lo + st.bytes;
    g_access_profile = o.access_profile;
    ::strata::arch::detail::g_sfu_ops = &b.ctr.sfu;  // strata/arch/sfu.hpp counts from here
    traffic_begin();  // a traffic build counts watched global bytes from here (sim/traffic.hpp)
    for (;;) {
      if (stop.load(std::memory_order_relaxed)) break;
      const unsigned long long id = next.fetch_add(1);
      if (id >= nblocks) break;
      b.bid = dim3(unsigned(id % grid.x), unsigned(id / grid.x % grid.y),
                   unsigned(id / (1ull * grid.x * grid.y)));
      // the random schedule of a block depends only on the seed and the block id
      b.rng = o.schedule.seed * 0xD1B54A32D192ED03ull + id + 1;
      b.dyn.start_block(o.poison_smem);
      if (o.poison_smem && st.bytes) std::memset(st.lo, 0xFF, st.bytes);
      if (!run_block(b)) {
        std::lock_guard<std::mutex> lk(mu);
        if (first_fault.empty()) first_fault = b.fault;
        stop = true;
        break;
      }
    }
    traffic_end(b.ctr);
    ::strata::arch::detail::g_sfu_ops = nullptr;
    std::lock_guard<std::mutex> lk(mu);
    total += b.ctr;
  };

  unsigned nw = o.workers;
  if (nw > nblocks) nw = unsigned(nblocks);
#if STRATA_SIM_ASAN || STRATA_SIM_TSAN
  nw = 1;  // static shared memory is a plain static under the sanitizers (see sim/cuda_host.hpp)
#endif
  if (nw <= 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(nw);
    for (unsigned w = 0; w < nw; ++w) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
  }
  publish_launch_counters(total);
  if (!first_fault.empty()) return Status::KernelFault("strata::sim: " + first_fault);
  return Status::Ok();
}

}  // namespace strata::sim::detail

namespace strata::sim {

/// Runs `kernel` over `grid` x `block` threads in the simulator, with `smem_bytes` of dynamic
/// shared memory. The arguments are converted to the kernel's parameter types once and each
/// CUDA thread receives its own copy, as on the GPU. Returns the first fault, if any. The launch
/// configuration is validated by strata::launch, not here.
template <class... Params, class... Args>
Status run(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "wrong number of kernel arguments");
  struct Body {
    void (*kernel)(Params...);
    std::tuple<std::decay_t<Params>...> params;
    static void run(void* self) {
      auto* b = static_cast<Body*>(self);
      std::apply(b->kernel, b->params);
    }
  };
  Body body{kernel, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
  return detail::run_launch(grid, block, smem_bytes, &Body::run, &body);
}

}  // namespace strata::sim
