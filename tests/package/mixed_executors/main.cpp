// One executable from a simulator TU and an nvcc TU (linked in either order).
#include "mixed.hpp"

int main() {
  return mixed::run_program(&mixed::sim_forward, &mixed::gpu_forward);
}
