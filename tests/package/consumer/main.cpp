// Smallest downstream program: the umbrella header compiles and links against strata::sim.
#include <strata/strata.cuh>

int main() {
  strata::Status s;
  return s.ok() ? 0 : 1;
}
