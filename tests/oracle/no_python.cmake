# Run as a ctest command when no python interpreter was found: fail loudly, never skip.
message(FATAL_ERROR "oracle: no python interpreter (STRATA_PYTHON='${STRATA_PYTHON}'). "
                    "Run scripts/install_python_deps.sh and reconfigure, or pass -DSTRATA_PYTHON=<python with jax>.")
