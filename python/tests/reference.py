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


def rmsnorm(x: Tensor, gamma: Tensor, eps: float) -> Tensor:
    """RMSNorm over the last dimension: gamma * x / sqrt(mean(x^2) + eps)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * gamma.to(x.dtype)


def rope(x: Tensor, positions: Tensor, theta: float) -> Tensor:
    """Rotate-half RoPE (Llama / Qwen3 / the official ExoFormer): element i < d/2 pairs with
    i + d/2, rotated by pos * theta^(-2i/d); the angle table in float32 as the official code's."""
    d = x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    ang = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # [tokens, d/2]
    shape = [1] * (x.dim() - 3) + [positions.numel(), 1, d // 2]
    cos, sin = (f(ang).to(x.dtype).reshape(shape) for f in (torch.cos, torch.sin))
    a, b = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


def _param(t: Tensor, like: Tensor) -> Tensor:
    """A lambda of granularity [H, d], [H] or [] (or already like's full shape) broadcast to
    `like`, in its dtype."""
    t = t.to(like.dtype)
    return t[:, None] if t.dim() == 1 and like.dim() > 1 and t.shape[0] != like.shape[-1] else t


def exoformer_mix(p, anchor, gamma_anchor, lambda1, lambda2, gamma_q, gamma_k, s, positions,
                  rope_on=True, rope_theta=5e5, norm_eps=1e-6, anchor_eps=1e-6):
    """ExoFormer's token-local part (Su, official code; SPEC §3) for streams p = (q, k, v, g),
    [batch, seqlen, heads, d]: returns the attention's operands and the gate logits

        A^_P = RMSNorm_{gamma_anchor,P}(anchor_P)
        P~   = (lambda1_P * s_P1) * A^_P + (lambda2_P * s_P2) * P      (s = 1: static)
        q~, k~ = RoPE(RMSNorm_{gamma_q}(q~)), RoPE(RMSNorm_{gamma_k}(k~))

    s: [batch, seqlen, 8] (q1 q2 k1 k2 v1 v2 g1 g2), or a list of 8 tensors broadcastable to
    the streams (the tests pass expanded leaves to get per-element terms), or None."""
    mixed = []
    for i in range(4):
        x = p[i]
        a_hat = rmsnorm(anchor[i], gamma_anchor[i], anchor_eps)
        if s is None:
            s1 = s2 = 1.0
        elif isinstance(s, (list, tuple)):
            s1, s2 = s[2 * i].to(x.dtype), s[2 * i + 1].to(x.dtype)
        else:
            s1, s2 = (s[..., j, None, None].to(x.dtype) for j in (2 * i, 2 * i + 1))
        mixed.append(_param(lambda1[i], x) * s1 * a_hat + _param(lambda2[i], x) * s2 * x)
    q, k, v, g = mixed
    q, k = rmsnorm(q, gamma_q, norm_eps), rmsnorm(k, gamma_k, norm_eps)
    if rope_on:
        q, k = rope(q, positions, rope_theta), rope(k, positions, rope_theta)
    return [q, k, v, g]


def exoformer_layer(p, anchor, gamma_anchor, lambda1, lambda2, gamma_q, gamma_k, s, positions,
                    rope_on=True, rope_theta=5e5, norm_eps=1e-6, anchor_eps=1e-6, scale=None,
                    causal=True):
    """One ExoFormer layer with Gated Attention's elementwise gate:
    out = Attention(q~, k~, v~) * sigmoid(g~) over exoformer_mix's streams."""
    q, k, v, g = exoformer_mix(p, anchor, gamma_anchor, lambda1, lambda2, gamma_q, gamma_k, s,
                               positions, rope_on, rope_theta, norm_eps, anchor_eps)
    return gated(attention(q, k, v, scale, causal), g)


def depth_layer(q, k, v, sources, gamma_q, gamma_k, positions, rope_on=True, rope_theta=1e4,
                eps=1e-6, scale=None, causal=True, attend=None):
    """Depth-Attention, one layer (SPEC §1, the official code's SDPA path; strata/reference/
    depth.hpp) over [batch, seqlen, heads, d]:

        q_rot = RoPE(RMSNorm_{gamma_q}(q)),  k^ = RMSNorm_{gamma_k}(RoPE(k))   (norms if given)
        q_bar = mean of the G query heads of each KV group (of q_rot)
        alpha = softmax_c(q_bar . kappa_c / sqrt(d)) over kappa = [k^_j for sources] + [k^]
        v^    = sum_c alpha_c nu_c,  nu = [v^_j for sources] + [v]
        out   = Attention(q_rot, k^, v^)

    Returns (out, (k^, v^)). `attend` replaces the sequence attention (varlen)."""
    d = q.shape[-1]
    if gamma_q is not None:
        q = rmsnorm(q, gamma_q, eps)
    if rope_on:
        q, k = rope(q, positions, rope_theta), rope(k, positions, rope_theta)
    khat = rmsnorm(k, gamma_k, eps) if gamma_k is not None else k
    h, hk = q.shape[-2], k.shape[-2]
    q_bar = q.unflatten(-2, (hk, h // hk)).mean(dim=-2)  # [.., hk, d]
    kappa = torch.stack([s[0] for s in sources] + [khat], dim=-2)  # [.., hk, C, d]
    nu = torch.stack([s[1] for s in sources] + [v], dim=-2)
    logits = (kappa * q_bar[..., None, :]).sum(-1) / math.sqrt(d)
    alpha = torch.softmax(logits.float() if logits.dtype in (torch.bfloat16, torch.float16)
                          else logits, dim=-1).to(q.dtype)
    vhat = (alpha[..., None] * nu).sum(dim=-2)
    attend = attend or (lambda a, b, c: attention(a, b, c, scale, causal))
    return attend(q, khat, vhat), (khat, vhat)


def group_norm(x: Tensor, gamma: Tensor, beta: Tensor, eps: float) -> Tensor:
    """Head GroupNorm: per token and head over d (biased variance, as nn.GroupNorm with one
    group per head), affine [heads, d]."""
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) * torch.rsqrt(var + eps) * gamma.to(x.dtype) + beta.to(x.dtype)


def mea_layer(q, kc, vc, a_k, a_v, gn, site, positions, rope_on=True, rope_theta=1e4,
              gn_eps=1e-5, scale=None, causal=True, attend=None):
    """MEA, one layer (SPEC §4, the official code; strata/reference/mea.hpp): K' = sum_c
    A^K[c, h] K_c[c], V' likewise; site "kv": GroupNorm on K', V' (gn = gamma_k, beta_k,
    gamma_v, beta_v); RoPE on q and K'; O = Attention(q, K', V'); site "output": GN_o(O)
    (gn = gamma_o, beta_o)."""
    kp = torch.einsum("...cd,ch->...hd", kc, a_k.to(kc.dtype))
    vp = torch.einsum("...cd,ch->...hd", vc, a_v.to(vc.dtype))
    if site == "kv":
        kp, vp = group_norm(kp, gn[0], gn[1], gn_eps), group_norm(vp, gn[2], gn[3], gn_eps)
    if rope_on:
        q, kp = rope(q, positions, rope_theta), rope(kp, positions, rope_theta)
    attend = attend or (lambda a, b, c: attention(a, b, c, scale, causal))
    o = attend(q, kp, vp)
    return group_norm(o, gn[0], gn[1], gn_eps) if site == "output" else o
