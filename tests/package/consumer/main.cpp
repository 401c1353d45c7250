// A downstream program: the consumer's own kernel (block_sum.cuh) runs in Strata's simulator,
// compiled by the host compiler and linked against strata::sim, and is checked against the host.
#include <cstdio>
#include <vector>

#include "block_sum.cuh"

int main() {
  const int n = 1000, blocks = 4;
  std::vector<float> x(n), partial(blocks, -1.f);
  double want = 0;
  for (int i = 0; i < n; ++i) want += x[size_t(i)] = float(i % 17) - 8.f;
  if (strata::Status s = consumer::sum(x.data(), partial.data(), n, blocks); !s.ok()) {
    std::printf("consumer: launch failed: %s\n", s.message());
    return 1;
  }
  double got = 0;
  for (float p : partial) got += p;
  std::printf("consumer: block_sum in the simulator = %g (host %g)\n", got, want);
  return got == want ? 0 : 1;
}
