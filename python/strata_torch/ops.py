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
    """The C struct of one attention problem. It holds raw addresses, so it also keeps every
    tensor it points to alive (a._keep), host copies included."""
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
    a._keep = [q, k, v, out, lse, dout, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, *keep]
    return a


def _workspace(lib, query: str, a, *extra, device) -> None:
    """Asks the library for the backward's workspace size, allocates it (uint8) and points the
    struct at it (a._keep holds it)."""
    nbytes = lib.query(query, a, *extra)
    ws = torch.empty(max(nbytes, 16) + 16, dtype=torch.uint8, device=device)
    offset = (-ws.data_ptr()) % 16  # 16-byte aligned start (torch's allocators already are)
    ws = ws[offset:offset + max(nbytes, 16)]
    a.workspace = _capi.tensor(ws)
    a._keep.append(ws)


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


def _attention_forward(fn: str, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                       softmax_scale, causal, window_left, make_extra=lambda: (), **operands):
    """The forward of an attention op whose outputs are out and lse: checks devices, allocates,
    calls `fn` with the attention struct and the variant's structs from make_extra()."""
    device = _check_same_device(q=q, k=k, v=v, **operands, cu_seqlens_q=cu_seqlens_q,
                                cu_seqlens_k=cu_seqlens_k)
    lib, stream, guard = _executor(device)
    out = torch.empty(q.shape, dtype=q.dtype, device=device)
    lse = torch.empty(_lse_shape(q, cu_seqlens_q is not None), dtype=torch.float32, device=device)
    a = _attention(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                   max_seqlen_k, softmax_scale, causal, window_left)
    a.stream = stream
    with guard:
        lib.call(fn, a, *make_extra())
    return out, lse


def _attention_backward(fn: str, dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k,
                        max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left,
                        deterministic, make_extra=lambda: (), **operands):
    """The backward of an attention op: dq, dk, dv (and whatever make_extra()'s structs hold)
    from `fn`, with the workspace `fn`_workspace_bytes asks for."""
    device = _check_same_device(dout=dout, q=q, k=k, v=v, out=out, lse=lse, **operands,
                                cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k)
    lib, stream, guard = _executor(device)
    dout = _grad_contiguous(dout)  # a local: the C struct holds only its address
    dq, dk, dv = (torch.empty(t.shape, dtype=t.dtype, device=device) for t in (q, k, v))
    a = _attention(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                   max_seqlen_k, softmax_scale, causal, window_left, deterministic, dout,
                   dq, dk, dv)
    a.stream = stream
    extra = make_extra()
    with guard:
        _workspace(lib, fn + "_workspace_bytes", a, *extra, device=device)
        lib.call(fn, a, *extra)
    return dq, dk, dv


# ---- attention (FlashAttention-2) --------------------------------------------------------------


@torch.library.custom_op("strata::flash_attn_fwd", mutates_args=())
def flash_attn_fwd(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Optional[Tensor],
                   cu_seqlens_k: Optional[Tensor], max_seqlen_q: int, max_seqlen_k: int,
                   softmax_scale: float, causal: bool, window_left: int,
                   deterministic: bool) -> tuple[Tensor, Tensor]:
    return _attention_forward("strata_flash_fwd", q, k, v, cu_seqlens_q, cu_seqlens_k,
                              max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left)


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
    return _attention_backward("strata_flash_bwd", dout, q, k, v, out, lse, cu_seqlens_q,
                               cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, causal,
                               window_left, deterministic)


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
    return _attention_forward(
        "strata_resformer_fwd", q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
        softmax_scale, causal, window_left,
        lambda: (_vr_struct(v_first, lambda_self, lambda_first),), v_first=v_first,
        lambda_self=lambda_self, lambda_first=lambda_first)


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
    device = q.device
    # the layer's share of dV_0 is added into an fp32 accumulator (Strata's stack contract)
    dv_first = torch.zeros(v.shape, dtype=torch.float32, device=device)
    dlambda_self = torch.empty_like(lambda_self)
    dlambda_first = torch.empty_like(lambda_first)
    dq, dk, dv = _attention_backward(
        "strata_resformer_bwd", dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
        max_seqlen_k, softmax_scale, causal, window_left, deterministic,
        lambda: (_vr_struct(v_first, lambda_self, lambda_first, dv_first, dlambda_self,
                            dlambda_first),), v_first=v_first, lambda_self=lambda_self,
        lambda_first=lambda_first)
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
    return _attention_forward("strata_gated_fwd", q, k, v, cu_seqlens_q, cu_seqlens_k,
                              max_seqlen_q, max_seqlen_k, softmax_scale, causal, window_left,
                              lambda: (_gate_struct(gate),), gate=gate)


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
    dgate = torch.empty_strided(gate.shape, gate.stride(), dtype=gate.dtype, device=gate.device)
    dq, dk, dv = _attention_backward(
        "strata_gated_bwd", dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
        max_seqlen_k, softmax_scale, causal, window_left, deterministic,
        lambda: (_gate_struct(gate, dgate),), gate=gate)
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

# ---- ExoFormer (one layer: the anchor mix, QK-norm, RoPE and Gated Attention) ------------------

_STREAMS = ("q", "k", "v", "g")


def _exo_struct(p, anchor, gamma_anchor, lambda1, lambda2, gamma_q, gamma_k, s, rope, rope_theta,
                norm_eps, anchor_eps, grads=None):
    """The C struct of one ExoFormer layer; `grads` (backward) holds the output tensors."""
    x = _capi.Exo()
    keep = [*p, *anchor, *gamma_anchor, *lambda1, *lambda2, gamma_q, gamma_k, s]
    for i in range(4):
        st = x.stream[i]
        st.p, st.anchor = _capi.tensor(p[i]), _capi.tensor(anchor[i])
        st.gamma_anchor = _capi.tensor(gamma_anchor[i])
        st.lambda1, st.lambda2 = _capi.tensor(lambda1[i]), _capi.tensor(lambda2[i])
        if grads is not None:
            for name in ("dp", "danchor", "dgamma_anchor", "dlambda1", "dlambda2"):
                setattr(st, name, _capi.tensor(grads[name][i]))
                keep.append(grads[name][i])
    x.gamma_q, x.gamma_k, x.s = _capi.tensor(gamma_q), _capi.tensor(gamma_k), _capi.tensor(s)
    if grads is not None:
        x.dgamma_q, x.dgamma_k = _capi.tensor(grads["dgamma_q"]), _capi.tensor(grads["dgamma_k"])
        x.ds = _capi.tensor(grads["ds"] if s is not None else None)
        keep += [grads["dgamma_q"], grads["dgamma_k"], grads["ds"]]
    x.rope, x.rope_theta, x.norm_eps, x.anchor_eps = int(rope), rope_theta, norm_eps, anchor_eps
    x._keep = keep
    return x


@torch.library.custom_op("strata::exoformer_fwd", mutates_args=())
def exoformer_fwd(p: list[Tensor], anchor: list[Tensor], gamma_anchor: list[Tensor],
                  lambda1: list[Tensor], lambda2: list[Tensor], gamma_q: Tensor, gamma_k: Tensor,
                  s: Optional[Tensor], cu_seqlens: Optional[Tensor], max_seqlen: int,
                  softmax_scale: float, causal: bool, window_left: int, deterministic: bool,
                  rope: bool, rope_theta: float, norm_eps: float,
                  anchor_eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    named = {f"{f}_{_STREAMS[i]}": t for f, ts in (("p", p), ("anchor", anchor)) for i, t in
             enumerate(ts)}
    device = _check_same_device(**named, gamma_q=gamma_q, gamma_k=gamma_k, s=s,
                                cu_seqlens=cu_seqlens)
    lib, stream, guard = _executor(device)
    # the mixed operands q~, k~, v~ and gate logits g~: written here, read by the backward
    mixed = [torch.empty(t.shape, dtype=t.dtype, device=device) for t in p]
    q_mix, k_mix, v_mix, g_mix = mixed
    out = torch.empty(p[0].shape, dtype=p[0].dtype, device=device)
    lse = torch.empty(_lse_shape(p[0], cu_seqlens is not None), dtype=torch.float32,
                      device=device)
    a = _attention(q_mix, k_mix, v_mix, out, lse, cu_seqlens, cu_seqlens, max_seqlen,
                   max_seqlen, softmax_scale, causal, window_left)
    a.stream = stream
    x = _exo_struct(p, anchor, gamma_anchor, lambda1, lambda2, gamma_q, gamma_k, s, rope,
                    rope_theta, norm_eps, anchor_eps)
    with guard:
        lib.call("strata_exoformer_fwd", a, _gate_struct(g_mix), x)
    return out, lse, q_mix, k_mix, v_mix, g_mix


@exoformer_fwd.register_fake
def _(p, anchor, gamma_anchor, lambda1, lambda2, gamma_q, gamma_k, s, cu_seqlens, max_seqlen,
      softmax_scale, causal, window_left, deterministic, rope, rope_theta, norm_eps, anchor_eps):
    q = p[0]
    return (torch.empty_like(q, memory_format=torch.contiguous_format),
            q.new_empty(_lse_shape(q, cu_seqlens is not None), dtype=torch.float32),
            *(torch.empty_like(t, memory_format=torch.contiguous_format) for t in p))


@torch.library.custom_op("strata::exoformer_bwd", mutates_args=())
def exoformer_bwd(dout: Tensor, p: list[Tensor], anchor: list[Tensor],
                  gamma_anchor: list[Tensor], lambda1: list[Tensor], lambda2: list[Tensor],
                  gamma_q: Tensor, gamma_k: Tensor, s: Optional[Tensor], out: Tensor, lse: Tensor,
                  mixed: list[Tensor], cu_seqlens: Optional[Tensor], max_seqlen: int,
                  softmax_scale: float, causal: bool, window_left: int, deterministic: bool,
                  rope: bool, rope_theta: float, norm_eps: float,
                  anchor_eps: float) -> list[Tensor]:
    """Gradients, flat: dp (4), danchor (4), dgamma_anchor (4), dlambda1 (4), dlambda2 (4),
    dgamma_q, dgamma_k, ds (empty when static)."""
    device = _check_same_device(dout=dout, p_q=p[0], out=out, lse=lse, cu_seqlens=cu_seqlens)
    lib, stream, guard = _executor(device)
    dout = _grad_contiguous(dout)  # a local: the C struct holds only its address

    def like(ts):
        return [torch.empty(t.shape, dtype=t.dtype, device=device) for t in ts]

    grads = {"dp": like(p), "danchor": like(anchor), "dgamma_anchor": like(gamma_anchor),
             "dlambda1": like(lambda1), "dlambda2": like(lambda2),
             "dgamma_q": torch.empty_like(gamma_q), "dgamma_k": torch.empty_like(gamma_k),
             "ds": torch.empty_like(s) if s is not None else torch.empty(0, device=device)}
    # scratch: the attention's gradients, which the mix's backward reads
    q_mix, k_mix, v_mix, g_mix = mixed
    dq, dk, dv, dg = like(mixed)
    a = _attention(q_mix, k_mix, v_mix, out, lse, cu_seqlens, cu_seqlens, max_seqlen,
                   max_seqlen, softmax_scale, causal, window_left, deterministic, dout, dq,
                   dk, dv)
    a.stream = stream
    g = _gate_struct(g_mix, dg)
    x = _exo_struct(p, anchor, gamma_anchor, lambda1, lambda2, gamma_q, gamma_k, s, rope,
                    rope_theta, norm_eps, anchor_eps, grads)
    with guard:
        _workspace(lib, "strata_exoformer_bwd_workspace_bytes", a, g, x, device=device)
        lib.call("strata_exoformer_bwd", a, g, x)
    return [*grads["dp"], *grads["danchor"], *grads["dgamma_anchor"], *grads["dlambda1"],
            *grads["dlambda2"], grads["dgamma_q"], grads["dgamma_k"], grads["ds"]]


@exoformer_bwd.register_fake
def _(dout, p, anchor, gamma_anchor, lambda1, lambda2, gamma_q, gamma_k, s, out, lse, mixed,
      cu_seqlens, max_seqlen, softmax_scale, causal, window_left, deterministic, rope,
      rope_theta, norm_eps, anchor_eps):
    def like(ts):
        return [torch.empty_like(t, memory_format=torch.contiguous_format) for t in ts]

    ds = torch.empty_like(s) if s is not None else gamma_q.new_empty(0)
    return [*like(p), *like(anchor), *like(gamma_anchor), *like(lambda1), *like(lambda2),
            torch.empty_like(gamma_q), torch.empty_like(gamma_k), ds]


def _exo_setup(ctx, inputs, output):
    p, anchor, gamma_anchor, lambda1, lambda2, gamma_q, gamma_k, s, cu, *args = inputs
    out, lse, *mixed = output
    ctx.save_for_backward(*p, *anchor, *gamma_anchor, *lambda1, *lambda2, gamma_q, gamma_k, s,
                          out, lse, *mixed, cu)
    ctx.args = args  # max_seqlen, softmax_scale, causal, window_left, deterministic, rope, ...


def _exo_backward(ctx, dout, dlse, *dmixed):
    t = ctx.saved_tensors
    p, anchor, gamma_anchor, lambda1, lambda2 = (list(t[i:i + 4]) for i in range(0, 20, 4))
    gamma_q, gamma_k, s, out, lse = t[20:25]
    mixed, cu = list(t[25:29]), t[29]
    g = exoformer_bwd(dout, p, anchor, gamma_anchor, lambda1, lambda2, gamma_q, gamma_k, s, out,
                      lse, mixed, cu, *ctx.args)
    ds = g[22] if s is not None else None
    return (g[0:4], g[4:8], g[8:12], g[12:16], g[16:20], g[20], g[21], ds,
            *[None] * (1 + len(ctx.args)))


torch.library.register_autograd("strata::exoformer_fwd", _exo_backward, setup_context=_exo_setup)

# ---- Depth-Attention (one layer: the depth pass and attention) ---------------------------------


def _depth_struct(q, k, v, src_khat, src_vhat, gamma_q, gamma_k, rope, rope_theta, eps,
                  grads=None):
    if len(src_khat) > _capi.DEPTH_MAX_SOURCES or len(src_vhat) != len(src_khat):
        raise StrataError(f"sources: {len(src_khat)} k^ and {len(src_vhat)} v^, expected as many "
                          f"of each and at most {_capi.DEPTH_MAX_SOURCES}")
    x = _capi.Depth()
    x.q, x.k, x.v = _capi.tensor(q), _capi.tensor(k), _capi.tensor(v)
    x.num_sources = len(src_khat)
    for c, (kh, vh) in enumerate(zip(src_khat, src_vhat)):
        x.src_khat[c], x.src_vhat[c] = _capi.tensor(kh), _capi.tensor(vh)
    x.gamma_q, x.gamma_k = _capi.tensor(gamma_q), _capi.tensor(gamma_k)
    keep = [q, k, v, *src_khat, *src_vhat, gamma_q, gamma_k]
    if grads is not None:
        for name in ("dq", "dk", "dv", "dkhat_acc", "dvhat_acc", "dgamma_q", "dgamma_k"):
            setattr(x, name, _capi.tensor(grads[name]))
            keep.append(grads[name])
        for c in range(len(src_khat)):
            x.src_dkhat_acc[c] = _capi.tensor(grads["src_dkhat"][c])
            x.src_dvhat_acc[c] = _capi.tensor(grads["src_dvhat"][c])
        keep += grads["src_dkhat"] + grads["src_dvhat"]
    x.rope, x.rope_theta, x.eps = int(rope), rope_theta, eps
    x._keep = keep
    return x


@torch.library.custom_op("strata::depth_attn_fwd", mutates_args=())
def depth_attn_fwd(q: Tensor, k: Tensor, v: Tensor, src_khat: list[Tensor],
                   src_vhat: list[Tensor], gamma_q: Optional[Tensor], gamma_k: Optional[Tensor],
                   cu_seqlens: Optional[Tensor], max_seqlen: int, softmax_scale: float,
                   causal: bool, window_left: int, deterministic: bool, rope: bool,
                   rope_theta: float,
                   eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """out, lse, and the pass's outputs q_rot, k^, v^ (k^ and v^ are later layers' sources)."""
    device = _check_same_device(q=q, k=k, v=v, gamma_q=gamma_q, gamma_k=gamma_k,
                                cu_seqlens=cu_seqlens)
    lib, stream, guard = _executor(device)
    q_rot, khat, vhat = (torch.empty(t.shape, dtype=t.dtype, device=device) for t in (q, k, v))
    out = torch.empty(q.shape, dtype=q.dtype, device=device)
    lse = torch.empty(_lse_shape(q, cu_seqlens is not None), dtype=torch.float32, device=device)
    a = _attention(q_rot, khat, vhat, out, lse, cu_seqlens, cu_seqlens, max_seqlen,
                   max_seqlen, softmax_scale, causal, window_left)
    a.stream = stream
    x = _depth_struct(q, k, v, src_khat, src_vhat, gamma_q, gamma_k, rope, rope_theta, eps)
    with guard:
        lib.call("strata_depth_fwd", a, x)
    return out, lse, q_rot, khat, vhat


@depth_attn_fwd.register_fake
def _(q, k, v, src_khat, src_vhat, gamma_q, gamma_k, cu_seqlens, max_seqlen, softmax_scale,
      causal, window_left, deterministic, rope, rope_theta, eps):
    return (torch.empty_like(q, memory_format=torch.contiguous_format),
            q.new_empty(_lse_shape(q, cu_seqlens is not None), dtype=torch.float32),
            *(torch.empty_like(t, memory_format=torch.contiguous_format) for t in (q, k, v)))


@torch.library.custom_op("strata::depth_attn_bwd", mutates_args=())
def depth_attn_bwd(dout: Tensor, dkhat: Optional[Tensor], dvhat: Optional[Tensor], q: Tensor,
                   k: Tensor, v: Tensor, src_khat: list[Tensor], src_vhat: list[Tensor],
                   gamma_q: Optional[Tensor], gamma_k: Optional[Tensor], out: Tensor, lse: Tensor,
                   q_rot: Tensor, khat: Tensor, vhat: Tensor, cu_seqlens: Optional[Tensor],
                   max_seqlen: int, softmax_scale: float, causal: bool, window_left: int,
                   deterministic: bool, rope: bool, rope_theta: float,
                   eps: float) -> list[Tensor]:
    """Gradients, flat: dq, dk, dv, dgamma_q, dgamma_k (empty without QK-norm), then the
    sources' dk^ (n) and dv^ (n). dkhat / dvhat: later layers' gradients of this layer's k^ / v^
    (None when no later layer read it)."""
    device = _check_same_device(dout=dout, q=q, k=k, v=v, out=out, lse=lse,
                                cu_seqlens=cu_seqlens)
    lib, stream, guard = _executor(device)
    dout = _grad_contiguous(dout)  # a local: the C struct holds only its address
    n = len(src_khat)
    norm = gamma_q is not None

    def acc():
        return torch.zeros(k.shape, dtype=torch.float32, device=device)

    grads = {"dq": torch.empty(q.shape, dtype=q.dtype, device=device),
             "dk": torch.empty(k.shape, dtype=k.dtype, device=device),
             "dv": torch.empty(v.shape, dtype=v.dtype, device=device),
             # this layer's k^ / v^ gradient from later layers, in fp32 as the pass reads it
             "dkhat_acc": dkhat.float().contiguous() if dkhat is not None else None,
             "dvhat_acc": dvhat.float().contiguous() if dvhat is not None else None,
             "dgamma_q": torch.zeros(q.shape[-1], device=device) if norm else None,
             "dgamma_k": torch.zeros(q.shape[-1], device=device) if norm else None,
             "src_dkhat": [acc() for _ in range(n)], "src_dvhat": [acc() for _ in range(n)]}
    # scratch: the attention's gradients of q_rot, k^, v^, which the pass reads
    dq_rot, dk_hat, dv_hat = (torch.empty(t.shape, dtype=t.dtype, device=device)
                              for t in (q, k, v))
    a = _attention(q_rot, khat, vhat, out, lse, cu_seqlens, cu_seqlens, max_seqlen,
                   max_seqlen, softmax_scale, causal, window_left, deterministic, dout,
                   dq_rot, dk_hat, dv_hat)
    a.stream = stream
    x = _depth_struct(q, k, v, src_khat, src_vhat, gamma_q, gamma_k, rope, rope_theta, eps, grads)
    with guard:
        _workspace(lib, "strata_depth_bwd_workspace_bytes", a, x, device=device)
        lib.call("strata_depth_bwd", a, x)
    def empty():  # a distinct tensor each time: custom-op outputs may not alias
        return q.new_empty(0, dtype=torch.float32)

    return [grads["dq"], grads["dk"], grads["dv"],
            grads["dgamma_q"] if norm else empty(), grads["dgamma_k"] if norm else empty(),
            *(t.to(k.dtype) for t in grads["src_dkhat"]),
            *(t.to(k.dtype) for t in grads["src_dvhat"])]


@depth_attn_bwd.register_fake
def _(dout, dkhat, dvhat, q, k, v, src_khat, src_vhat, gamma_q, gamma_k, out, lse, q_rot, khat,
      vhat, cu_seqlens, max_seqlen, softmax_scale, causal, window_left, deterministic, rope,
      rope_theta, eps):
    def like(t):
        return torch.empty_like(t, memory_format=torch.contiguous_format)

    def gain(g):
        return like(g) if g is not None else q.new_empty(0, dtype=torch.float32)

    return [like(q), like(k), like(v), gain(gamma_q), gain(gamma_k), *(like(t) for t in src_khat),
            *(like(t) for t in src_vhat)]


def _depth_setup(ctx, inputs, output):
    q, k, v, src_khat, src_vhat, gamma_q, gamma_k, cu, *args = inputs
    out, lse, q_rot, khat, vhat = output
    ctx.n = len(src_khat)
    ctx.save_for_backward(q, k, v, *src_khat, *src_vhat, gamma_q, gamma_k, out, lse, q_rot, khat,
                          vhat, cu)
    ctx.args = args  # max_seqlen, softmax_scale, causal, window_left, deterministic, rope, ...


def _depth_backward(ctx, dout, dlse, dq_rot, dkhat, dvhat):
    t, n = ctx.saved_tensors, ctx.n
    q, k, v = t[0:3]
    src_khat, src_vhat = list(t[3:3 + n]), list(t[3 + n:3 + 2 * n])
    gamma_q, gamma_k, out, lse, q_rot, khat, vhat, cu = t[3 + 2 * n:]
    g = depth_attn_bwd(dout, dkhat, dvhat, q, k, v, src_khat, src_vhat, gamma_q, gamma_k, out,
                       lse, q_rot, khat, vhat, cu, *ctx.args)
    norm = gamma_q is not None
    return (g[0], g[1], g[2], g[5:5 + n], g[5 + n:5 + 2 * n], g[3] if norm else None,
            g[4] if norm else None, *[None] * (1 + len(ctx.args)))


torch.library.register_autograd("strata::depth_attn_fwd", _depth_backward,
                                setup_context=_depth_setup)

# ---- MEA (one layer: head-level composition, head GroupNorm, attention) ------------------------


def _mea_names(site_output: bool) -> tuple:
    """The GroupNorm affines of a site, in the order `gn` lists them."""
    return ("gamma_o", "beta_o") if site_output else ("gamma_k", "beta_k", "gamma_v", "beta_v")


def _mea_struct(tensors: dict, site_output, rope, rope_theta, gn_eps):
    m = _capi.Mea()
    for name, t in tensors.items():
        setattr(m, name, _capi.tensor(t))
    m.site, m.rope, m.rope_theta, m.gn_eps = int(site_output), int(rope), rope_theta, gn_eps
    m._keep = list(tensors.values())
    return m


@torch.library.custom_op("strata::mea_fwd", mutates_args=())
def mea_fwd(q: Tensor, kc: Tensor, vc: Tensor, a_k: Tensor, a_v: Tensor, gn: list[Tensor],
            cu_seqlens: Optional[Tensor], max_seqlen: int, softmax_scale: float, causal: bool,
            window_left: int, deterministic: bool, site_output: bool, rope: bool,
            rope_theta: float,
            gn_eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """out, lse, and what the backward reads: q_rot, the attention's K and V, and at the Output
    site the attention output O before the GroupNorm and RoPE(K_c) (empty at KeyValue).
    gn: the site's affines (_mea_names)."""
    device = _check_same_device(q=q, kc=kc, vc=vc, a_k=a_k, a_v=a_v, cu_seqlens=cu_seqlens)
    lib, stream, guard = _executor(device)
    kv_shape = [*q.shape[:-2], a_k.shape[-1], q.shape[-1]]
    q_rot = torch.empty(q.shape, dtype=q.dtype, device=device)
    k_attn, v_attn = (torch.empty(kv_shape, dtype=q.dtype, device=device) for _ in range(2))
    attn_out = torch.empty(q.shape, dtype=q.dtype, device=device)  # O (Output) or out (KeyValue)
    lse = torch.empty(_lse_shape(q, cu_seqlens is not None), dtype=torch.float32, device=device)
    out = torch.empty(q.shape, dtype=q.dtype, device=device) if site_output else None
    kc_rot = torch.empty(kc.shape, dtype=kc.dtype, device=device) if site_output else None
    a = _attention(q_rot, k_attn, v_attn, attn_out, lse, cu_seqlens, cu_seqlens, max_seqlen,
                   max_seqlen, softmax_scale, causal, window_left)
    a.stream = stream
    m = _mea_struct({"q": q, "kc": kc, "vc": vc, "a_k": a_k, "a_v": a_v,
                     **dict(zip(_mea_names(site_output), gn)), "kc_rot": kc_rot, "out": out},
                    site_output, rope, rope_theta, gn_eps)
    with guard:
        lib.call("strata_mea_fwd", a, m)
    if site_output:
        return out, lse, q_rot, k_attn, v_attn, attn_out, kc_rot
    return attn_out, lse, q_rot, k_attn, v_attn, q.new_empty(0), q.new_empty(0)


@mea_fwd.register_fake
def _(q, kc, vc, a_k, a_v, gn, cu_seqlens, max_seqlen, softmax_scale, causal, window_left,
      deterministic, site_output, rope, rope_theta, gn_eps):
    def like(t):
        return torch.empty_like(t, memory_format=torch.contiguous_format)

    kv = q.new_empty([*q.shape[:-2], a_k.shape[-1], q.shape[-1]])
    return (like(q), q.new_empty(_lse_shape(q, cu_seqlens is not None), dtype=torch.float32),
            like(q), kv, torch.empty_like(kv), like(q) if site_output else q.new_empty(0),
            like(kc) if site_output else q.new_empty(0))


@torch.library.custom_op("strata::mea_bwd", mutates_args=())
def mea_bwd(dout: Tensor, q: Tensor, kc: Tensor, vc: Tensor, a_k: Tensor, a_v: Tensor,
            gn: list[Tensor], out: Tensor, lse: Tensor, q_rot: Tensor, k_attn: Tensor,
            v_attn: Tensor, attn_out: Tensor, kc_rot: Tensor, cu_seqlens: Optional[Tensor],
            max_seqlen: int, softmax_scale: float, causal: bool, window_left: int,
            deterministic: bool, site_output: bool, rope: bool, rope_theta: float,
            gn_eps: float) -> list[Tensor]:
    """Gradients: dq, dkc, dvc, da_k, da_v, then one per gn entry. out: the layer's output;
    attn_out: the attention's (O at Output, out itself at KeyValue)."""
    device = _check_same_device(dout=dout, q=q, kc=kc, vc=vc, lse=lse, cu_seqlens=cu_seqlens)
    lib, stream, guard = _executor(device)
    dout = _grad_contiguous(dout)  # a local: the C struct holds only its address
    names = _mea_names(site_output)
    grads = {"dq": torch.empty(q.shape, dtype=q.dtype, device=device),
             "dkc": torch.empty(kc.shape, dtype=kc.dtype, device=device),
             "dvc": torch.empty(vc.shape, dtype=vc.dtype, device=device),
             "da_k": torch.zeros_like(a_k), "da_v": torch.zeros_like(a_v),
             **{"d" + n: torch.zeros_like(t) for n, t in zip(names, gn)}}
    # scratch: the attention's gradients of q_rot, K and V, which the pass reads
    dq_rot = torch.empty(q.shape, dtype=q.dtype, device=device)
    dk_attn, dv_attn = torch.empty_like(k_attn), torch.empty_like(v_attn)
    a = _attention(q_rot, k_attn, v_attn, attn_out, lse, cu_seqlens, cu_seqlens, max_seqlen,
                   max_seqlen, softmax_scale, causal, window_left, deterministic, dout,
                   dq_rot, dk_attn, dv_attn)
    a.stream = stream
    m = _mea_struct({"q": q, "kc": kc, "vc": vc, "a_k": a_k, "a_v": a_v,
                     **dict(zip(names, gn)), "kc_rot": kc_rot if site_output else None,
                     "out": out if site_output else None, **grads}, site_output, rope,
                    rope_theta, gn_eps)
    with guard:
        _workspace(lib, "strata_mea_bwd_workspace_bytes", a, m, device=device)
        lib.call("strata_mea_bwd", a, m)
    return list(grads.values())


@mea_bwd.register_fake
def _(dout, q, kc, vc, a_k, a_v, gn, out, lse, q_rot, k_attn, v_attn, attn_out, kc_rot,
      cu_seqlens, max_seqlen, softmax_scale, causal, window_left, deterministic, site_output,
      rope, rope_theta, gn_eps):
    def like(t):
        return torch.empty_like(t, memory_format=torch.contiguous_format)

    return [like(q), like(kc), like(vc), like(a_k), like(a_v), *(like(t) for t in gn)]


def _mea_setup(ctx, inputs, output):
    q, kc, vc, a_k, a_v, gn, cu, *args = inputs
    out, lse, q_rot, k_attn, v_attn, o_attn, kc_rot = output
    ctx.site_output, ctx.n = args[5], len(gn)
    ctx.save_for_backward(q, kc, vc, a_k, a_v, *gn, out, lse, q_rot, k_attn, v_attn,
                          o_attn if ctx.site_output else out, kc_rot, cu)
    ctx.args = args  # max_seqlen, softmax_scale, causal, window_left, deterministic, site, ...


def _mea_backward(ctx, dout, dlse, dq_rot, dk_attn, dv_attn, do_attn, dkc_rot):
    t, n = list(ctx.saved_tensors), ctx.n
    q, kc, vc, a_k, a_v = t[:5]
    gn = t[5:5 + n]
    out, lse, q_rot, k_attn, v_attn, attn_out, kc_rot, cu = t[5 + n:]
    g = mea_bwd(dout, q, kc, vc, a_k, a_v, gn, out, lse, q_rot, k_attn, v_attn, attn_out, kc_rot,
                cu, *ctx.args)
    return (g[0], g[1], g[2], g[3], g[4], g[5:], *[None] * (1 + len(ctx.args)))


torch.library.register_autograd("strata::mea_fwd", _mea_backward, setup_context=_mea_setup)

# ---- decode (one layer of a serving step over a paged KV cache; inference only) ---------------


def _decode_structs(method: str, gate, params, sources, flags, floats):
    """The method's struct(s) for strata_decode_layer (None for the others), from the op's flat
    arguments (strata_torch.decode packs them)."""
    g = vr = depth = exo = mea = None
    if gate is not None:
        g = _gate_struct(gate)
    if method == "resformer":
        vr = _vr_struct(*params)
    elif method == "depth":
        depth = _capi.Depth()
        depth.num_sources = len(sources) // 2
        for c in range(depth.num_sources):
            depth.src_khat[c] = _capi.tensor(sources[2 * c])
            depth.src_vhat[c] = _capi.tensor(sources[2 * c + 1])
        if params:
            depth.gamma_q, depth.gamma_k = _capi.tensor(params[0]), _capi.tensor(params[1])
        depth.rope, (depth.rope_theta, depth.eps) = flags[0], floats
        depth._keep = [*sources, *params]
    elif method == "exoformer":
        exo = _capi.Exo()
        for p in range(4):
            S = exo.stream[p]
            S.anchor, S.gamma_anchor = _capi.tensor(params[p]), _capi.tensor(params[4 + p])
            S.lambda1, S.lambda2 = _capi.tensor(params[8 + p]), _capi.tensor(params[12 + p])
        exo.gamma_q, exo.gamma_k = _capi.tensor(params[16]), _capi.tensor(params[17])
        exo.s = _capi.tensor(params[18] if len(params) > 18 else None)
        exo.rope, (exo.rope_theta, exo.norm_eps, exo.anchor_eps) = flags[0], floats
        exo._keep = list(params)
    elif method == "mea":
        site_output = bool(flags[0])
        mea = _mea_struct({"a_k": params[0], "a_v": params[1],
                           **dict(zip(_mea_names(site_output), params[2:]))}, site_output,
                          flags[1], *floats)
    return g, vr, depth, exo, mea


def _decode_pass_shapes(method: str, q: Tensor, k: Tensor, flags: list[int]) -> list:
    """Shapes of the step buffers q_attn, k_attn, v_attn, g_attn the method's pass writes
    (None: not written)."""
    if method == "depth":
        return [q.shape, k.shape, k.shape, None]
    if method == "exoformer":
        return [q.shape, k.shape, k.shape, q.shape]
    if method == "mea" and flags[1] and q.shape[0] > 0:  # RoPE of q, at Output also of K_c
        return [q.shape, k.shape if flags[0] else None, None, None]
    return [None] * 4


@torch.library.custom_op("strata::decode_layer", mutates_args=("k_cache", "v_cache"))
def decode_layer(method: str, q: Tensor, k: Tensor, v: Optional[Tensor], k_cache: Tensor,
                 v_cache: Tensor, cu_seqlens_q: Tensor, seqlens_k: Tensor,
                 block_table: Optional[Tensor], slot_mapping: Tensor, positions: Optional[Tensor],
                 max_seqlen_q: int, softmax_scale: float, causal: bool, window_left: int,
                 num_splits: int, gate: Optional[Tensor], params: list[Tensor],
                 sources: list[Tensor], flags: list[int],
                 floats: list[float]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """out, lse, and Depth-Attention's k^, v^ of the new tokens (the sources of later layers;
    empty for the other methods). Appends the new tokens' rows to k_cache / v_cache."""
    device = _check_same_device(q=q, k=k, v=v, k_cache=k_cache, v_cache=v_cache,
                                cu_seqlens_q=cu_seqlens_q, seqlens_k=seqlens_k,
                                block_table=block_table, slot_mapping=slot_mapping,
                                positions=positions, gate=gate)
    if method not in _capi.DECODE_METHODS:
        raise StrataError(f"method = {method!r}: one of {', '.join(_capi.DECODE_METHODS)}")
    lib, stream, guard = _executor(device)
    d = _capi.Decode()
    d.method = _capi.DECODE_METHODS[method]
    out = torch.empty(q.shape, dtype=q.dtype, device=device)
    lse = torch.empty([q.shape[1], q.shape[0]] if q.dim() == 3 else [0], dtype=torch.float32,
                      device=device)
    buffers = [torch.empty(s, dtype=q.dtype, device=device) if s is not None else None
               for s in _decode_pass_shapes(method, q, k, flags)]
    named = {"q": q, "k": k, "v": v, "k_cache": k_cache, "v_cache": v_cache,
             "cu_seqlens_q": cu_seqlens_q, "seqlens_k": seqlens_k, "block_table": block_table,
             "slot_mapping": slot_mapping, "positions": positions, "out": out, "lse": lse,
             **dict(zip(("q_attn", "k_attn", "v_attn", "g_attn"), buffers))}
    for name, t in named.items():
        setattr(d, name, _capi.tensor(t))
    d.max_seqlen_q, d.softmax_scale = max_seqlen_q, softmax_scale
    d.causal, d.window_left, d.num_splits = int(causal), window_left, num_splits
    d.stream = stream
    d._keep = list(named.values())
    structs = _decode_structs(method, gate, params, sources, flags, floats)
    with guard:
        nbytes = lib.query("strata_decode_workspace_bytes", d, *structs)
        if nbytes:
            ws = torch.empty(nbytes, dtype=torch.uint8, device=device)
            d.workspace = _capi.tensor(ws)
            d._keep.append(ws)
        lib.call("strata_decode_layer", d, *structs)
    if method == "depth":
        return out, lse, buffers[1], buffers[2]
    return out, lse, q.new_empty(0), q.new_empty(0)


@decode_layer.register_fake
def _(method, q, k, v, k_cache, v_cache, cu_seqlens_q, seqlens_k, block_table, slot_mapping,
      positions, max_seqlen_q, softmax_scale, causal, window_left, num_splits, gate, params,
      sources, flags, floats):
    lse = q.new_empty([q.shape[1], q.shape[0]], dtype=torch.float32)
    if method == "depth":
        return torch.empty_like(q), lse, torch.empty_like(k), torch.empty_like(k)
    return torch.empty_like(q), lse, q.new_empty(0), q.new_empty(0)
