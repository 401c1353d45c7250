// The C ABI of attention (FlashAttention-2's forward and backward).
#include "capi_common.hpp"

using namespace strata_capi;

extern "C" {

int strata_flash_fwd(const StrataAttention* a) {
  return guarded([&]() -> Status {
    FlashBwdParams p;
    if (Status s = attention_params(*a, false, &p); !s.ok() || empty_problem(p)) return s;
    return strata::api::flash_fwd(static_cast<const FlashFwdParams&>(p), stream_of(*a));
  });
}

int strata_flash_bwd_workspace_bytes(const StrataAttention* a, int64_t* bytes) {
  return guarded([&]() -> Status {
    FlashBwdParams p;
    int64_t end = 0;
    if (Status s = attention_params(*a, true, &p, &end, false); !s.ok()) return s;
    *bytes = end;
    return Status::Ok();
  });
}

int strata_flash_bwd(const StrataAttention* a) {
  return guarded([&]() -> Status {
    FlashBwdParams p;
    if (Status s = attention_params(*a, true, &p); !s.ok() || empty_problem(p)) return s;
    return strata::api::flash_bwd(p, stream_of(*a));
  });
}

}  // extern "C"
