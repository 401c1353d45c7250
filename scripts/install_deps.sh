#!/usr/bin/env bash
# Installs what Strata needs to build and test, skipping what is already there.
# Target: Debian 12 with the CUDA 13 toolkit preinstalled under /usr/local/cuda. The toolkit cannot
# come from Debian on this kind of machine; without nvcc only the static (nvcc/ptxas) gate is skipped.
set -euo pipefail

packages=(cmake ninja-build ccache g++ clang libboost-context-dev libgtest-dev libgmock-dev
          libbenchmark-dev doxygen python3 python3-venv)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg -s "$p" >/dev/null 2>&1; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  if [[ $(id -u) -eq 0 ]]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "install_deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "install_deps: all Debian packages present"
fi

# nvcc: used directly (not through CMake's CUDA language) by the static checks.
if command -v nvcc >/dev/null 2>&1; then
  echo "install_deps: nvcc found: $(command -v nvcc) ($(nvcc --version | tail -n 1))"
elif [[ -x /usr/local/cuda/bin/nvcc ]]; then
  echo "install_deps: nvcc found at /usr/local/cuda/bin/nvcc but not on PATH;"
  echo "              scripts/demo.sh and scripts/test.sh add it themselves. For your shell:"
  echo "              export PATH=/usr/local/cuda/bin:\$PATH"
else
  echo "install_deps: WARNING: nvcc not found (PATH, /usr/local/cuda/bin). The CUDA 13 toolkit must" >&2
  echo "              be preinstalled; without it the static (nvcc/ptxas) tests are skipped and" >&2
  echo "              CMake's find_package(CUDAToolkit) for the host headers will fail." >&2
fi

# The oracle tests' python venv (jax, numpy from PyPI).
bash "$(dirname "${BASH_SOURCE[0]}")/install_python_deps.sh"
