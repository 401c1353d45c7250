// The variant benchmarks built by nvcc: device memory, CUDA-event timing, an L2 flush per
// iteration (see bench_variants.cpp, the one source of both executables).
#include "bench_variants.cpp"
