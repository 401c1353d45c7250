/// \file
/// Simulator options: the thread schedule, the number of worker threads, fiber stack size and
/// the checks. Read once from the environment (STRATA_SIM_SCHEDULE, STRATA_SIM_WORKERS,
/// STRATA_SIM_STACK_KB), then changeable through the API.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace strata::sim {

/// Order in which the simulator runs the CUDA threads of a block between synchronisation points.
enum class ScheduleKind { kForward, kReverse, kRandom };

/// A thread schedule: forward, reverse, or random with a seed. A kernel with a missing barrier
/// often passes the forward schedule and fails another one, so tests run all of them.
struct Schedule {
  ScheduleKind kind = ScheduleKind::kForward;
  uint64_t seed = 0;  ///< only used by kRandom

  static Schedule Forward() { return {ScheduleKind::kForward, 0}; }
  static Schedule Reverse() { return {ScheduleKind::kReverse, 0}; }
  static Schedule Random(uint64_t seed) { return {ScheduleKind::kRandom, seed}; }

  /// "forward", "reverse" or "random:SEED", the syntax of STRATA_SIM_SCHEDULE.
  std::string to_string() const {
    switch (kind) {
      case ScheduleKind::kForward:
        return "forward";
      case ScheduleKind::kReverse:
        return "reverse";
      case ScheduleKind::kRandom:
        return "random:" + std::to_string(seed);
    }
    return "?";
  }

  /// Parses "forward", "reverse" or "random:SEED" (SEED a decimal integer); false if malformed.
  static bool parse(const char* text, Schedule* out) {
    if (!text) return false;
    if (!std::strcmp(text, "forward")) return *out = Forward(), true;
    if (!std::strcmp(text, "reverse")) return *out = Reverse(), true;
    if (!std::strncmp(text, "random:", 7) && text[7] != '\0') {
      char* end = nullptr;
      const unsigned long long s = std::strtoull(text + 7, &end, 10);
      if (*end != '\0') return false;
      return *out = Random(s), true;
    }
    return false;
  }
};

/// Global simulator options. The first call reads the environment; launches read them when they
/// start.
struct Options {
  Schedule schedule;
  /// OS threads over which the blocks of a launch are spread (a block runs on one of them).
  unsigned workers = 1;
  /// Stack of each CUDA-thread fiber; a guard page below it turns overflow into a crash.
  size_t stack_bytes = 256 * 1024;
  /// Largest dynamic shared memory a launch may request (sm_90's opt-in limit by default).
  size_t max_dynamic_smem = 227 * 1024;
  /// Fill shared memory with 0xFF bytes (NaN for f32, f16 and bf16) at block start.
  bool poison_smem = true;
  /// cp.async data lands at cp.async.wait_group (and the destination reads NaN until then).
  bool defer_cp_async = true;
  /// Traffic build only: log every shared-memory and watched global access to count requests,
  /// wavefronts, bank conflicts and sectors (Counters::smem_*, gmem_*; sim/access_model.hpp).
  /// Off by default: it slows a launch several times over.
  bool access_profile = false;
  /// Registers per thread a block owns at launch, the pool setmaxnreg redistributes
  /// (sim/hopper_sync.hpp). 0: what ptxas gives a kernel with __launch_bounds__(threads, 1),
  /// 65536 / threads rounded down to a multiple of 8, at most 248 (168 for FA3's 384 threads).
  int entry_registers = 0;
  /// The compute capability (major x 10 + minor) the simulated device reports to the API's
  /// dispatch: 80 runs the sm_80 kernels, 90 the sm_90a ones where a launcher has them
  /// (api::flash_fwd). STRATA_SIM_ARCH sets it.
  int device_arch = 80;
  /// Set when an environment variable was malformed: every launch then fails with this text.
  std::string env_error;
};

namespace detail {
inline Options load_options_from_env() {
  Options o;
  if (const char* s = std::getenv("STRATA_SIM_SCHEDULE"); s && *s) {
    if (!Schedule::parse(s, &o.schedule))
      o.env_error =
          std::string("STRATA_SIM_SCHEDULE='") + s + "' is not forward, reverse or random:SEED";
  }
  if (const char* s = std::getenv("STRATA_SIM_WORKERS"); s && *s) {
    char* end = nullptr;
    const long w = std::strtol(s, &end, 10);
    if (*end != '\0' || w < 1 || w > 256)
      o.env_error = std::string("STRATA_SIM_WORKERS='") + s + "' is not an integer in [1, 256]";
    else
      o.workers = unsigned(w);
  }
  if (const char* s = std::getenv("STRATA_SIM_ARCH"); s && *s) {
    const std::string a = s;
    if (a == "80" || a == "90")
      o.device_arch = std::stoi(a);
    else
      o.env_error = "STRATA_SIM_ARCH='" + a + "' is not 80 or 90";
  }
  if (const char* s = std::getenv("STRATA_SIM_STACK_KB"); s && *s) {
    char* end = nullptr;
    const long k = std::strtol(s, &end, 10);
    if (*end != '\0' || k < 16 || k > 65536)
      o.env_error = std::string("STRATA_SIM_STACK_KB='") + s + "' is not an integer in [16, 65536]";
    else
      o.stack_bytes = size_t(k) * 1024;
  }
  return o;
}
}  // namespace detail

/// The simulator's options (initialised from the environment on first use).
inline Options& options() {
  static Options o = detail::load_options_from_env();
  return o;
}

/// Sets the thread schedule of the following launches.
inline void set_schedule(Schedule s) {
  options().schedule = s;
}
/// Sets how many OS threads run the blocks of the following launches (at least 1).
inline void set_workers(unsigned n) {
  options().workers = n < 1 ? 1 : n;
}

}  // namespace strata::sim
