"""torch.library custom ops over Strata's kernels, with autograd and fake (meta) kernels.

Each method is a forward op and a backward op in the `strata` namespace
(torch.ops.strata.flash_attn_fwd, ...). The backward op is an op of its own, so torch.compile
traces both passes as opaque calls with known output shapes (the fake kernels), and autograd
connects them through torch.library.register_autograd. CPU tensors run the kernels in Strata's
SIMT simulator, CUDA tensors the nvcc build, through the C ABI (_capi.py).
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
from torch import Tensor

from . import _capi
from ._capi import StrataError

# ---- shared plumbing ---------------------------------------------------------------------------


def _check_same_device(**tensors: Optional[Tensor]) -> torch.device:
    """All given tensors on one device; the error names the argument that is not."""
    first_name, first = next((n, t) for n, t in tensors.items() if t is not None)
    for name, t in tensors.items():
        if t is not None and t.device != first.device:
            raise StrataError(f"{name}: on {t.device}, but {first_name} is on {first.device}")
    if first.device.type not in ("cpu", "cuda"):
        raise StrataError(f"{first_name}: device {first.device} (Strata runs CPU tensors in its "
                          "simulator and CUDA tensors on the GPU)")
    return first.device


def _executor(device: torch.device):
    """The library for `device`, a stream handle and a device guard."""
    if device.type == "cpu":
        return _capi.library("sim"), None, contextlib.nullcontext()
    lib = _capi.library("cuda")
    return lib, torch.cuda.current_stream(device).cuda_stream, torch.cuda.device(device)


def _lse_shape(q: Tensor, varlen: bool) -> list:
    """Strata's LSE layout: fp32 [heads, total_q] (FlashAttention's varlen layout)."""
    total = q.shape[0] if varlen else q.shape[0] * q.shape[1]
    return [q.shape[-2], total]


def _attention(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
               softmax_scale, causal, window_left, deterministic=True, dout=None, dq=None,
               dk=None, dv=None):
    """The C struct of one attention problem, and the host copies it points to (keep alive)."""
    a = _capi.Attention()
    for name, t in (("q", q), ("k", k), ("v", v), ("out", out), ("lse", lse), ("dout", dout),
                    ("dq", dq), ("dk", dk), ("dv", dv), ("cu_seqlens_q", cu_seqlens_q),
                    ("cu_seqlens_k", cu_seqlens_k)):
        setattr(a, name, _capi.tensor(t))
    keep = []
    if cu_seqlens_q is not None and cu_seqlens_q.is_cuda:
        # the nvcc build validates offsets from host copies (one small device-to-host copy)
        keep = [cu_seqlens_q.to("cpu"), cu_seqlens_k.to("cpu")]
        a.cu_seqlens_q_host, a.cu_seqlens_k_host = (_capi.tensor(t) for t in keep)
    a.max_seqlen_q, a.max_seqlen_k = max_seqlen_q, max_seqlen_k
    a.softmax_scale = softmax_scale
    a.causal, a.window_left, a.deterministic = int(causal), window_left, int(deterministic)
    # the struct holds raw addresses: it keeps every tensor it points to alive
    a._keep = [q, k, v, out, lse, dout, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, *keep]
    return a, keep


def _workspace(lib, query: str, a, *extra, device) -> Tensor:
    """Asks the library for the backward's workspace size and allocates it (uint8)."""
    nbytes = lib.query(query, a, *extra)
    ws = torch.empty(max(nbytes, 16) + 16, dtype=torch.uint8, device=device)
    offset = (-ws.data_ptr()) % 16  # 16-byte aligned start (torch's allocators already are)
    ws = ws[offset:offset + max(nbytes, 16)]
    a.workspace = _capi.tensor(ws)
    a._keep.append(ws)
    return ws


def _grad_contiguous(t: Tensor) -> Tensor:
    """Upstream gradients come in any layout (expanded, transposed): the kernels take dense."""
    return t if t.is_contiguous() else t.contiguous()


def _vr_struct(v_first, lambda_self, lambda_first, dv_first=None, dlambda_self=None,
               dlambda_first=None):
    r = _capi.ValueResidual()
    for name, t in (("v_first", v_first), ("lambda_self", lambda_self),
                    ("lambda_first", lambda_first), ("dv_first", dv_first),
                    ("dlambda_self", dlambda_self), ("dlambda_first", dlambda_first)):
        setattr(r, name, _capi.tensor(t))
    r._keep = [v_first, lambda_self, lambda_first, dv_first, dlambda_self, dlambda_first]
    return r


def _gate_struct(gate, dgate=None):
    g = _capi.Gate()
    g.gate, g.dgate = _capi.tensor(gate), _capi.tensor(dgate)
    g._keep = [gate, dgate]
    return g


# ---- attention (FlashAttention-2) --------------------------------------------------------------


@torch.library.custom_op("strata::flash_attn_fwd", mutates_args=())
def flash_attn_fwd(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Optional[Tensor],
                   cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int,
                   softmax_scale: float, causal: bool, window_left: int,
                   deterministic: bool) -> tuple[Tensor, Tensor]:
    device = _check_same_device(q=q, k=k, v=v, cu_seqlens_q=cu_seqlens_q,
                                cu_seqlens_k=cu_seqlens_k)
    lib, stream, guard = _executor(device)
    out = torch.empty(q.shape, dtype=q.dtype, device=device)
    lse = torch.empty(_lse_shape(q, cu_seqlens_q is not None), dtype=torch.float32, device=device)
    a, keep = _attention(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                         max_seqlen_k, softmax_scale, causal, window_left)
    a.stream = stream
    with guard:
        lib.call("strata_flash_fwd", a)
    return out, lse


@flash_attn_fwd.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
      window_left, deterministic):
    return torch.empty_like(q, memory_format=torch.contiguous_format), q.new_empty(
        _lse_shape(q, cu_seqlens_q is not None), dtype=torch.float32)


@torch.library.custom_op("strata::flash_attn_bwd", mutates_args=())
def flash_attn_bwd(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                   cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor],
                   max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float, causal: bool,
                   window_left: int, deterministic: bool) -> tuple[Tensor, Tensor, Tensor]:
    device = _check_same_device(dout=dout, q=q, k=k, v=v, out=out, lse=lse,
                                cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k)
    lib, stream, guard = _executor(device)
    dout = _grad_contiguous(dout)  # a local: the C struct holds only its address
    dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype, device=device) for t in (q, k, v))
    a, keep = _attention(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                         max_seqlen_k, softmax_scale, causal, window_left, deterministic,
                         dout, dq, dk, dv)
    a.stream = stream
    with guard:
        ws = _workspace(lib, "strata_flash_bwd_workspace_bytes", a, device=device)
        lib.call("strata_flash_bwd", a)
    del ws
    return dq, dk, dv


@flash_attn_bwd.register_fake
def _(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
      softmax_scale, causal, window_left, deterministic):
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) for t in (q, k, v))


def _flash_setup(ctx, inputs, output):
    q, k, v, cu_q, cu_k, *args = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
    ctx.args = args  # max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left, deterministic


def _flash_backward(ctx, dout, dlse):
    q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
    dq, dk, dv = flash_attn_bwd(dout, q, k, v, out, lse, cu_q, cu_k, *ctx.args)
    return dq, dk, dv, *[None] * (2 + len(ctx.args))


torch.library.register_autograd("strata::flash_attn_fwd", _flash_backward,
                                setup_context=_flash_setup)

# ---- ResFormer's value residual ----------------------------------------------------------------


@torch.library.custom_op("strata::resformer_attn_fwd", mutates_args=())
def resformer_attn_fwd(q: Tensor, k: Tensor, v: Tensor, v_first: Tensor, lambda_self: Tensor,
                       lambda_first: Tensor, cu_seqlens_q: Optional[Tensor],
                       cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int,
                       softmax_scale: float, causal: bool, window_left: int,
                       deterministic: bool) -> tuple[Tensor, Tensor]:
    device = _check_same_device(q=q, k=k, v=v, v_first=v_first, lambda_self=lambda_self,
                                lambda_first=lambda_first, cu_seqlens_q=cu_seqlens_q,
                                cu_seqlens_k=cu_seqlens_k)
    lib, stream, guard = _executor(device)
    out = torch.empty(q.shape, dtype=q.dtype, device=device)
    lse = torch.empty(_lse_shape(q, cu_seqlens_q is not None), dtype=torch.float32, device=device)
    a, keep = _attention(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                         max_seqlen_k, softmax_scale, causal, window_left)
    a.stream = stream
    with guard:
        lib.call("strata_resformer_fwd", a, _vr_struct(v_first, lambda_self, lambda_first))
    return out, lse


@resformer_attn_fwd.register_fake
def _(q, k, v, v_first, lambda_self, lambda_first, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
      max_seqlen_k, softmax_scale, causal, window_left, deterministic):
    return torch.empty_like(q, memory_format=torch.contiguous_format), q.new_empty(
        _lse_shape(q, cu_seqlens_q is not None), dtype=torch.float32)


@torch.library.custom_op("strata::resformer_attn_bwd", mutates_args=())
def resformer_attn_bwd(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, v_first: Tensor,
                       lambda_self: Tensor, lambda_first: Tensor, out: Tensor, lse: Tensor,
                       cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor],
                       max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float, causal: bool,
                       window_left: int, deterministic: bool
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    device = _check_same_device(dout=dout, q=q, k=k, v=v, v_first=v_first,
                                lambda_self=lambda_self, lambda_first=lambda_first, out=out,
                                lse=lse, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k)
    lib, stream, guard = _executor(device)
    dout = _grad_contiguous(dout)  # a local: the C struct holds only its address
    dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype, device=device) for t in (q, k, v))
    # the layer's share of dV_0 is added into an fp32 accumulator (Strata's stack contract)
    dv_first = torch.zeros(v.shape, dtype=torch.float32, device=device)
    dlambda_self = torch.empty_like(lambda_self)
    dlambda_first = torch.empty_like(lambda_first)
    a, keep = _attention(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                         max_seqlen_k, softmax_scale, causal, window_left, deterministic,
                         dout, dq, dk, dv)
    a.stream = stream
    r = _vr_struct(v_first, lambda_self, lambda_first, dv_first, dlambda_self, dlambda_first)
    with guard:
        ws = _workspace(lib, "strata_resformer_bwd_workspace_bytes", a, r, device=device)
        lib.call("strata_resformer_bwd", a, r)
    del ws
    return dq, dk, dv, dv_first.to(v_first.dtype), dlambda_self, dlambda_first


@resformer_attn_bwd.register_fake
def _(dout, q, k, v, v_first, lambda_self, lambda_first, out, lse, cu_seqlens_q, cu_seqlens_k,
      max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left, deterministic):
    like = (q, k, v, v_first, lambda_self, lambda_first)
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) for t in like)


def _resformer_setup(ctx, inputs, output):
    q, k, v, v_first, ls, lf, cu_q, cu_k, *args = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, v_first, ls, lf, out, lse, cu_q, cu_k)
    ctx.args = args


def _resformer_backward(ctx, dout, dlse):
    q, k, v, v_first, ls, lf, out, lse, cu_q, cu_k = ctx.saved_tensors
    grads = resformer_attn_bwd(dout, q, k, v, v_first, ls, lf, out, lse, cu_q, cu_k, *ctx.args)
    return (*grads, *[None] * (2 + len(ctx.args)))


torch.library.register_autograd("strata::resformer_attn_fwd", _resformer_backward,
                                setup_context=_resformer_setup)

# ---- Gated Attention's output gate -------------------------------------------------------------


@torch.library.custom_op("strata::gated_attn_fwd", mutates_args=())
def gated_attn_fwd(q: Tensor, k: Tensor, v: Tensor, gate: Tensor, cu_seqlens_q: Optional[Tensor],
                   cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int,
                   softmax_scale: float, causal: bool, window_left: int,
                   deterministic: bool) -> tuple[Tensor, Tensor]:
    device = _check_same_device(q=q, k=k, v=v, gate=gate, cu_seqlens_q=cu_seqlens_q,
                                cu_seqlens_k=cu_seqlens_k)
    lib, stream, guard = _executor(device)
    out = torch.empty(q.shape, dtype=q.dtype, device=device)
    lse = torch.empty(_lse_shape(q, cu_seqlens_q is not None), dtype=torch.float32, device=device)
    a, keep = _attention(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                         max_seqlen_k, softmax_scale, causal, window_left)
    a.stream = stream
    with guard:
        lib.call("strata_gated_fwd", a, _gate_struct(gate))
    return out, lse


@gated_attn_fwd.register_fake
def _(q, k, v, gate, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
      causal, window_left, deterministic):
    return torch.empty_like(q, memory_format=torch.contiguous_format), q.new_empty(
        _lse_shape(q, cu_seqlens_q is not None), dtype=torch.float32)


@torch.library.custom_op("strata::gated_attn_bwd", mutates_args=())
def gated_attn_bwd(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, gate: Tensor, out: Tensor,
                   lse: Tensor, cu_seqlens_q: Optional[Tensor], cu_seqlens_k: Optional[Tensor],
                   max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float, causal: bool,
                   window_left: int,
                   deterministic: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    device = _check_same_device(dout=dout, q=q, k=k, v=v, gate=gate, out=out, lse=lse,
                                cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k)
    lib, stream, guard = _executor(device)
    dout = _grad_contiguous(dout)  # a local: the C struct holds only its address
    dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype, device=device) for t in (q, k, v))
    dgate = torch.empty_strided(gate.shape, gate.stride(), dtype=gate.dtype, device=device)
    a, keep = _attention(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                         max_seqlen_k, softmax_scale, causal, window_left, deterministic,
                         dout, dq, dk, dv)
    a.stream = stream
    g = _gate_struct(gate, dgate)
    with guard:
        ws = _workspace(lib, "strata_gated_bwd_workspace_bytes", a, g, device=device)
        lib.call("strata_gated_bwd", a, g)
    del ws
    return dq, dk, dv, dgate


@gated_attn_bwd.register_fake
def _(dout, q, k, v, gate, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
      softmax_scale, causal, window_left, deterministic):
    return (*(torch.empty_like(t, memory_format=torch.contiguous_format) for t in (q, k, v)),
            torch.empty_strided(gate.shape, gate.stride(), dtype=gate.dtype, device=gate.device))


def _gated_setup(ctx, inputs, output):
    q, k, v, gate, cu_q, cu_k, *args = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, gate, out, lse, cu_q, cu_k)
    ctx.args = args


def _gated_backward(ctx, dout, dlse):
    q, k, v, gate, out, lse, cu_q, cu_k = ctx.saved_tensors
    grads = gated_attn_bwd(dout, q, k, v, gate, out, lse, cu_q, cu_k, *ctx.args)
    return (*grads, *[None] * (2 + len(ctx.args)))


torch.library.register_autograd("strata::gated_attn_fwd", _gated_backward,
                                setup_context=_gated_setup)
