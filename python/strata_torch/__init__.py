"""strata_torch: Strata's fused attention kernels as PyTorch ops.

    import strata_torch as st
    out = st.flash_attn_func(q, k, v, causal=True)              # [batch, seqlen, heads, head_dim]
    out = st.value_residual(q, k, v, v_first, lam_self, lam_first)  # ResFormer layer l >= 1
    out = st.gated_attention(q, k, v, gate)                     # Gated Attention

FlashAttention's names and layouts: q, k, v are [batch, seqlen, heads, head_dim] (or packed
[total_tokens, heads, head_dim] with cu_seqlens in the *_varlen forms), bfloat16 or float16,
head_dim 64, 96 or 128, k/v may have fewer heads (GQA/MQA). Every function is differentiable
(torch.library ops with registered autograd and fake kernels, so torch.compile(fullgraph=True)
traces them). CPU tensors run Strata's kernels in its SIMT simulator (slow, exact: the same CUDA
C++ as on the GPU), CUDA tensors the nvcc build. Bad arguments raise StrataError (a ValueError)
naming the argument, and nothing is written.

Serving: the *_decode functions (strata_torch.decode) run one layer of a decode or
chunked-prefill step over a paged KV cache with vLLM's block tables and slot mapping.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from . import _capi, defaults, ops
from ._args import mask_args as _mask_args
from ._capi import StrataError
from .decode import (DecodeBatch, depth_attention_decode, exoformer_decode, flash_attn_decode,
                     gated_attention_decode, mea_decode, value_residual_decode)

__all__ = ["StrataError", "flash_attn_func", "flash_attn_varlen_func", "value_residual",
           "value_residual_varlen", "gated_attention", "gated_attention_varlen", "exoformer",
           "exoformer_varlen", "depth_attention", "depth_attention_varlen", "mea", "mea_varlen",
           "set_simulator", "executors", "DecodeBatch", "flash_attn_decode",
           "value_residual_decode", "gated_attention_decode", "exoformer_decode",
           "depth_attention_decode", "mea_decode"]


def _check_tensor(name: str, t, dtypes=(torch.bfloat16, torch.float16)) -> None:
    if not isinstance(t, Tensor):
        raise StrataError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if dtypes and t.dtype not in dtypes:
        raise StrataError(f"{name}: dtype {t.dtype}, expected one of "
                          f"{', '.join(str(d) for d in dtypes)}")


def _check_qkv(q, k, v) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        _check_tensor(name, t)
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise StrataError(f"{name}: dtype {t.dtype} differs from q's {q.dtype}")


def _check_cu(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k) -> None:
    for name, t in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        _check_tensor(name, t, (torch.int32,))
    for name, m in (("max_seqlen_q", max_seqlen_q), ("max_seqlen_k", max_seqlen_k)):
        if not isinstance(m, int) or isinstance(m, bool) or m < 0:
            raise StrataError(f"{name} = {m!r}: expected a non-negative int")


def _lse_out(lse: Tensor, q: Tensor) -> Tensor:
    """Strata's [heads, b * s] LSE as FlashAttention's fixed-length [b, heads, s] (a view)."""
    return lse.view(q.shape[2], q.shape[0], q.shape[1]).permute(1, 0, 2)


def flash_attn_func(q: Tensor, k: Tensor, v: Tensor, softmax_scale: Optional[float] = None,
                    causal: bool = False, window_size: tuple = (-1, -1),
                    deterministic: bool = True, return_lse: bool = False):
    """Attention over [batch, seqlen, heads, head_dim] (FlashAttention's flash_attn_func).

    Causal masks align bottom-right (a query sees keys up to its position + seqlen_k - seqlen_q);
    window_size = (left, -1) or (left, 0) limits each query to `left` keys before it. A query with
    no key gets out = 0 and lse = -inf. deterministic=False uses the fast backward (dQ summed by
    atomics: its last bits vary run to run). return_lse adds the fp32 log-sum-exp, [b, heads, s].
    """
    _check_qkv(q, k, v)
    scale, causal, left = _mask_args(q, softmax_scale, causal, window_size)
    out, lse = ops.flash_attn_fwd(q, k, v, None, None, 0, 0, scale, causal, left,
                                  bool(deterministic))
    return (out, _lse_out(lse, q)) if return_lse else out


def flash_attn_varlen_func(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Tensor,
                           cu_seqlens_k: Tensor, max_seqlen_q: int, max_seqlen_k: int,
                           softmax_scale: Optional[float] = None, causal: bool = False,
                           window_size: tuple = (-1, -1), deterministic: bool = True,
                           return_lse: bool = False):
    """Attention over packed sequences: q [total_q, heads, head_dim], k/v [total_k, h_k, d],
    cu_seqlens_* int32 [batch + 1] offsets (FlashAttention's flash_attn_varlen_func). On CUDA the
    offsets are copied to the host once to be validated. return_lse adds lse [heads, total_q]."""
    _check_qkv(q, k, v)
    _check_cu(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    scale, causal, left = _mask_args(q, softmax_scale, causal, window_size)
    out, lse = ops.flash_attn_fwd(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                  max_seqlen_k, scale, causal, left, bool(deterministic))
    return (out, lse) if return_lse else out


def _lambdas(v_first: Tensor, lambda_self, lambda_first) -> tuple[Tensor, Tensor]:
    """lambda as fp32 tensors: Python numbers become constants (no gradient)."""
    out = []
    for name, lam in (("lambda_self", lambda_self), ("lambda_first", lambda_first)):
        if isinstance(lam, (int, float)) and not isinstance(lam, bool):
            lam = torch.tensor(float(lam), dtype=torch.float32, device=v_first.device)
        _check_tensor(name, lam, (torch.float32,))
        out.append(lam)
    return out[0], out[1]


def value_residual(q: Tensor, k: Tensor, v: Optional[Tensor], v_first: Tensor,
                   lambda_self=0.5, lambda_first=0.5, kind: str = "resformer",
                   softmax_scale: Optional[float] = None, causal: bool = False,
                   window_size: tuple = (-1, -1), deterministic: bool = True,
                   return_lse: bool = False):
    """Attention of a value-residual layer l >= 1 (layer 0 is flash_attn_func with its V, which
    is v_first):

    - kind="resformer" (ResFormer): values V' = lambda_self * v + lambda_first * v_first, mixed
      inside the kernel as tiles load. lambda_* are fp32 tensors of one element or one per KV
      head (learnable: they get gradients), or Python numbers (constants).
    - kind="svformer" (SVFormer): every layer reads layer 0's values; v is ignored (may be None).

    v_first's gradient from every layer is summed by autograd, as in the papers' code.
    """
    if kind == "svformer":
        return flash_attn_func(q, k, v_first, softmax_scale, causal, window_size, deterministic,
                               return_lse)
    if kind != "resformer":
        raise StrataError(f"kind = {kind!r}: expected 'resformer' or 'svformer'")
    _check_qkv(q, k, v)
    _check_tensor("v_first", v_first, (q.dtype,))
    ls, lf = _lambdas(v_first, lambda_self, lambda_first)
    scale, causal, left = _mask_args(q, softmax_scale, causal, window_size)
    out, lse = ops.resformer_attn_fwd(q, k, v, v_first, ls, lf, None, None, 0, 0, scale, causal,
                                      left, bool(deterministic))
    return (out, _lse_out(lse, q)) if return_lse else out


def value_residual_varlen(q: Tensor, k: Tensor, v: Optional[Tensor], v_first: Tensor,
                          cu_seqlens_q: Tensor, cu_seqlens_k: Tensor, max_seqlen_q: int,
                          max_seqlen_k: int, lambda_self=0.5, lambda_first=0.5,
                          kind: str = "resformer", softmax_scale: Optional[float] = None,
                          causal: bool = False, window_size: tuple = (-1, -1),
                          deterministic: bool = True, return_lse: bool = False):
    """value_residual over packed sequences (see flash_attn_varlen_func)."""
    if kind == "svformer":
        return flash_attn_varlen_func(q, k, v_first, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                      max_seqlen_k, softmax_scale, causal, window_size,
                                      deterministic, return_lse)
    if kind != "resformer":
        raise StrataError(f"kind = {kind!r}: expected 'resformer' or 'svformer'")
    _check_qkv(q, k, v)
    _check_tensor("v_first", v_first, (q.dtype,))
    _check_cu(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    ls, lf = _lambdas(v_first, lambda_self, lambda_first)
    scale, causal, left = _mask_args(q, softmax_scale, causal, window_size)
    out, lse = ops.resformer_attn_fwd(q, k, v, v_first, ls, lf, cu_seqlens_q, cu_seqlens_k,
                                      max_seqlen_q, max_seqlen_k, scale, causal, left,
                                      bool(deterministic))
    return (out, lse) if return_lse else out


def gated_attention(q: Tensor, k: Tensor, v: Tensor, gate: Tensor,
                    softmax_scale: Optional[float] = None, causal: bool = False,
                    window_size: tuple = (-1, -1), deterministic: bool = True,
                    return_lse: bool = False):
    """Gated Attention: Attention(q, k, v) * sigmoid(gate), the gate fused into the kernel's
    epilogue. gate holds logits, elementwise (q's shape) or headwise (q's shape without
    head_dim), in q's dtype."""
    _check_qkv(q, k, v)
    _check_tensor("gate", gate, (q.dtype,))
    scale, causal, left = _mask_args(q, softmax_scale, causal, window_size)
    out, lse = ops.gated_attn_fwd(q, k, v, gate, None, None, 0, 0, scale, causal, left,
                                  bool(deterministic))
    return (out, _lse_out(lse, q)) if return_lse else out


def gated_attention_varlen(q: Tensor, k: Tensor, v: Tensor, gate: Tensor, cu_seqlens_q: Tensor,
                           cu_seqlens_k: Tensor, max_seqlen_q: int, max_seqlen_k: int,
                           softmax_scale: Optional[float] = None, causal: bool = False,
                           window_size: tuple = (-1, -1), deterministic: bool = True,
                           return_lse: bool = False):
    """gated_attention over packed sequences (see flash_attn_varlen_func)."""
    _check_qkv(q, k, v)
    _check_tensor("gate", gate, (q.dtype,))
    _check_cu(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    scale, causal, left = _mask_args(q, softmax_scale, causal, window_size)
    out, lse = ops.gated_attn_fwd(q, k, v, gate, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                  max_seqlen_k, scale, causal, left, bool(deterministic))
    return (out, lse) if return_lse else out


def _exo_lists(p, anchors, anchor_gains, lambda1, lambda2):
    names = ("p", "anchors", "anchor_gains", "lambda1", "lambda2")
    out = []
    for name, seq in zip(names, (p, anchors, anchor_gains, lambda1, lambda2)):
        if not isinstance(seq, (list, tuple)) or len(seq) != 4:
            raise StrataError(f"{name}: expected 4 tensors (streams q, k, v, g)")
        for i, t in enumerate(seq):
            what = f"{name}[{i}] ({'qkvg'[i]})"
            if name in ("p", "anchors"):
                _check_tensor(what, t, (seq[0].dtype,) if i else (torch.bfloat16, torch.float16))
            else:
                _check_tensor(what, t, (torch.float32,))
        out.append(list(seq))
    if out[1][0].dtype != out[0][0].dtype:
        raise StrataError(f"anchors[0] (q): dtype {out[1][0].dtype} differs from p's "
                          f"{out[0][0].dtype}")
    return out


def _exo_call(p, anchors, anchor_gains, lambda1, lambda2, gamma_q, gamma_k, s, cu, max_seqlen,
              rope, rope_theta, norm_eps, anchor_eps, softmax_scale, causal, window_size,
              deterministic):
    lists = _exo_lists(p, anchors, anchor_gains, lambda1, lambda2)
    for name, t in (("gamma_q", gamma_q), ("gamma_k", gamma_k)):
        _check_tensor(name, t, (torch.float32,))
    if s is not None:
        _check_tensor("s", s, (torch.float32,))
    scale, causal, left = _mask_args(lists[0][0], softmax_scale, causal, window_size)
    for name, v in (("rope_theta", rope_theta), ("norm_eps", norm_eps),
                    ("anchor_eps", anchor_eps)):
        if not math.isfinite(float(v)) or float(v) <= 0:
            raise StrataError(f"{name} = {v}: must be finite and positive")
    return ops.exoformer_fwd(*lists, gamma_q, gamma_k, s, cu, max_seqlen, scale, causal, left,
                             bool(deterministic), bool(rope), float(rope_theta), float(norm_eps),
                             float(anchor_eps))


def exoformer(p, anchors, anchor_gains, lambda1, lambda2, gamma_q: Tensor, gamma_k: Tensor,
              s: Optional[Tensor] = None, rope: bool = defaults.ROPE,
              rope_theta: float = defaults.EXOFORMER_ROPE_THETA,
              norm_eps: float = defaults.RMS_NORM_EPS, anchor_eps: float = defaults.RMS_NORM_EPS,
              softmax_scale: Optional[float] = None, causal: bool = False,
              window_size: tuple = (-1, -1), deterministic: bool = True,
              return_lse: bool = False):
    """One ExoFormer layer (Su, "Attention Projection Mixing with Exogenous Anchors") with
    Gated Attention's elementwise output gate, fused: the token-local mix, QK-norm and RoPE in
    one pass, then gated flash attention.

    p = (q, k, v, g): the layer's projections, [batch, seqlen, heads, d] (k, v with the KV heads).
    anchors: the stack's raw anchor projections anchor_P = E W_anc, shaped like p (shared by all
    layers: autograd sums their gradient). anchor_gains: 4 fp32 [d], the anchors' RMSNorm gains.
    lambda1, lambda2: 4 fp32 each, [heads, d], [heads] or one value (one granularity per layer).
    gamma_q, gamma_k: fp32 [d] QK-norm gains. s: fp32 [batch, seqlen, 8] per-token scales
    (q1 q2 k1 k2 v1 v2 g1 g2, the dynamic variant), or None (static).

        P~  = lambda1_P s_P1 RMSNorm(anchor_P) + lambda2_P s_P2 P
        out = Attention(RoPE(RMSNorm(q~)), RoPE(RMSNorm(k~)), v~) * sigmoid(g~)
    """
    out, lse, *_ = _exo_call(p, anchors, anchor_gains, lambda1, lambda2, gamma_q, gamma_k, s,
                             None, 0, rope, rope_theta, norm_eps, anchor_eps, softmax_scale,
                             causal, window_size, deterministic)
    return (out, _lse_out(lse, p[0])) if return_lse else out


def exoformer_varlen(p, anchors, anchor_gains, lambda1, lambda2, gamma_q: Tensor,
                     gamma_k: Tensor, cu_seqlens: Tensor, max_seqlen: int,
                     s: Optional[Tensor] = None, rope: bool = defaults.ROPE,
                     rope_theta: float = defaults.EXOFORMER_ROPE_THETA,
                     norm_eps: float = defaults.RMS_NORM_EPS,
                     anchor_eps: float = defaults.RMS_NORM_EPS,
                     softmax_scale: Optional[float] = None, causal: bool = False,
                     window_size: tuple = (-1, -1), deterministic: bool = True,
                     return_lse: bool = False):
    """exoformer over packed sequences: streams [total_tokens, heads, d], s [total_tokens, 8],
    one cu_seqlens for queries and keys (self-attention: the anchors are read at the same token;
    RoPE positions restart at every sequence)."""
    _check_cu(cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)
    out, lse, *_ = _exo_call(p, anchors, anchor_gains, lambda1, lambda2, gamma_q, gamma_k, s,
                             cu_seqlens, max_seqlen, rope, rope_theta, norm_eps, anchor_eps,
                             softmax_scale, causal, window_size, deterministic)
    return (out, lse) if return_lse else out


def _depth_call(q, k, v, sources, gamma_q, gamma_k, cu, max_seqlen, rope, rope_theta, eps,
                softmax_scale, causal, window_size, deterministic):
    _check_qkv(q, k, v)
    src = list(sources)
    for c, pair in enumerate(src):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise StrataError(f"sources[{c}]: expected a (khat, vhat) pair, an earlier layer's "
                              "second return value")
        for name, t in zip(("khat", "vhat"), pair):
            _check_tensor(f"sources[{c}].{name}", t, (q.dtype,))
    if (gamma_q is None) != (gamma_k is None):
        raise StrataError("gamma_q, gamma_k: give both (QK-norm) or neither")
    for name, t in (("gamma_q", gamma_q), ("gamma_k", gamma_k)):
        if t is not None:
            _check_tensor(name, t, (torch.float32,))
    scale, causal, left = _mask_args(q, softmax_scale, causal, window_size)
    out, lse, _, khat, vhat = ops.depth_attn_fwd(
        q, k, v, [p[0] for p in src], [p[1] for p in src], gamma_q, gamma_k, cu, max_seqlen,
        scale, causal, left, bool(deterministic), bool(rope), float(rope_theta), float(eps))
    return out, lse, (khat, vhat)


def depth_attention(q: Tensor, k: Tensor, v: Tensor, sources=(), gamma_q: Optional[Tensor] = None,
                    gamma_k: Optional[Tensor] = None, rope: bool = defaults.ROPE,
                    rope_theta: float = defaults.DEPTH_ATTENTION_ROPE_THETA,
                    eps: float = defaults.RMS_NORM_EPS,
                    softmax_scale: Optional[float] = None, causal: bool = False,
                    window_size: tuple = (-1, -1), deterministic: bool = True,
                    return_lse: bool = False):
    """One Depth-Attention layer (attention over earlier layers' keys at the same token, then
    over the sequence), fused: returns (out, source), where source = (k^, v^) is what later
    layers pass in `sources`.

    q, k, v: the layer's raw projections, contiguous [batch, seqlen, heads, d] (k, v with the KV
    heads). sources: (k^_j, v^_j) of the layers j < l this layer reads (at most 8, ascending, as
    the stride / recent-window rule of the paper picks them). gamma_q, gamma_k: fp32 [d]
    QK-norm gains (None: no QK-norm).

        q_rot = RoPE(RMSNorm(q)),  k^ = RMSNorm(RoPE(k))
        alpha = softmax over [k^_j for j in sources] + [k^] of the KV group's mean query
        v^    = sum alpha_c [v^_j ..., v]_c
        out   = Attention(q_rot, k^, v^)

    Gradients reach the sources through autograd (summed over the layers that read them)."""
    out, lse, src = _depth_call(q, k, v, sources, gamma_q, gamma_k, None, 0, rope, rope_theta,
                                eps, softmax_scale, causal, window_size, deterministic)
    return (out, src, _lse_out(lse, q)) if return_lse else (out, src)


def depth_attention_varlen(q: Tensor, k: Tensor, v: Tensor, cu_seqlens: Tensor, max_seqlen: int,
                           sources=(), gamma_q: Optional[Tensor] = None,
                           gamma_k: Optional[Tensor] = None, rope: bool = defaults.ROPE,
                           rope_theta: float = defaults.DEPTH_ATTENTION_ROPE_THETA,
                           eps: float = defaults.RMS_NORM_EPS,
                           softmax_scale: Optional[float] = None, causal: bool = False,
                           window_size: tuple = (-1, -1), deterministic: bool = True,
                           return_lse: bool = False):
    """depth_attention over packed sequences [total_tokens, heads, d] (self-attention: one
    cu_seqlens; RoPE positions restart at every sequence)."""
    _check_cu(cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)
    out, lse, src = _depth_call(q, k, v, sources, gamma_q, gamma_k, cu_seqlens, max_seqlen, rope,
                                rope_theta, eps, softmax_scale, causal, window_size,
                                deterministic)
    return (out, src, lse) if return_lse else (out, src)


def _mea_call(q, kc, vc, a_k, a_v, gn, site, cu, max_seqlen, rope, rope_theta, gn_eps,
              softmax_scale, causal, window_size, deterministic):
    _check_qkv(q, kc, vc)
    for name, t in (("a_k", a_k), ("a_v", a_v)):
        _check_tensor(name, t, (torch.float32,))
    if site not in ("kv", "output"):
        raise StrataError(f"site = {site!r}: expected 'kv' (GroupNorm on K', V') or 'output'")
    need = ("gamma_k", "beta_k", "gamma_v", "beta_v") if site == "kv" else ("gamma_o", "beta_o")
    for name, t in gn.items():
        if name in need:
            _check_tensor(name, t, (torch.float32,))
        elif t is not None:
            raise StrataError(f"{name}: not used at site {site!r} (give None)")
    scale, causal, left = _mask_args(q, softmax_scale, causal, window_size)
    return ops.mea_fwd(q, kc, vc, a_k, a_v, [gn[n] for n in need], cu, max_seqlen, scale,
                       causal, left, bool(deterministic), site == "output", bool(rope),
                       float(rope_theta), float(gn_eps))


def mea(q: Tensor, kc: Tensor, vc: Tensor, a_k: Tensor, a_v: Tensor,
        gamma_k: Optional[Tensor] = None, beta_k: Optional[Tensor] = None,
        gamma_v: Optional[Tensor] = None, beta_v: Optional[Tensor] = None,
        gamma_o: Optional[Tensor] = None, beta_o: Optional[Tensor] = None, site: str = "kv",
        rope: bool = defaults.ROPE, rope_theta: float = defaults.MEA_ROPE_THETA,
        gn_eps: float = defaults.GROUP_NORM_EPS,
        softmax_scale: Optional[float] = None, causal: bool = False,
        window_size: tuple = (-1, -1), deterministic: bool = True, return_lse: bool = False):
    """One MEA layer (Multi-head Explicit Attention: head-level linear composition and head
    GroupNorm), fused.

    q: [batch, seqlen, heads, d]; kc, vc: the H_c component heads [batch, seqlen, H_c, d] (all
    three contiguous: the pass reads dense rows); a_k, a_v: fp32 [H_c, H_kv] compose the H_kv heads the attention sees
    (H_kv > H_c: virtual heads). site="kv": GroupNorm (per token and head, over d) on the
    composed K', V' with fp32 [H_kv, d] affines gamma_k, beta_k, gamma_v, beta_v;
    site="output": on each head's attention output with gamma_o, beta_o [heads, d].

        K' = sum_c A^K[c, h] K_c[c],  V' likewise;  (kv) K', V' = GN(K'), GN(V')
        out = Attention(RoPE(q), RoPE(K'), V');     (output) out = GN_o(out)
    """
    gn = {"gamma_k": gamma_k, "beta_k": beta_k, "gamma_v": gamma_v, "beta_v": beta_v,
          "gamma_o": gamma_o, "beta_o": beta_o}
    out, lse, *_ = _mea_call(q, kc, vc, a_k, a_v, gn, site, None, 0, rope, rope_theta, gn_eps,
                             softmax_scale, causal, window_size, deterministic)
    return (out, _lse_out(lse, q)) if return_lse else out


def mea_varlen(q: Tensor, kc: Tensor, vc: Tensor, a_k: Tensor, a_v: Tensor, cu_seqlens: Tensor,
               max_seqlen: int, gamma_k: Optional[Tensor] = None,
               beta_k: Optional[Tensor] = None, gamma_v: Optional[Tensor] = None,
               beta_v: Optional[Tensor] = None, gamma_o: Optional[Tensor] = None,
               beta_o: Optional[Tensor] = None, site: str = "kv", rope: bool = defaults.ROPE,
               rope_theta: float = defaults.MEA_ROPE_THETA, gn_eps: float = defaults.GROUP_NORM_EPS,
               softmax_scale: Optional[float] = None, causal: bool = False,
               window_size: tuple = (-1, -1), deterministic: bool = True,
               return_lse: bool = False):
    """mea over packed sequences [total_tokens, heads, d] (one cu_seqlens; RoPE positions
    restart at every sequence)."""
    _check_cu(cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)
    gn = {"gamma_k": gamma_k, "beta_k": beta_k, "gamma_v": gamma_v, "beta_v": beta_v,
          "gamma_o": gamma_o, "beta_o": beta_o}
    out, lse, *_ = _mea_call(q, kc, vc, a_k, a_v, gn, site, cu_seqlens, max_seqlen, rope,
                             rope_theta, gn_eps, softmax_scale, causal, window_size,
                             deterministic)
    return (out, lse) if return_lse else out


def set_simulator(workers: Optional[int] = None, schedule: Optional[str] = None) -> None:
    """Simulator settings for CPU tensors: OS worker threads over which a launch's blocks are
    spread, and the CUDA-thread schedule ("forward", "reverse", "random:SEED"; tests run several
    to expose missing barriers). Defaults come from STRATA_SIM_WORKERS / STRATA_SIM_SCHEDULE."""
    lib = _capi.library("sim")
    rc = lib.lib.strata_capi_sim_configure(int(workers or 0),
                                           schedule.encode() if schedule else None)
    if rc != 0:
        raise StrataError(lib.lib.strata_capi_last_error().decode())


def executors() -> dict:
    """Which builds this installation has: {'sim': path or None, 'cuda': path or None}."""
    out = {}
    for kind in ("sim", "cuda"):
        out[kind] = str(_capi.library(kind).path) if _capi.available(kind) else None
    return out
