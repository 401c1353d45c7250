# cmake -P: builds TARGET in BUILD_DIR and passes when it fails to compile with a const
# diagnostic (g++ and clang++ wordings) in FUNCTION.
foreach(v BUILD_DIR TARGET FUNCTION)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "expect_const_error.cmake: -D${v}= is required")
  endif()
endforeach()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BUILD_DIR} --target ${TARGET}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${TARGET} compiled: ${FUNCTION} writes through an input field, which "
                      "must be const")
endif()
string(REGEX MATCH "casts away qualifiers|read-only" diagnostic "${out}")
string(FIND "${out}" "${FUNCTION}" in_function)
if(NOT diagnostic OR in_function EQUAL -1)
  message(FATAL_ERROR "${TARGET} failed, but not with a const diagnostic in ${FUNCTION}:\n${out}")
endif()
message(STATUS "${FUNCTION}: refused (${diagnostic})")
