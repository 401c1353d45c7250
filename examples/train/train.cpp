// Trainer steps in C++, one per method, as a training framework would run them around Strata's
// kernels: allocate, forward over the layer stack, the loss gradient, backward with the
// cross-layer accumulators, and the parameters' gradients (lambda, gains, A, GroupNorm affines,
// the gate projection) handed to an optimizer step. Each method file (resformer.hpp, depth.hpp,
// exoformer.hpp, mea.hpp, gated.hpp) is the part to copy: its buffers, its stack's Params, the
// API calls; trainer.hpp holds what a framework already has (buffers, the loss, the loop, Adam).
// The task: learn a teacher stack's parameters from its outputs on the same inputs.
//
// Runs in the CPU SIMT simulator (g++/clang) or on the GPU (nvcc: managed memory). Exit code 0
// only if every method's loss falls to under half its first value.
//
//   strata_train [steps]     (default 20)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "depth.hpp"
#include "exoformer.hpp"
#include "gated.hpp"
#include "mea.hpp"
#include "resformer.hpp"

namespace {

/// Trains `t` for `steps` steps; prints the losses and the parameters' distance to the teacher's.
template <class Trainer>
bool train(const char* name, int steps) {
  const auto start = std::chrono::steady_clock::now();
  Trainer t;
  const double error0 = t.parameter_error();
  if (std::string e = t.make_targets(); !e.empty()) {
    std::printf("%-12s FAILED: %s\n", name, e.c_str());
    return false;
  }
  double first = 0, last = 0;
  for (int i = 0; i < steps; ++i) {
    double loss = 0;
    if (std::string e = t.step(&loss); !e.empty()) {
      std::printf("%-12s FAILED at step %d: %s\n", name, i, e.c_str());
      return false;
    }
    (i == 0 ? first : last) = loss;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const bool ok = last < 0.5 * first;
  std::printf("%-12s loss %.3e -> %.3e (%5.1f%%)  |param - teacher| %.3f -> %.3f  %5.1f s  %s\n",
              name, first, last, 100.0 * last / first, error0, t.parameter_error(), secs,
              ok ? "ok" : "FAILED: the loss did not halve");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 20;
  if (steps < 2) {
    std::fprintf(stderr, "usage: strata_train [steps >= 2]\n");
    return 2;
  }
  std::printf("trainer steps: %d steps per method, Adam, MSE against a teacher stack\n", steps);
  bool ok = true;
  ok &= train<trainer::ResFormer>("ResFormer", steps);
  ok &= train<trainer::Depth>("Depth", steps);
  ok &= train<trainer::ExoFormer>("ExoFormer", steps);
  ok &= train<trainer::Mea>("MEA", steps);
  ok &= train<trainer::Gated>("Gated", steps);
  std::printf(ok ? "every method trains\n" : "a method failed\n");
  return ok ? 0 : 1;
}
