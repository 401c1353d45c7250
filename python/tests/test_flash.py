"""strata_torch.flash_attn_func / flash_attn_varlen_func on CPU tensors (the kernels in Strata's
simulator): outputs, LSE and gradients against the float64 transcription, FlashAttention's rule."""
from __future__ import annotations

import math

import pytest
import torch

import strata_torch as st
from conftest import check, grad_atol, leaf64, leaf_same, rand
import reference as ref

bf16, fp16 = torch.bfloat16, torch.float16

# b, sq, sk, h, h_k, d, dtype, causal, window_left
CASES = [
    (1, 1, 1, 1, 1, 64, bf16, False, -1),     # one token
    (2, 17, 17, 4, 2, 64, bf16, True, -1),    # ragged tile, GQA 2
    (1, 65, 65, 2, 1, 96, fp16, False, -1),   # MQA, d = 96, one row past a tile
    (1, 40, 24, 2, 2, 128, bf16, True, -1),   # more queries than keys: fully masked rows
    (2, 33, 47, 4, 1, 64, fp16, False, 8),    # sliding window, not causal
    (1, 129, 129, 2, 2, 64, bf16, True, 16),  # causal window over three key tiles
]


def ref_lse(q, k, scale, causal, window_left):
    h, hk = q.shape[2], k.shape[2]
    s = torch.einsum("bqhd,bkhd->bhqk", q, k.repeat_interleave(h // hk, dim=2)) * scale
    ok = ref.mask(q.shape[1], k.shape[1], causal, window_left)
    return torch.logsumexp(s.float().masked_fill(~ok, float("-inf")), dim=-1).to(s.dtype)


def run_case(b, sq, sk, h, hk, d, dtype, causal, window, deterministic=True):
    q, k, v = rand(b, sq, h, d, dtype=dtype), rand(b, sk, hk, d, dtype=dtype), rand(
        b, sk, hk, d, dtype=dtype)
    window_size = (window, 0 if causal else -1)
    out, lse = st.flash_attn_func(q, k, v, causal=causal, window_size=window_size,
                                  deterministic=deterministic, return_lse=True)
    q64, k64, v64 = (leaf64(t) for t in (q, k, v))
    qn, kn, vn = (leaf_same(t) for t in (q, k, v))
    o64 = ref.attention(q64, k64, v64, None, causal, window)
    on = ref.attention(qn, kn, vn, None, causal, window)
    check("flash_attn", "out", out, o64, on)
    scale = 1 / math.sqrt(d)
    l64 = ref_lse(q64.detach(), k64.detach(), scale, causal, window)
    ln = ref_lse(q.detach(), k.detach(), scale, causal, window)
    dead = torch.isinf(l64)  # rows without a key: out = 0, lse = -inf
    assert torch.equal(torch.isinf(lse) & (lse < 0), dead), "lse of fully masked rows"
    if dead.any():
        assert (out.detach()[dead.permute(0, 2, 1)] == 0).all()
    check("flash_attn", "lse", lse[~dead], l64[~dead], ln[~dead])
    dout = rand(*out.shape, dtype=dtype, requires_grad=False)
    out.backward(dout)
    o64.backward(dout.double())
    on.backward(dout)
    atol = grad_atol(dtype, q64.grad, k64.grad, v64.grad)
    for name, t, t64, tn in (("dq", q, q64, qn), ("dk", k, k64, kn), ("dv", v, v64, vn)):
        check("flash_attn", name, t.grad, t64.grad, tn.grad, atol)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_q{}_k{}_h{}_{}_d{}_{}_{}_w{}".format(
    *c[:6], str(c[6])[6:], "causal" if c[7] else "full", c[8]))
def test_flash_matches_reference(case):
    run_case(*case)


def test_flash_fast_backward():
    """deterministic=False: FlashAttention-2's 5-product backward with dQ summed by atomics."""
    run_case(2, 70, 70, 4, 2, 64, bf16, True, -1, deterministic=False)


def test_flash_deterministic_is_bitwise_repeatable():
    q, k, v = rand(1, 50, 2, 64), rand(1, 50, 2, 64), rand(1, 50, 2, 64)
    grads = []
    for _ in range(2):
        for t in (q, k, v):
            t.grad = None
        st.flash_attn_func(q, k, v, causal=True).sum().backward()
        grads.append([t.grad.clone() for t in (q, k, v)])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_flash_varlen_with_an_empty_sequence():
    cu_q = torch.tensor([0, 5, 5, 22], dtype=torch.int32)
    cu_k = torch.tensor([0, 9, 12, 30], dtype=torch.int32)
    h, hk, d = 4, 2, 64
    q, k, v = rand(22, h, d), rand(30, hk, d), rand(30, hk, d)
    out = st.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 17, 18, causal=True)
    q64, k64, v64 = (leaf64(t) for t in (q, k, v))
    qn, kn, vn = (leaf_same(t) for t in (q, k, v))
    o64 = ref.attention_varlen(q64, k64, v64, cu_q, cu_k, None, True)
    on = ref.attention_varlen(qn, kn, vn, cu_q, cu_k, None, True)
    check("flash_attn_varlen", "out", out, o64, on)
    dout = rand(*out.shape, requires_grad=False)
    out.backward(dout)
    o64.backward(dout.double())
    on.backward(dout)
    atol = grad_atol(q.dtype, q64.grad, k64.grad, v64.grad)
    for name, t, t64, tn in (("dq", q, q64, qn), ("dk", k, k64, kn), ("dv", v, v64, vn)):
        check("flash_attn_varlen", name, t.grad, t64.grad, tn.grad, atol)
    # keys of the empty query sequence get no gradient
    assert (k.grad[9:12] == 0).all() and (v.grad[9:12] == 0).all()


def test_packed_qkv_slices_need_no_copy():
    """q, k, v as slices of one [b, s, 3, h, d] projection (FlashAttention's qkvpacked layout):
    strided rows are read in place and match the contiguous call."""
    qkv = rand(2, 19, 3, 2, 64, requires_grad=False)
    q, k, v = qkv.unbind(dim=2)
    assert not q.is_contiguous()
    a = st.flash_attn_func(q, k, v, causal=True)
    b = st.flash_attn_func(q.contiguous(), k.contiguous(), v.contiguous(), causal=True)
    assert torch.equal(a, b)


def test_one_token_slices_read_in_place():
    """q = x[:, -1:] (a decode-style slice: seqlen 1, the batch stride of the full sequence) and
    a one-head slice: the free strides of size-1 dimensions are read correctly."""
    x = rand(3, 7, 4, 64, requires_grad=False)
    k, v = rand(3, 5, 2, 64, requires_grad=False), rand(3, 5, 2, 64, requires_grad=False)
    q = x[:, -1:]
    assert q.stride(0) != q.stride(1)
    a = st.flash_attn_func(q, k, v)
    assert torch.equal(a, st.flash_attn_func(q.contiguous(), k, v))
    q1, k1, v1 = x[:, :, 1:2], k[:, :, :1], v[:, :, :1]
    b = st.flash_attn_func(q1, k1, v1)
    assert torch.equal(b, st.flash_attn_func(q1.contiguous(), k1.contiguous(), v1.contiguous()))


def test_gradients_by_finite_differences():
    """gradcheck for a low-precision kernel: the directional derivative of
    L = <attention(q, k, v), dout> along a random direction u, by central differences of the
    float64 transcription, against <Strata's gradient, u>."""
    q, k, v = rand(1, 9, 2, 64), rand(1, 9, 1, 64), rand(1, 9, 1, 64)
    dout = rand(1, 9, 2, 64, requires_grad=False)
    out = st.flash_attn_func(q, k, v, causal=True)
    out.backward(dout)
    x = [t.detach().double() for t in (q, k, v)]
    u = [torch.randn_like(t) for t in x]
    eps = 1e-6

    def loss(sign):
        xs = [a + sign * eps * b for a, b in zip(x, u)]
        return (ref.attention(*xs, None, True) * dout.double()).sum()

    numeric = ((loss(1) - loss(-1)) / (2 * eps)).item()
    analytic = sum((t.grad.double() * du).sum() for t, du in zip((q, k, v), u)).item()
    assert abs(numeric - analytic) <= 2e-2 * max(1.0, abs(numeric)), (numeric, analytic)
    # and the transcription itself is right (torch.autograd.gradcheck in float64)
    small = [t[:, :4].clone().requires_grad_() for t in x]
    assert torch.autograd.gradcheck(lambda a, b, c: ref.attention(a, b, c, None, True), small)


def test_empty_batch():
    q = rand(0, 8, 2, 64)
    out = st.flash_attn_func(q, rand(0, 8, 2, 64), rand(0, 8, 2, 64))
    assert out.shape == q.shape
    out.sum().backward()
    assert q.grad.shape == q.shape
