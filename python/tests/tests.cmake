# strata_torch's tests (label torch), run from the source tree against the libraries of this build:
# pytest over python/tests with STRATA_TORCH_LIB_DIR=<build>/python and the package on PYTHONPATH.
# STRATA_PYTHON (tests/oracle) must import torch and pytest (scripts/install_python_deps.sh puts
# them in the venv); without them the tests are still registered, and FAIL saying why.
set(_torch_ok FALSE)
if(STRATA_PYTHON AND EXISTS "${STRATA_PYTHON}")
  execute_process(COMMAND "${STRATA_PYTHON}" -c "import torch, pytest"
                  RESULT_VARIABLE _torch_rc OUTPUT_QUIET ERROR_QUIET)
  if(_torch_rc EQUAL 0)
    set(_torch_ok TRUE)
  endif()
endif()
if(NOT _torch_ok)
  message(WARNING "strata: ${STRATA_PYTHON} cannot import torch/pytest: the torch tests will FAIL. "
                  "Run scripts/install_python_deps.sh, or set -DSTRATA_PYTHON=<python with torch>.")
endif()

set(_torch_env
    "STRATA_TORCH_LIB_DIR=${CMAKE_CURRENT_BINARY_DIR}"
    "PYTHONPATH=${CMAKE_CURRENT_SOURCE_DIR}"
    "PYTHONDONTWRITEBYTECODE=1"
    "STRATA_SIM_WORKERS=1")
if(STRATA_TORCH_CUDA)
  list(APPEND _torch_env "STRATA_TORCH_EXPECT_CUDA=1")
endif()

# One ctest per file, so that ctest -j runs them side by side.
foreach(_file flash variants exoformer depth mea decode errors compile defaults)
  if(_torch_ok)
    set(_cmd "${STRATA_PYTHON}" -m pytest -q -p no:cacheprovider
             "${CMAKE_CURRENT_SOURCE_DIR}/tests/test_${_file}.py")
  else()
    set(_cmd "${CMAKE_COMMAND}" -E false)
  endif()
  add_test(NAME torch_${_file} COMMAND ${_cmd} WORKING_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}")
  set_tests_properties(torch_${_file} PROPERTIES LABELS torch TIMEOUT 900
                       ENVIRONMENT "${_torch_env}")
endforeach()

# The package as a user installs it: `pip install ./python` (scikit-build-core building the
# simulator library; the nvcc library is covered by the build above), then a forward and backward
# from the installed copy, with no STRATA_TORCH_LIB_DIR.
if(_torch_ok)
  set(_cmd "${STRATA_PYTHON}" "${CMAKE_CURRENT_SOURCE_DIR}/tests/pip_install_check.py"
           --source "${CMAKE_CURRENT_SOURCE_DIR}" --work "${CMAKE_CURRENT_BINARY_DIR}/pip_install")
else()
  set(_cmd "${CMAKE_COMMAND}" -E false)
endif()
add_test(NAME torch_pip_install COMMAND ${_cmd})
set_tests_properties(torch_pip_install PROPERTIES LABELS "torch;package" TIMEOUT 1200
                     ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")

# The PyTorch trainer examples (examples/python): a tiny model per method trained for 30 steps
# on CPU tensors (the kernels in the simulator); each fails unless its loss falls.
set(_torch_examples "${_strata_root}/examples/python")
foreach(_ex flash resformer svformer gated exoformer depth mea)
  set(_script train_${_ex}.py)
  set(_args)
  if(_ex STREQUAL "svformer")
    set(_script train_resformer.py)
    set(_args --svformer)
  endif()
  if(_torch_ok)
    set(_cmd "${STRATA_PYTHON}" "${_torch_examples}/${_script}" ${_args})
  else()
    set(_cmd "${CMAKE_COMMAND}" -E false)
  endif()
  add_test(NAME torch_example_${_ex} COMMAND ${_cmd} WORKING_DIRECTORY "${_torch_examples}")
  set_tests_properties(torch_example_${_ex} PROPERTIES LABELS torch TIMEOUT 900
                       ENVIRONMENT "${_torch_env}" PASS_REGULAR_EXPRESSION "loss falls")
endforeach()

# The serving example: the depth model trained briefly, then prompts served with a paged cache
# (chunked prefill, greedy decode); fails unless the decode's logits equal the training forward's.
if(_torch_ok)
  set(_cmd "${STRATA_PYTHON}" "${_torch_examples}/serve_depth.py" --steps 12)
else()
  set(_cmd "${CMAKE_COMMAND}" -E false)
endif()
add_test(NAME torch_example_serve_depth COMMAND ${_cmd} WORKING_DIRECTORY "${_torch_examples}")
set_tests_properties(torch_example_serve_depth PROPERTIES LABELS torch TIMEOUT 900
                     ENVIRONMENT "${_torch_env}"
                     PASS_REGULAR_EXPRESSION "reproduces the training forward")
