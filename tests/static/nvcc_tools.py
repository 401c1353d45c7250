"""What the static gates share: the architectures, where nvcc is, and a scratch directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

DEFAULT_ARCHS = ("sm_80", "sm_90a")


def default_nvcc() -> str:
    """$STRATA_NVCC, else nvcc on PATH, else the toolkit's default location."""
    for cand in (os.environ.get("STRATA_NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).exists():
            return cand
    return "nvcc"


@contextlib.contextmanager
def scratch_dir(path: str | None, prefix: str) -> Iterator[Path]:
    """The given directory (created, kept), or a temporary one removed on exit."""
    if path:
        scratch = Path(path)
        scratch.mkdir(parents=True, exist_ok=True)
        yield scratch
    else:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            yield Path(tmp)
