"""Plain PyTorch transcriptions of the papers' official code, differentiated by torch.autograd.

Each function is the official model code's attention step written with torch ops only (no
Strata), in whatever dtype its inputs have: float64 for the reference, the kernel's dtype for the
"naive" implementation of FlashAttention's error rule

    max|strata - ref64| <= 2 * max|naive - ref64| + atol.

Layouts are FlashAttention's [batch, seqlen, heads, head_dim]; masks align bottom-right (a query
sees keys up to i + seqlen_k - seqlen_q) and a query with no key gets out = 0, as Strata and
FlashAttention define it.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor


def mask(sq: int, sk: int, causal: bool, window_left: int, device=None) -> Tensor:
    """[sq, sk] bool: query i attends to key j (strata/attention/mask.hpp, FlashAttention's)."""
    i = torch.arange(sq, device=device)[:, None]
    j = torch.arange(sk, device=device)[None, :]
    offset = sk - sq
    ok = torch.ones(sq, sk, dtype=torch.bool, device=device)
    if causal:
        ok &= j <= i + offset
    if window_left >= 0:
        ok &= j >= i + offset - window_left
    return ok


def attention(q: Tensor, k: Tensor, v: Tensor, scale: Optional[float] = None,
              causal: bool = False, window_left: int = -1) -> Tensor:
    """softmax(scale q k^T, masked) v with GQA (k/v heads repeated, as the official code's
    repeat_kv does). Fully masked rows give 0."""
    b, sq, h, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    k = k.repeat_interleave(h // hk, dim=2)
    v = v.repeat_interleave(h // hk, dim=2)
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    ok = mask(sq, sk, causal, window_left, q.device)
    s = s.masked_fill(~ok, float("-inf"))
    p = torch.softmax(s.float() if s.dtype in (torch.bfloat16, torch.float16) else s, dim=-1)
    p = torch.nan_to_num(p, nan=0.0).to(q.dtype)  # a row with no key: all -inf -> 0
    return torch.einsum("bhqk,bkhd->bqhd", p, v)


def attention_varlen(q, k, v, cu_q, cu_k, scale=None, causal=False, window_left=-1) -> Tensor:
    """attention() per packed sequence: q [total_q, h, d], k/v [total_k, h_k, d]."""
    outs = []
    for i in range(cu_q.numel() - 1):
        a, b = int(cu_q[i]), int(cu_q[i + 1])
        c, e = int(cu_k[i]), int(cu_k[i + 1])
        outs.append(attention(q[None, a:b], k[None, c:e], v[None, c:e], scale, causal,
                              window_left)[0])
    return torch.cat(outs, dim=0)


def resformer_values(v: Tensor, v_first: Tensor, lambda_self: Tensor,
                     lambda_first: Tensor) -> Tensor:
    """ResFormer (Zhou et al., official code: `v = lambda1 * v + lambda2 * v1`): the layer's
    values mixed with layer 0's. lambda: one value or one per KV head (broadcast over d)."""
    shape = [1] * (v.dim() - 2) + [-1, 1] if lambda_self.numel() > 1 else []
    ls = lambda_self.reshape(shape).to(v.dtype) if shape else lambda_self.to(v.dtype)
    lf = lambda_first.reshape(shape).to(v.dtype) if shape else lambda_first.to(v.dtype)
    return ls * v + lf * v_first


def gated(out: Tensor, gate: Tensor) -> Tensor:
    """Gated Attention (Qiu et al., official code: `attn_output * torch.sigmoid(gate_score)`);
    a headwise gate has no head_dim and broadcasts over it."""
    g = gate if gate.dim() == out.dim() else gate[..., None]
    return out * torch.sigmoid(g)
