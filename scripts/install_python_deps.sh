#!/usr/bin/env bash
# Creates the python venv of the oracle tests (tests/oracle) and installs pinned jax/jaxlib (CPU) and
# numpy into it from PyPI, NVIDIA's cuobjdump and nvdisasm wheels (the ptxas gate's SASS
# inventory; the CUDA toolkit on this machine kind ships without them), and torch, pytest and
# scikit-build-core for strata_torch (python/; its tests run CPU tensors in the simulator, so
# torch's CUDA libraries from PyPI are installed but never used here), and, test-only,
# nvidia-cutlass for its CUTLASS/CuTe headers (cutlass_library/source/include), which the wgmma
# layout cross-check tests/layout/cute_crosscheck.cpp compiles against. Idempotent: does nothing
# when the pinned versions are already there.
#   STRATA_VENV   venv directory (default $HOME/.cache/strata-venv; CMake's STRATA_PYTHON default is
#                 $HOME/.cache/strata-venv/bin/python)
set -euo pipefail

venv="${STRATA_VENV:-$HOME/.cache/strata-venv}"
JAX_VERSION=0.10.2
NUMPY_VERSION=2.4.6
CUDA_TOOLS_VERSION=13.2.86  # nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm (read sm_80 / sm_90a cubins)
TORCH_VERSION=2.15.0
PYTEST_VERSION=9.2.0
SKBUILD_VERSION=1.1.2  # scikit-build-core: builds strata_torch (pip install ./python)
# Test-only (layout cross-check): CUTLASS 4.2.0 headers. Installed --no-deps: only the headers are
# used, and its Python dependencies (cuda-python pins cuda-bindings~=13.4.4) would downgrade the
# cuda-bindings torch brings.
CUTLASS_VERSION=4.2.0.0
python="$venv/bin/python"

have_pinned() {
  "$python" - "$JAX_VERSION" "$NUMPY_VERSION" "$CUDA_TOOLS_VERSION" "$TORCH_VERSION" \
    "$PYTEST_VERSION" "$SKBUILD_VERSION" "$CUTLASS_VERSION" <<'PY' >/dev/null 2>&1
import sys
import importlib.metadata as md
want_jax, want_np, want_tools, want_torch, want_pytest, want_skbuild, want_cutlass = sys.argv[1:8]
assert md.version("jax") == want_jax and md.version("jaxlib") == want_jax
assert md.version("numpy") == want_np
assert md.version("nvidia-cuda-cuobjdump") == want_tools
assert md.version("nvidia-cuda-nvdisasm") == want_tools
assert md.version("torch").split("+")[0] == want_torch
assert md.version("pytest") == want_pytest
assert md.version("scikit-build-core") == want_skbuild
assert md.version("nvidia-cutlass") == want_cutlass
import jax, jaxlib, numpy, torch, pytest, scikit_build_core  # noqa: F401  (importable)
import os, cutlass_library  # CuTe headers in place
assert os.path.isfile(os.path.join(os.path.dirname(cutlass_library.__file__), "source", "include",
                                   "cute", "atom", "mma_traits_sm90_gmma.hpp"))
PY
}

if [[ -x "$python" ]] && have_pinned; then
  echo "install_python_deps: jax $JAX_VERSION, numpy $NUMPY_VERSION, cuobjdump/nvdisasm $CUDA_TOOLS_VERSION," \
    "torch $TORCH_VERSION, pytest $PYTEST_VERSION, scikit-build-core $SKBUILD_VERSION," \
    "nvidia-cutlass $CUTLASS_VERSION (test-only) present in $venv"
  exit 0
fi

if [[ ! -x "$python" ]]; then
  if ! command -v python3 >/dev/null 2>&1; then
    echo "install_python_deps: python3 not found (scripts/install_deps.sh installs it)" >&2
    exit 1
  fi
  echo "install_python_deps: creating venv $venv"
  mkdir -p "$(dirname "$venv")"
  if ! python3 -m venv "$venv"; then
    echo "install_python_deps: 'python3 -m venv' failed; on Debian install python3-venv" >&2
    exit 1
  fi
fi

echo "install_python_deps: installing jax==$JAX_VERSION jaxlib==$JAX_VERSION numpy==$NUMPY_VERSION" \
  "nvidia-cuda-cuobjdump/nvdisasm==$CUDA_TOOLS_VERSION torch==$TORCH_VERSION pytest==$PYTEST_VERSION" \
  "scikit-build-core==$SKBUILD_VERSION into $venv (torch brings ~4 GB of CUDA wheels)"
"$python" -m pip install --disable-pip-version-check --quiet \
  "jax==$JAX_VERSION" "jaxlib==$JAX_VERSION" "numpy==$NUMPY_VERSION" \
  "nvidia-cuda-cuobjdump==$CUDA_TOOLS_VERSION" "nvidia-cuda-nvdisasm==$CUDA_TOOLS_VERSION" \
  "torch==$TORCH_VERSION" "pytest==$PYTEST_VERSION" "scikit-build-core==$SKBUILD_VERSION"
# Test-only: CuTe headers for tests/layout/cute_crosscheck.cpp (--no-deps, see CUTLASS_VERSION).
echo "install_python_deps: installing nvidia-cutlass==$CUTLASS_VERSION (test-only, headers; --no-deps)"
"$python" -m pip install --disable-pip-version-check --quiet --no-deps "nvidia-cutlass==$CUTLASS_VERSION"

if ! have_pinned; then
  echo "install_python_deps: jax/numpy, torch/pytest/scikit-build-core, the CUDA tool wheels or" \
    "nvidia-cutlass still missing from $python" >&2
  exit 1
fi
echo "install_python_deps: done ($("$python" -c 'import jax, numpy; print("jax", jax.__version__, "numpy", numpy.__version__)'))"
