# cmake -P: configure the project with clang++, build the simulator tests, run them.
foreach(v SOURCE_DIR WORK_DIR CLANGXX GENERATOR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_clang_tests.cmake: -D${v}= is required")
  endif()
endforeach()
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR} -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release
          -DCMAKE_CXX_COMPILER=${CLANGXX} -DSTRATA_CLANG_SUBBUILD=ON -DSTRATA_BUILD_EXAMPLES=OFF
          -DSTRATA_BUILD_BENCHMARKS=OFF -DSTRATA_ENABLE_NVCC_CHECKS=OFF -DSTRATA_USE_CCACHE=${USE_CCACHE}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring with clang++ failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR} --target strata_sim_tests RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the simulator tests with clang++ failed")
endif()
execute_process(COMMAND ${WORK_DIR}/tests/strata_sim_tests RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the simulator tests failed under clang++")
endif()
