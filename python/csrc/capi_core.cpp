// The C ABI's bookkeeping: the error channel, the ABI version and struct sizes, the executor's
// name, and the simulator's configuration.
#include <string>

#include "capi_common.hpp"

namespace strata_capi {
std::string& last_error() {
  thread_local std::string message = "ok";
  return message;
}
}  // namespace strata_capi

extern "C" {

const char* strata_capi_last_error(void) {
  return strata_capi::last_error().c_str();
}

int32_t strata_capi_version(void) {
  return STRATA_CAPI_VERSION;
}

void strata_capi_struct_sizes(int64_t* sizes) {
  sizes[0] = sizeof(StrataTensor);
  sizes[1] = sizeof(StrataAttention);
  sizes[2] = sizeof(StrataValueResidual);
  sizes[3] = sizeof(StrataGate);
  sizes[4] = sizeof(StrataExo);
  sizes[5] = sizeof(StrataDepth);
  sizes[6] = sizeof(StrataMea);
  sizes[7] = sizeof(StrataDecode);
}

const char* strata_capi_executor(void) {
  return STRATA_STRINGIFY(STRATA_EXECUTOR_NS);
}

int strata_capi_sim_configure(int32_t workers, const char* schedule) {
#if STRATA_SIM
  return strata_capi::guarded([&]() -> strata::Status {
    strata::sim::Schedule s;
    if (schedule && !strata::sim::Schedule::parse(schedule, &s))
      return strata::Status::InvalidArgument(std::string("schedule: '") + schedule +
                                             "' is not forward, reverse or random:SEED");
    if (workers < 0) return strata::Status::InvalidArgument("workers is negative");
    if (schedule) strata::sim::set_schedule(s);
    if (workers > 0) strata::sim::set_workers(unsigned(workers));
    return strata::Status::Ok();
  });
#else
  (void)workers, (void)schedule;
  return strata_capi::fail(strata::Status::Unsupported("the nvcc build has no simulator"));
#endif
}

}  // extern "C"
