# The consumers' targets, shared by consumer/ (find_package) and subdir/ (add_subdirectory):
# the simulator program, and the nvcc library when CMake finds a CUDA compiler
# (STRATA_CONSUMER_REQUIRE_CUDA makes its absence an error instead of a skip).
add_executable(consumer ${CMAKE_CURRENT_LIST_DIR}/main.cpp)
target_link_libraries(consumer PRIVATE strata::sim)

include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  enable_language(CUDA)
  add_library(consumer_gpu STATIC ${CMAKE_CURRENT_LIST_DIR}/gpu.cu)
  target_link_libraries(consumer_gpu PRIVATE strata::strata)
  set_target_properties(consumer_gpu PROPERTIES CUDA_ARCHITECTURES 80)
  # Strata needs C++20; CMake 3.25 has no CUDA_STANDARD 20 for nvcc, so the flag is given
  target_compile_options(consumer_gpu PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
  message(STATUS "consumer: nvcc library consumer_gpu (sm_80)")
elseif(STRATA_CONSUMER_REQUIRE_CUDA)
  message(FATAL_ERROR "consumer: STRATA_CONSUMER_REQUIRE_CUDA is ON but CMake found no CUDA compiler")
endif()
