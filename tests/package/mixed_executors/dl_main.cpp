// The two halves as shared objects, loaded with RTLD_GLOBAL in the order given on the command
// line (the first one's symbols then take precedence for the second's undefined references).
#include <dlfcn.h>

#include <cstdio>

#include "mixed.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s first.so second.so\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < 3; ++i)
    if (!dlopen(argv[i], RTLD_NOW | RTLD_GLOBAL)) {
      std::fprintf(stderr, "dlopen %s: %s\n", argv[i], dlerror());
      return 2;
    }
  auto sim = reinterpret_cast<mixed::Half (*)()>(dlsym(RTLD_DEFAULT, "mixed_sim_half"));
  auto gpu = reinterpret_cast<mixed::Half (*)()>(dlsym(RTLD_DEFAULT, "mixed_gpu_half"));
  if (!sim || !gpu) {
    std::fprintf(stderr, "dlsym: %s\n", dlerror());
    return 2;
  }
  std::printf("loaded %s, then %s (RTLD_GLOBAL)\n", argv[1], argv[2]);
  return mixed::run_program(sim(), gpu());
}
