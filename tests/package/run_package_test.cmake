# Package test: cmake -DBUILD_DIR=<configured strata build> -DSOURCE_DIR=<strata source>
#                     -DWORK_DIR=<scratch dir> -P run_package_test.cmake
#
# 1. cmake --install BUILD_DIR --prefix WORK_DIR/prefix
# 2. configure, build and run tests/package/consumer with CMAKE_PREFIX_PATH=WORK_DIR/prefix
# 3. configure, build and run tests/package/subdir with add_subdirectory(SOURCE_DIR)
# Each consumer runs its kernel in the simulator and, with -DNVCC=<nvcc>, compiles it with nvcc.
#
# Registered from tests/CMakeLists.txt with `add_subdirectory(package)`, which holds:
#
#   add_test(NAME package_find_and_subdir
#            COMMAND ${CMAKE_COMMAND}
#                    -DBUILD_DIR=${CMAKE_BINARY_DIR}
#                    -DSOURCE_DIR=${PROJECT_SOURCE_DIR}
#                    -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/pkg
#                    -P ${CMAKE_CURRENT_SOURCE_DIR}/run_package_test.cmake)
#   set_tests_properties(package_find_and_subdir PROPERTIES LABELS package TIMEOUT 900)

cmake_minimum_required(VERSION 3.25)

foreach(_v IN ITEMS BUILD_DIR SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${_v} OR "${${_v}}" STREQUAL "")
    message(FATAL_ERROR "run_package_test.cmake: -D${_v}=... is required")
  endif()
endforeach()

set(_pkg_dir "${SOURCE_DIR}/tests/package")
set(_prefix "${WORK_DIR}/prefix")

# Same generator family as the parent build when possible; Ninja if it is available.
find_program(_ninja NAMES ninja ninja-build)
if(_ninja)
  set(_gen -G Ninja)
else()
  set(_gen)
endif()

# Forward the compilers of the parent build so both consumers use the same toolchain; with
# NVCC=<path> both must also build their nvcc library.
set(_toolchain)
if(DEFINED NVCC AND NOT "${NVCC}" STREQUAL "")
  list(APPEND _toolchain "-DCMAKE_CUDA_COMPILER=${NVCC}" -DSTRATA_CONSUMER_REQUIRE_CUDA=ON)
endif()
if(EXISTS "${BUILD_DIR}/CMakeCache.txt")
  file(STRINGS "${BUILD_DIR}/CMakeCache.txt" _cxx REGEX "^CMAKE_CXX_COMPILER:")
  if(_cxx)
    string(REGEX REPLACE "^[^=]*=" "" _cxx "${_cxx}")
    list(APPEND _toolchain "-DCMAKE_CXX_COMPILER=${_cxx}")
  endif()
endif()

function(run_step what)
  message(STATUS "[package] ${what}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "[package] ${what} failed (${_rc}):\n${_out}")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# 1. install
run_step("install" ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${_prefix}")
if(NOT EXISTS "${_prefix}/include/strata/strata.cuh")
  message(FATAL_ERROR "[package] install did not produce ${_prefix}/include/strata/strata.cuh")
endif()

# 2. find_package consumer
set(_b1 "${WORK_DIR}/find_package")
run_step("configure find_package consumer"
  ${CMAKE_COMMAND} -S "${_pkg_dir}/consumer" -B "${_b1}" ${_gen} ${_toolchain}
  -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=${_prefix}")
run_step("build find_package consumer" ${CMAKE_COMMAND} --build "${_b1}")
run_step("run find_package consumer" "${_b1}/consumer")

# 3. add_subdirectory consumer
set(_b2 "${WORK_DIR}/add_subdirectory")
run_step("configure add_subdirectory consumer"
  ${CMAKE_COMMAND} -S "${_pkg_dir}/subdir" -B "${_b2}" ${_gen} ${_toolchain}
  -DCMAKE_BUILD_TYPE=Release "-DSTRATA_SOURCE_DIR=${SOURCE_DIR}")
run_step("build add_subdirectory consumer" ${CMAKE_COMMAND} --build "${_b2}")
run_step("run add_subdirectory consumer" "${_b2}/consumer")

message(STATUS "[package] find_package and add_subdirectory consumers OK")
