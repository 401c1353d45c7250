"""ctypes view of Strata's C ABI (python/csrc/strata_capi.h).

Two shared libraries export the same functions: libstrata_capi_sim.so runs the kernels in Strata's
CPU SIMT simulator (CPU tensors), libstrata_capi_cuda.so is the nvcc build (CUDA tensors). Each
is loaded with RTLD_LOCAL, so both live in one process. The structs below mirror the header's
field for field; load() compares their sizes with the library's and refuses a mismatch.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Optional

import torch

CAPI_VERSION = 5  # STRATA_CAPI_VERSION

DTYPES = {torch.bfloat16: 1, torch.float16: 2, torch.float32: 3, torch.int32: 4, torch.uint8: 5,
          torch.int64: 6}


class StrataError(ValueError):
    """A call Strata refused: the message names the argument; nothing was written."""


class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32), ("ndim", ctypes.c_int32),
                ("shape", ctypes.c_int64 * 4), ("stride", ctypes.c_int64 * 4)]


class Attention(ctypes.Structure):
    _fields_ = [("q", Tensor), ("k", Tensor), ("v", Tensor), ("out", Tensor), ("lse", Tensor),
                ("cu_seqlens_q", Tensor), ("cu_seqlens_k", Tensor),
                ("cu_seqlens_q_host", Tensor), ("cu_seqlens_k_host", Tensor),
                ("max_seqlen_q", ctypes.c_int32), ("max_seqlen_k", ctypes.c_int32),
                ("softmax_scale", ctypes.c_float), ("causal", ctypes.c_int32),
                ("window_left", ctypes.c_int32), ("deterministic", ctypes.c_int32),
                ("dout", Tensor), ("dq", Tensor), ("dk", Tensor), ("dv", Tensor),
                ("workspace", Tensor), ("stream", ctypes.c_void_p)]


class ValueResidual(ctypes.Structure):
    _fields_ = [("v_first", Tensor), ("lambda_self", Tensor), ("lambda_first", Tensor),
                ("dv_first", Tensor), ("dlambda_self", Tensor), ("dlambda_first", Tensor)]


class Gate(ctypes.Structure):
    _fields_ = [("gate", Tensor), ("dgate", Tensor)]


class ExoStream(ctypes.Structure):
    _fields_ = [("p", Tensor), ("anchor", Tensor), ("gamma_anchor", Tensor),
                ("lambda1", Tensor), ("lambda2", Tensor), ("dp", Tensor), ("danchor", Tensor),
                ("dgamma_anchor", Tensor), ("dlambda1", Tensor), ("dlambda2", Tensor)]


class Exo(ctypes.Structure):
    _fields_ = [("stream", ExoStream * 4), ("gamma_q", Tensor), ("gamma_k", Tensor),
                ("s", Tensor), ("dgamma_q", Tensor), ("dgamma_k", Tensor), ("ds", Tensor),
                ("rope", ctypes.c_int32), ("rope_theta", ctypes.c_float),
                ("norm_eps", ctypes.c_float), ("anchor_eps", ctypes.c_float)]


def tensor(t: Optional[torch.Tensor]) -> Tensor:
    """The descriptor of `t` (an empty descriptor for None)."""
    d = Tensor()
    if t is None:
        return d
    if t.dim() > 4:
        raise StrataError(f"a tensor of {t.dim()} dimensions (at most 4)")
    d.data = t.data_ptr() or None  # an empty tensor may have none
    d.dtype = DTYPES.get(t.dtype, 99)  # STRATA_DTYPE_OTHER: refused by name
    d.ndim = t.dim()
    for i in range(t.dim()):
        d.shape[i] = t.shape[i]
        d.stride[i] = t.stride(i)
    return d


DEPTH_MAX_SOURCES = 8  # STRATA_DEPTH_MAX_SOURCES


class Depth(ctypes.Structure):
    _fields_ = [("q", Tensor), ("k", Tensor), ("v", Tensor), ("num_sources", ctypes.c_int32),
                ("src_khat", Tensor * DEPTH_MAX_SOURCES), ("src_vhat", Tensor * DEPTH_MAX_SOURCES),
                ("gamma_q", Tensor), ("gamma_k", Tensor), ("dq", Tensor), ("dk", Tensor),
                ("dv", Tensor), ("dkhat_acc", Tensor), ("dvhat_acc", Tensor),
                ("src_dkhat_acc", Tensor * DEPTH_MAX_SOURCES),
                ("src_dvhat_acc", Tensor * DEPTH_MAX_SOURCES), ("dgamma_q", Tensor),
                ("dgamma_k", Tensor), ("rope", ctypes.c_int32), ("rope_theta", ctypes.c_float),
                ("eps", ctypes.c_float)]


class Mea(ctypes.Structure):
    _fields_ = [(n, Tensor) for n in (
        "q", "kc", "vc", "a_k", "a_v", "gamma_k", "beta_k", "gamma_v", "beta_v", "gamma_o",
        "beta_o", "kc_rot", "out", "dq", "dkc", "dvc", "da_k", "da_v", "dgamma_k", "dbeta_k",
        "dgamma_v", "dbeta_v", "dgamma_o", "dbeta_o")] + [
        ("site", ctypes.c_int32), ("rope", ctypes.c_int32), ("rope_theta", ctypes.c_float),
        ("gn_eps", ctypes.c_float)]


DECODE_METHODS = {"vanilla": 0, "gated": 1, "resformer": 2, "depth": 3, "exoformer": 4,
                  "mea": 5}  # StrataDecodeMethod


class Decode(ctypes.Structure):
    _fields_ = [("method", ctypes.c_int32), ("q", Tensor), ("k", Tensor), ("v", Tensor),
                ("k_cache", Tensor), ("v_cache", Tensor), ("cu_seqlens_q", Tensor),
                ("seqlens_k", Tensor), ("block_table", Tensor), ("slot_mapping", Tensor),
                ("positions", Tensor), ("max_seqlen_q", ctypes.c_int32),
                ("softmax_scale", ctypes.c_float), ("causal", ctypes.c_int32),
                ("window_left", ctypes.c_int32), ("num_splits", ctypes.c_int32),
                ("workspace", Tensor), ("out", Tensor), ("lse", Tensor), ("q_attn", Tensor),
                ("k_attn", Tensor), ("v_attn", Tensor), ("g_attn", Tensor),
                ("stream", ctypes.c_void_p)]


_DECODE_ARGS = [ctypes.POINTER(Decode), ctypes.POINTER(Gate), ctypes.POINTER(ValueResidual),
                ctypes.POINTER(Depth), ctypes.POINTER(Exo), ctypes.POINTER(Mea)]

_OPS = {
    "strata_decode_workspace_bytes": _DECODE_ARGS + [ctypes.POINTER(ctypes.c_int64)],
    "strata_decode_layer": _DECODE_ARGS,
    "strata_flash_fwd": [ctypes.POINTER(Attention)],
    "strata_flash_bwd_workspace_bytes": [ctypes.POINTER(Attention), ctypes.POINTER(ctypes.c_int64)],
    "strata_flash_bwd": [ctypes.POINTER(Attention)],
    "strata_resformer_fwd": [ctypes.POINTER(Attention), ctypes.POINTER(ValueResidual)],
    "strata_resformer_bwd_workspace_bytes": [ctypes.POINTER(Attention),
                                             ctypes.POINTER(ValueResidual),
                                             ctypes.POINTER(ctypes.c_int64)],
    "strata_resformer_bwd": [ctypes.POINTER(Attention), ctypes.POINTER(ValueResidual)],
    "strata_gated_fwd": [ctypes.POINTER(Attention), ctypes.POINTER(Gate)],
    "strata_gated_bwd_workspace_bytes": [ctypes.POINTER(Attention), ctypes.POINTER(Gate),
                                         ctypes.POINTER(ctypes.c_int64)],
    "strata_gated_bwd": [ctypes.POINTER(Attention), ctypes.POINTER(Gate)],
    "strata_exoformer_fwd": [ctypes.POINTER(Attention), ctypes.POINTER(Gate), ctypes.POINTER(Exo)],
    "strata_exoformer_bwd_workspace_bytes": [ctypes.POINTER(Attention), ctypes.POINTER(Gate),
                                             ctypes.POINTER(Exo), ctypes.POINTER(ctypes.c_int64)],
    "strata_exoformer_bwd": [ctypes.POINTER(Attention), ctypes.POINTER(Gate), ctypes.POINTER(Exo)],
    "strata_depth_fwd": [ctypes.POINTER(Attention), ctypes.POINTER(Depth)],
    "strata_depth_bwd_workspace_bytes": [ctypes.POINTER(Attention), ctypes.POINTER(Depth),
                                         ctypes.POINTER(ctypes.c_int64)],
    "strata_depth_bwd": [ctypes.POINTER(Attention), ctypes.POINTER(Depth)],
    "strata_mea_fwd": [ctypes.POINTER(Attention), ctypes.POINTER(Mea)],
    "strata_mea_bwd_workspace_bytes": [ctypes.POINTER(Attention), ctypes.POINTER(Mea),
                                       ctypes.POINTER(ctypes.c_int64)],
    "strata_mea_bwd": [ctypes.POINTER(Attention), ctypes.POINTER(Mea)],
}

# strata_capi_struct_sizes' order
STRUCTS = (Tensor, Attention, ValueResidual, Gate, Exo, Depth, Mea, Decode)


class Library:
    """One executor's build of the C ABI."""

    def __init__(self, path: Path):
        self.path = path
        self.lib = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL | os.RTLD_NOW)
        lib = self.lib
        lib.strata_capi_version.restype = ctypes.c_int32
        lib.strata_capi_last_error.restype = ctypes.c_char_p
        lib.strata_capi_executor.restype = ctypes.c_char_p
        lib.strata_capi_struct_sizes.argtypes = [ctypes.POINTER(ctypes.c_int64)]
        lib.strata_capi_sim_configure.argtypes = [ctypes.c_int32, ctypes.c_char_p]
        version = lib.strata_capi_version()
        if version != CAPI_VERSION:
            raise ImportError(f"{path}: C ABI version {version}, this package needs {CAPI_VERSION}")
        sizes = (ctypes.c_int64 * len(STRUCTS))()
        lib.strata_capi_struct_sizes(sizes)
        want = [ctypes.sizeof(s) for s in STRUCTS]
        if list(sizes) != want:
            raise ImportError(f"{path}: struct sizes {list(sizes)} differ from the bindings' {want}")
        for name, argtypes in _OPS.items():
            fn = getattr(lib, name)
            fn.argtypes = argtypes
            fn.restype = ctypes.c_int
        self.executor = lib.strata_capi_executor().decode()

    def call(self, name: str, *args) -> None:
        """Calls `name` (None: a NULL struct pointer); raises StrataError with the library's
        message when it refuses."""
        rc = getattr(self.lib, name)(*[None if a is None else ctypes.byref(a) for a in args])
        if rc != 0:
            raise StrataError(self.lib.strata_capi_last_error().decode())

    def query(self, name: str, *args) -> int:
        """Calls a *_workspace_bytes function and returns the byte count."""
        out = ctypes.c_int64(0)
        self.call(name, *args, out)
        return out.value


def _search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("STRATA_TORCH_LIB_DIR"):
        dirs.append(Path(os.environ["STRATA_TORCH_LIB_DIR"]))
    dirs.append(Path(__file__).resolve().parent)
    return dirs


_LIBS: dict[str, Optional[Library]] = {}


def library(kind: str) -> Library:
    """The 'sim' or 'cuda' library, loaded on first use."""
    if kind not in _LIBS:
        name = f"libstrata_capi_{kind}.so"
        found = next((d / name for d in _search_dirs() if (d / name).exists()), None)
        _LIBS[kind] = Library(found) if found else None
    lib = _LIBS[kind]
    if lib is None:
        where = ", ".join(str(d) for d in _search_dirs())
        what = ("the CPU simulator build" if kind == "sim" else
                "the CUDA build (nvcc was not found when strata_torch was built)")
        raise RuntimeError(f"strata_torch: {what} libstrata_capi_{kind}.so is not in {where}")
    return lib


def available(kind: str) -> bool:
    try:
        library(kind)
        return True
    except RuntimeError:
        return False
