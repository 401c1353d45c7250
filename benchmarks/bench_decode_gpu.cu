// The decode benchmark built by nvcc: device memory, CUDA-event timing, an L2 flush per
// iteration (see bench_decode.cpp, the one source of both executables).
#include "bench_decode.cpp"
