"""Decoding with a paged KV cache: one layer of a serving step per call (inference only).

vLLM's conventions: each layer owns a K and a V cache [num_pages, page_size, kv_heads, head_dim]
(FlashAttention's paged layout; any strides with a contiguous head_dim, so a FlashInfer HND cache
[num_pages, kv_heads, page_size, head_dim] is passed as its .transpose(1, 2) view), and all
layers share the step's DecodeBatch: the block table, each sequence's cache length counting
this step's new tokens, and the cache slot of each new token. New tokens are packed,
[total_q, heads, head_dim], sequence after sequence (a decode step has one per sequence, a
chunked-prefill step several). A call appends the layer's new K and V rows — what the paper
caches — then attends each new query over its sequence's cache, causally within the chunk:

    batch = st.DecodeBatch.build(block_table, cache_lens, new_lens, page_size)
    out = st.flash_attn_decode(q, k, v, k_cache, v_cache, batch)

CPU tensors run in the simulator (every length, page and slot is checked against the cache);
CUDA tensors on the GPU, where the indexing is trusted as FlashAttention and vLLM trust it.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from . import defaults, ops
from ._args import mask_args
from ._capi import StrataError

__all__ = ["DecodeBatch", "flash_attn_decode", "value_residual_decode", "gated_attention_decode",
           "exoformer_decode", "depth_attention_decode", "mea_decode"]


class DecodeBatch(NamedTuple):
    """The indexing of one step, shared by every layer (vLLM's attention metadata)."""
    cu_seqlens_q: Tensor  #: int32 [b + 1]: the new tokens of each sequence
    max_seqlen_q: int  #: the longest chunk of new tokens
    seqlens_k: Tensor  #: int32 [b]: tokens in each sequence's cache, this step's included
    slot_mapping: Tensor  #: int64 [total_q]: page * page_size + offset of each new token
    block_table: Optional[Tensor] = None  #: int32 [b, max_pages]; None: sequence s in slot s
    positions: Optional[Tensor] = None  #: int32 [total_q]: each new token's position (RoPE)

    @staticmethod
    def build(block_table: Optional[Tensor], cache_lens: Tensor, new_lens: Tensor,
              page_size: int) -> "DecodeBatch":
        """The step that appends new_lens[s] tokens to sequence s, whose cache holds
        cache_lens[s] (int tensors [b], on the cache's device). block_table: int32
        [b, max_pages] physical pages, or None for a contiguous cache [b, page_size, ...]
        (page_size is then the capacity per sequence)."""
        device = cache_lens.device
        cache_lens = cache_lens.to(torch.int64)
        new_lens = new_lens.to(device=device, dtype=torch.int64)
        b = cache_lens.numel()
        cu = torch.zeros(b + 1, dtype=torch.int64, device=device)
        cu[1:] = torch.cumsum(new_lens, 0)
        total = int(cu[-1])
        seq = torch.repeat_interleave(torch.arange(b, device=device), new_lens)
        pos = cache_lens[seq] + torch.arange(total, device=device) - cu[seq]
        if block_table is None:
            slots = seq * page_size + pos
        else:
            pages = block_table.to(torch.int64)[seq, pos // page_size]
            slots = pages * page_size + pos % page_size
        return DecodeBatch(cu.to(torch.int32), int(new_lens.max()) if b else 0,
                           (cache_lens + new_lens).to(torch.int32), slots,
                           block_table, pos.to(torch.int32))


def _check(name: str, t, dtypes=None) -> Tensor:
    if not isinstance(t, Tensor):
        raise StrataError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if dtypes and t.dtype not in dtypes:
        raise StrataError(f"{name}: dtype is {t.dtype}, expected "
                          + " or ".join(str(d) for d in dtypes))
    return t.contiguous()  # new-token rows and parameters: dense (a decode step is small)


def _run(method: str, q, k, v, k_cache, v_cache, batch: DecodeBatch, softmax_scale, causal,
         window_size, num_splits, return_lse, gate=None, params=(), sources=(), flags=(),
         floats=(), with_sources=False):
    if not isinstance(batch, DecodeBatch):
        raise StrataError(f"batch: expected a strata_torch.DecodeBatch, got {type(batch).__name__}")
    act = (torch.bfloat16, torch.float16)
    q = _check("q", q, act)
    k = _check("k", k, (q.dtype,))
    v = _check("v", v, (q.dtype,)) if v is not None else None
    gate = _check("gate", gate, (q.dtype,)) if gate is not None else None
    for name, t in (("k_cache", k_cache), ("v_cache", v_cache)):
        if not isinstance(t, Tensor):
            raise StrataError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    scale, causal, left = mask_args(q, softmax_scale, causal, window_size)
    out, lse, khat, vhat = ops.decode_layer(
        method, q, k, v, k_cache, v_cache, batch.cu_seqlens_q, batch.seqlens_k,
        batch.block_table, batch.slot_mapping, batch.positions, int(batch.max_seqlen_q), scale,
        bool(causal), left, int(num_splits), gate, list(params), list(sources),
        [int(f) for f in flags], [float(f) for f in floats])
    res = (out, (khat, vhat)) if with_sources else (out,)
    res = res + (lse,) if return_lse else res
    return res if len(res) > 1 else res[0]


def flash_attn_decode(q: Tensor, k: Tensor, v: Optional[Tensor], k_cache: Tensor,
                      v_cache: Tensor, batch: DecodeBatch, softmax_scale: Optional[float] = None,
                      causal: bool = True, window_size: tuple = (-1, -1), num_splits: int = 1,
                      return_lse: bool = False):
    """Attention of the new tokens over the paged cache, after appending their k, v rows.

    q [total_q, heads, d]; k, v [total_q, kv_heads, d]. v=None: an SVFormer layer l >= 1, which
    reads layer 0's values: v_cache is layer 0's (read, not written) and only k is cached.
    num_splits > 1 splits each sequence's keys (flash-decoding) and merges the partials.
    Returns out [total_q, heads, d] (and lse fp32 [heads, total_q] with return_lse)."""
    return _run("vanilla", q, k, v, k_cache, v_cache, batch, softmax_scale, causal, window_size,
                num_splits, return_lse)


def value_residual_decode(q: Tensor, k: Tensor, v: Tensor, v_first: Tensor, lambda_self: Tensor,
                          lambda_first: Tensor, k_cache: Tensor, v_cache: Tensor,
                          batch: DecodeBatch, softmax_scale: Optional[float] = None,
                          causal: bool = True, window_size: tuple = (-1, -1),
                          num_splits: int = 1, return_lse: bool = False):
    """ResFormer's layer l >= 1: caches V' = lambda_self v + lambda_first v_first (v_first: layer
    0's v of the same new tokens; lambdas fp32, one value or one per KV head) and attends over
    it. Layer 0 is flash_attn_decode."""
    lam = (_check("lambda_self", lambda_self, (torch.float32,)),
           _check("lambda_first", lambda_first, (torch.float32,)))
    v_first = _check("v_first", v_first, (torch.bfloat16, torch.float16))
    return _run("resformer", q, k, v, k_cache, v_cache, batch, softmax_scale, causal,
                window_size, num_splits, return_lse, params=(v_first, *lam))


def gated_attention_decode(q: Tensor, k: Tensor, v: Tensor, gate: Tensor, k_cache: Tensor,
                           v_cache: Tensor, batch: DecodeBatch,
                           softmax_scale: Optional[float] = None, causal: bool = True,
                           window_size: tuple = (-1, -1), num_splits: int = 1,
                           return_lse: bool = False):
    """Gated Attention: out = Attention(q, cache) * sigmoid(gate), gate [total_q, heads, d]
    (elementwise) or [total_q, heads] (headwise), applied once to the merged output."""
    return _run("gated", q, k, v, k_cache, v_cache, batch, softmax_scale, causal, window_size,
                num_splits, return_lse, gate=gate)


def exoformer_decode(p, anchors, anchor_gains, lambda1, lambda2, gamma_q: Tensor, gamma_k: Tensor,
                     k_cache: Tensor, v_cache: Tensor, batch: DecodeBatch,
                     s: Optional[Tensor] = None, rope: bool = defaults.ROPE,
                     rope_theta: float = defaults.EXOFORMER_ROPE_THETA,
                     norm_eps: float = defaults.RMS_NORM_EPS,
                     anchor_eps: float = defaults.RMS_NORM_EPS,
                     softmax_scale: Optional[float] = None, causal: bool = True,
                     window_size: tuple = (-1, -1), num_splits: int = 1,
                     return_lse: bool = False):
    """One ExoFormer layer (strata_torch.exoformer's arguments, for the new tokens: p and
    anchors [total_q, heads, d], s [total_q, 8]): the mix pass, then k~ and v~ cached and the
    gated attention over the cache. RoPE rotates each token by batch.positions."""
    params = []
    for name, seq in (("p", p), ("anchors", anchors), ("anchor_gains", anchor_gains),
                      ("lambda1", lambda1), ("lambda2", lambda2)):
        if not isinstance(seq, (list, tuple)) or len(seq) != 4:
            raise StrataError(f"{name}: expected 4 tensors (streams q, k, v, g)")
    for name, seq in (("anchors", anchors), ("anchor_gains", anchor_gains),
                      ("lambda1", lambda1), ("lambda2", lambda2)):
        dt = (torch.float32,) if name != "anchors" else (torch.bfloat16, torch.float16)
        params += [_check(f"{name}[{i}] ({'qkvg'[i]})", t, dt) for i, t in enumerate(seq)]
    params += [_check("gamma_q", gamma_q, (torch.float32,)),
               _check("gamma_k", gamma_k, (torch.float32,))]
    if s is not None:
        params.append(_check("s", s, (torch.float32,)))
    return _run("exoformer", p[0], p[1], p[2], k_cache, v_cache, batch, softmax_scale, causal,
                window_size, num_splits, return_lse, gate=p[3], params=params, flags=(rope,),
                floats=(rope_theta, norm_eps, anchor_eps))


def depth_attention_decode(q: Tensor, k: Tensor, v: Tensor, k_cache: Tensor, v_cache: Tensor,
                           batch: DecodeBatch, sources=(), gamma_q: Optional[Tensor] = None,
                           gamma_k: Optional[Tensor] = None, rope: bool = defaults.ROPE,
                           rope_theta: float = defaults.DEPTH_ATTENTION_ROPE_THETA,
                           eps: float = defaults.RMS_NORM_EPS,
                           softmax_scale: Optional[float] = None, causal: bool = True,
                           window_size: tuple = (-1, -1), num_splits: int = 1,
                           return_lse: bool = False):
    """One Depth-Attention layer for the new tokens (strata_torch.depth_attention's arguments):
    the depth pass over its sources' k^_j, v^_j of the same tokens, then k^ and v^ cached and the
    attention over the cache. Returns (out, (k^, v^)): the pair later layers pass in `sources`
    this step."""
    src = []
    for c, pair in enumerate(sources):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise StrataError(f"sources[{c}]: expected a (khat, vhat) pair, an earlier layer's "
                              "second return value")
        src += [_check(f"sources[{c}].khat", pair[0]), _check(f"sources[{c}].vhat", pair[1])]
    if (gamma_q is None) != (gamma_k is None):
        raise StrataError("gamma_q, gamma_k: give both (QK-norm) or neither")
    gains = [] if gamma_q is None else [_check("gamma_q", gamma_q, (torch.float32,)),
                                        _check("gamma_k", gamma_k, (torch.float32,))]
    return _run("depth", q, k, v, k_cache, v_cache, batch, softmax_scale, causal, window_size,
                num_splits, return_lse, params=gains, sources=src, flags=(rope,),
                floats=(rope_theta, eps), with_sources=True)


def mea_decode(q: Tensor, kc: Tensor, vc: Tensor, a_k: Tensor, a_v: Tensor, k_cache: Tensor,
               v_cache: Tensor, batch: DecodeBatch, gamma_k: Optional[Tensor] = None,
               beta_k: Optional[Tensor] = None, gamma_v: Optional[Tensor] = None,
               beta_v: Optional[Tensor] = None, gamma_o: Optional[Tensor] = None,
               beta_o: Optional[Tensor] = None, site: str = "kv", rope: bool = defaults.ROPE,
               rope_theta: float = defaults.MEA_ROPE_THETA, gn_eps: float = defaults.GROUP_NORM_EPS,
               softmax_scale: Optional[float] = None, causal: bool = True,
               window_size: tuple = (-1, -1), num_splits: int = 1, return_lse: bool = False):
    """One MEA layer for the new tokens (strata_torch.mea's arguments): the cache holds the H_c
    component heads K_c, V_c (k_cache, v_cache [num_pages, page_size, H_c, d]: MEA's smaller
    cache), and the attention composes the H_kv heads inside its tiles."""
    if site not in ("kv", "output"):
        raise StrataError(f"site = {site!r}: expected 'kv' (GroupNorm on K', V') or 'output'")
    gn = {"gamma_k": gamma_k, "beta_k": beta_k, "gamma_v": gamma_v, "beta_v": beta_v,
          "gamma_o": gamma_o, "beta_o": beta_o}
    need = ("gamma_k", "beta_k", "gamma_v", "beta_v") if site == "kv" else ("gamma_o", "beta_o")
    for name, t in gn.items():
        if name not in need and t is not None:
            raise StrataError(f"{name}: not used at site {site!r} (give None)")
    params = [_check("a_k", a_k, (torch.float32,)), _check("a_v", a_v, (torch.float32,))]
    params += [_check(n, gn[n], (torch.float32,)) for n in need]
    return _run("mea", q, kc, vc, k_cache, v_cache, batch, softmax_scale, causal, window_size,
                num_splits, return_lse, params=params, flags=(site == "output", rope),
                floats=(rope_theta, gn_eps))
