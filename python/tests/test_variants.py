"""strata_torch.value_residual (ResFormer, SVFormer) and gated_attention on CPU tensors (the
kernels in Strata's simulator) against float64 transcriptions of the papers' official code:
outputs and every gradient (q, k, v, v_first, lambda, gate), FlashAttention's rule."""
from __future__ import annotations

import pytest
import torch

import strata_torch as st
from conftest import check, grad_atol, leaf64, leaf_same, rand, sum_atol
import reference as ref

bf16, fp16 = torch.bfloat16, torch.float16

# b, s, h, h_k, d, dtype, causal, per-head lambda
RESFORMER = [
    (1, 1, 1, 1, 64, bf16, True, False),
    (2, 37, 4, 2, 64, bf16, True, True),
    (1, 70, 2, 2, 96, fp16, False, False),
    (1, 45, 4, 1, 128, bf16, True, True),
]


@pytest.mark.parametrize("case", RESFORMER, ids=lambda c: "b{}_s{}_h{}_{}_d{}_{}_{}_{}".format(
    *c[:5], str(c[5])[6:], "causal" if c[6] else "full", "headwise" if c[7] else "scalar"))
def test_resformer_matches_reference(case):
    b, s, h, hk, d, dtype, causal, per_head = case
    q, k, v, v0 = (rand(b, s, n, d, dtype=dtype) for n in (h, hk, hk, hk))
    shape = (hk,) if per_head else ()
    ls = (torch.rand(shape) * 0.5 + 0.5).requires_grad_()
    lf = (torch.rand(shape) * 0.5 + 0.25).requires_grad_()
    out = st.value_residual(q, k, v, v0, ls, lf, causal=causal)
    x64 = [leaf64(t) for t in (q, k, v, v0, ls, lf)]
    xn = [leaf_same(t) for t in (q, k, v, v0)] + [leaf_same(ls), leaf_same(lf)]

    def model(q, k, v, v0, ls, lf):
        return ref.attention(q, k, ref.resformer_values(v, v0, ls, lf), None, causal)

    o64, on = model(*x64), model(*xn)
    check("resformer", "out", out, o64, on)
    dout = rand(*out.shape, dtype=dtype, requires_grad=False)
    out.backward(dout)
    o64.backward(dout.double())
    on.backward(dout)
    atol = grad_atol(dtype, *(t.grad for t in x64[:4]))
    names = ("dq", "dk", "dv", "dv_first")
    for name, t, t64, tn in zip(names, (q, k, v, v0), x64, xn):
        assert t.grad.shape == t.shape and t.grad.dtype == t.dtype, name
        check("resformer", name, t.grad, t64.grad, tn.grad, atol)
    # dlambda sums V o g over every element; g = dL/dV' from the float64 model
    mixed = ref.resformer_values(*(t.detach() for t in x64[2:])).requires_grad_()
    ref.attention(x64[0].detach(), x64[1].detach(), mixed, None, causal).backward(dout.double())
    for name, lam, l64, ln, src in (("dlambda_self", ls, x64[4], xn[4], x64[2]),
                                    ("dlambda_first", lf, x64[5], xn[5], x64[3])):
        assert lam.grad.shape == lam.shape and lam.grad.dtype == torch.float32, name
        check("resformer", name, lam.grad, l64.grad, ln.grad,
              sum_atol(dtype, src.detach() * mixed.grad))


def test_resformer_varlen_and_constant_lambdas():
    cu = torch.tensor([0, 7, 7, 30], dtype=torch.int32)
    q, k, v, v0 = rand(30, 4, 64), rand(30, 2, 64), rand(30, 2, 64), rand(30, 2, 64)
    out = st.value_residual_varlen(q, k, v, v0, cu, cu, 23, 23, 0.75, 0.25, causal=True)
    x64 = [leaf64(t) for t in (q, k, v, v0)]
    xn = [leaf_same(t) for t in (q, k, v, v0)]

    def model(q, k, v, v0):
        mixed = 0.75 * v + 0.25 * v0
        return ref.attention_varlen(q, k, mixed, cu, cu, None, True)

    o64, on = model(*x64), model(*xn)
    check("resformer_varlen", "out", out, o64, on)
    dout = rand(*out.shape, requires_grad=False)
    out.backward(dout)
    o64.backward(dout.double())
    on.backward(dout)
    atol = grad_atol(q.dtype, *(t.grad for t in x64))
    for name, t, t64, tn in zip(("dq", "dk", "dv", "dv_first"), (q, k, v, v0), x64, xn):
        check("resformer_varlen", name, t.grad, t64.grad, tn.grad, atol)


def test_value_residual_stack_sums_v_first_gradients():
    """A 3-layer ResFormer stack: layer 0 is plain attention on V_0, layers 1-2 mix it in; the
    gradient of V_0 is the sum over layers (autograd's accumulation, Strata's fp32 accumulator
    per layer), against the same stack in float64. (dlambda is checked per layer above.)"""
    b, s, h, d = 1, 21, 2, 64
    qs = [rand(b, s, h, d) for _ in range(3)]
    ks = [rand(b, s, h, d) for _ in range(3)]
    vs = [rand(b, s, h, d) for _ in range(3)]
    lam = [(torch.tensor(0.6).requires_grad_(), torch.tensor(0.4).requires_grad_())
           for _ in range(3)]

    def stack(qs, ks, vs, lam, attn, vr):
        y = attn(qs[0], ks[0], vs[0])
        for l in (1, 2):
            y = y + vr(qs[l], ks[l], vs[l], vs[0], *lam[l])
        return y

    out = stack(qs, ks, vs, lam, lambda q, k, v: st.flash_attn_func(q, k, v, causal=True),
                lambda q, k, v, v0, a, c: st.value_residual(q, k, v, v0, a, c, causal=True))
    x64 = [[leaf64(t) for t in group] for group in (qs, ks, vs)]
    l64 = [tuple(leaf64(t) for t in pair) for pair in lam]
    xn = [[leaf_same(t) for t in group] for group in (qs, ks, vs)]
    ln = [tuple(leaf_same(t) for t in pair) for pair in lam]

    def r_attn(q, k, v):
        return ref.attention(q, k, v, None, True)

    def r_vr(q, k, v, v0, a, c):
        return ref.attention(q, k, ref.resformer_values(v, v0, a, c), None, True)

    o64 = stack(*x64, l64, r_attn, r_vr)
    on = stack(*xn, ln, r_attn, r_vr)
    check("resformer_stack", "out", out, o64, on)
    dout = rand(*out.shape, requires_grad=False)
    out.backward(dout)
    o64.backward(dout.double())
    on.backward(dout)
    atol = grad_atol(torch.bfloat16, *(t.grad for group in x64 for t in group))
    check("resformer_stack", "dv_first", vs[0].grad, x64[2][0].grad, xn[2][0].grad, atol)
    for l in (1, 2):
        check("resformer_stack", "dq", qs[l].grad, x64[0][l].grad, xn[0][l].grad, atol)
        check("resformer_stack", "dv", vs[l].grad, x64[2][l].grad, xn[2][l].grad, atol)
        assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in lam[l])


def test_svformer_reads_layer_zero_values():
    q, k, v0 = rand(2, 19, 4, 64), rand(2, 19, 2, 64), rand(2, 19, 2, 64)
    out = st.value_residual(q, k, None, v0, kind="svformer", causal=True)
    x64 = [leaf64(t) for t in (q, k, v0)]
    xn = [leaf_same(t) for t in (q, k, v0)]
    o64 = ref.attention(*x64, None, True)
    on = ref.attention(*xn, None, True)
    check("svformer", "out", out, o64, on)
    dout = rand(*out.shape, requires_grad=False)
    out.backward(dout)
    o64.backward(dout.double())
    on.backward(dout)
    atol = grad_atol(q.dtype, *(t.grad for t in x64))
    for name, t, t64, tn in zip(("dq", "dk", "dv_first"), (q, k, v0), x64, xn):
        check("svformer", name, t.grad, t64.grad, tn.grad, atol)


# b, s, h, h_k, d, dtype, causal, headwise
GATED = [
    (1, 1, 1, 1, 64, bf16, True, False),
    (2, 33, 4, 2, 64, bf16, True, False),
    (1, 66, 2, 1, 96, fp16, False, True),
    (1, 41, 2, 2, 128, bf16, True, True),
]


@pytest.mark.parametrize("case", GATED, ids=lambda c: "b{}_s{}_h{}_{}_d{}_{}_{}_{}".format(
    *c[:5], str(c[5])[6:], "causal" if c[6] else "full", "headwise" if c[7] else "elementwise"))
def test_gated_matches_reference(case):
    b, s, h, hk, d, dtype, causal, headwise = case
    q, k, v = rand(b, s, h, d, dtype=dtype), rand(b, s, hk, d, dtype=dtype), rand(
        b, s, hk, d, dtype=dtype)
    gate = rand(*((b, s, h) if headwise else (b, s, h, d)), dtype=dtype, scale=2.0)
    out = st.gated_attention(q, k, v, gate, causal=causal)
    x64 = [leaf64(t) for t in (q, k, v, gate)]
    xn = [leaf_same(t) for t in (q, k, v, gate)]

    def model(q, k, v, g):
        return ref.gated(ref.attention(q, k, v, None, causal), g)

    o64, on = model(*x64), model(*xn)
    check("gated_attention", "out", out, o64, on)
    dout = rand(*out.shape, dtype=dtype, requires_grad=False)
    out.backward(dout)
    o64.backward(dout.double())
    on.backward(dout)
    atol = grad_atol(dtype, *(t.grad for t in x64))
    for name, t, t64, tn in zip(("dq", "dk", "dv", "dgate"), (q, k, v, gate), x64, xn):
        check("gated_attention", name, t.grad, t64.grad, tn.grad, atol)


def test_gated_varlen():
    cu_q = torch.tensor([0, 3, 20], dtype=torch.int32)
    q, k, v = rand(20, 2, 64), rand(20, 2, 64), rand(20, 2, 64)
    gate = rand(20, 2, 64)
    out = st.gated_attention_varlen(q, k, v, gate, cu_q, cu_q, 17, 17, causal=True)
    x64 = [leaf64(t) for t in (q, k, v, gate)]
    xn = [leaf_same(t) for t in (q, k, v, gate)]

    def model(q, k, v, g):
        return ref.gated(ref.attention_varlen(q, k, v, cu_q, cu_q, None, True), g)

    o64, on = model(*x64), model(*xn)
    check("gated_attention_varlen", "out", out, o64, on)
    dout = rand(*out.shape, requires_grad=False)
    out.backward(dout)
    o64.backward(dout.double())
    on.backward(dout)
    atol = grad_atol(q.dtype, *(t.grad for t in x64))
    for name, t, t64, tn in zip(("dq", "dk", "dv", "dgate"), (q, k, v, gate), x64, xn):
        check("gated_attention_varlen", name, t.grad, t64.grad, tn.grad, atol)
