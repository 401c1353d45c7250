"""strata_torch.exoformer (ExoFormer with Gated Attention's gate, one fused layer) on CPU tensors
against the float64 transcription of the official code (reference.exoformer_layer): the output,
the streams' and anchors' gradients (FlashAttention's rule), and every parameter gradient
(lambda, gains, per-token scales) per entry with the rounding scale of its sum."""
from __future__ import annotations

import pytest
import torch

import strata_torch as st
from conftest import check, check_sum, grad_atol, leaf_same, rand
import reference as ref

bf16, fp16 = torch.bfloat16, torch.float16


def make_inputs(shape_q, shape_k, d, dtype, granularity, dynamic):
    streams = [shape_q, shape_k, shape_k, shape_q]
    p = [rand(*sh, dtype=dtype) for sh in streams]
    anchors = [rand(*sh, dtype=dtype) for sh in streams]
    gains = [(1 + 0.1 * torch.randn(d)).requires_grad_() for _ in range(4)]

    def lam(heads, center):
        shape = {"elementwise": (heads, d), "headwise": (heads,), "scalar": ()}[granularity]
        return (center + 0.2 * torch.randn(shape)).requires_grad_()

    l1 = [lam(sh[-2], 0.5) for sh in streams]
    l2 = [lam(sh[-2], 0.8) for sh in streams]
    gq, gk = ((1 + 0.1 * torch.randn(d)).requires_grad_() for _ in range(2))
    s = torch.sigmoid(torch.randn(*shape_q[:-2], 8)).requires_grad_() if dynamic else None
    return p, anchors, gains, l1, l2, gq, gk, s


def reduce_to(terms, param):
    """Sums per-element terms (the stream's full shape) down to the parameter's shape."""
    if param.dim() == 0:
        return terms.sum()
    if param.dim() == 1 and param.shape[0] != terms.shape[-1]:  # [heads]
        return terms.sum(dim=[i for i in range(terms.dim()) if i != terms.dim() - 2])
    keep = terms.dim() - param.dim()
    return terms.sum(dim=list(range(keep)))


def run(name, inputs, positions, cu=None, max_seqlen=0, rope=True, causal=True):
    p, anchors, gains, l1, l2, gq, gk, s = inputs
    dtype = p[0].dtype
    if cu is None:
        out = st.exoformer(p, anchors, gains, l1, l2, gq, gk, s, rope=rope, causal=causal)
    else:
        out = st.exoformer_varlen(p, anchors, gains, l1, l2, gq, gk, cu, max_seqlen, s,
                                  rope=rope, causal=causal)

    def mix(p, anchors, gains, l1, l2, gq, gk, s):
        kw = dict(rope_on=rope)
        if cu is None:
            return ref.exoformer_mix(p, anchors, gains, l1, l2, gq, gk, s, positions, **kw)
        # packed: RoPE positions restart at every sequence (the mix itself is token-local)
        pos = torch.cat([torch.arange(int(cu[i + 1] - cu[i])) for i in range(cu.numel() - 1)])
        return ref.exoformer_mix(p, anchors, gains, l1, l2, gq, gk, s, pos, **kw)

    def attend(m):
        if cu is None:
            return ref.gated(ref.attention(*m[:3], None, causal), m[3])
        return ref.gated(ref.attention_varlen(*m[:3], cu, cu, None, causal), m[3])

    # float64 with every parameter expanded to its stream's shape: their gradients are the
    # per-element terms that the parameter gradients sum
    def full(t, like):
        t = t.detach().double()
        t = ref._param(t, like) if t.dim() != 1 or t.shape[0] != like.shape[-1] else t
        return t.expand(like.shape).clone().requires_grad_()

    p64 = [t.detach().double().requires_grad_() for t in p]
    a64 = [t.detach().double().requires_grad_() for t in anchors]
    g64 = [full(g, x) for g, x in zip(gains, p64)]
    l1_64 = [full(t, x) for t, x in zip(l1, p64)]
    l2_64 = [full(t, x) for t, x in zip(l2, p64)]
    gq64, gk64 = full(gq, p64[0]), full(gk, p64[1])
    s64 = None
    if s is not None:
        s64 = [s.detach().double()[..., j, None, None].expand(p64[j // 2].shape).clone()
               .requires_grad_() for j in range(8)]
    leaves = [*g64, *l1_64, *l2_64, gq64, gk64, *(s64 or [])]
    # coefficients c_i of every parameter element (the mix's gradient for unit upstream
    # gradients), then the layer in float64 with the mixed streams' gradients kept
    mixed64 = mix(p64, a64, g64, l1_64, l2_64, gq64, gk64, s64)
    coef = torch.autograd.grad(mixed64, leaves, [torch.ones_like(m) for m in mixed64],
                               retain_graph=True)
    coef2 = {id(t): c.pow(2) for t, c in zip(leaves, coef)}
    for m in mixed64:
        m.retain_grad()
    o64 = attend(mixed64)
    pn, an = [leaf_same(t) for t in p], [leaf_same(t) for t in anchors]
    gn, l1n, l2n = [leaf_same(t) for t in gains], [leaf_same(t) for t in l1], [leaf_same(t) for
                                                                                t in l2]
    gqn, gkn = leaf_same(gq), leaf_same(gk)
    sn = leaf_same(s) if s is not None else None
    mixedn = mix(pn, an, gn, l1n, l2n, gqn, gkn, sn)
    on = attend(mixedn)
    check(name, "out", out, o64, on)
    dout = rand(*out.shape, dtype=dtype, requires_grad=False)
    out.backward(dout)
    o64.backward(dout.double())
    on.backward(dout)
    atol = grad_atol(dtype, *(t.grad for t in p64 + a64))
    # the upstream (attention) gradients' scale: their error is ~u of the largest (grad_atol)
    G = [max(m.grad.abs().max().item() for m in mixed64)] * 4

    def check_param(what, got, terms, naive, stream):
        ref64 = reduce_to(terms.grad, got)
        sumsq = reduce_to(terms.grad.pow(2), got)
        up = (G[stream], reduce_to(coef2[id(terms)], got))
        check_sum(name, what, got.grad, ref64, naive.grad, sumsq, dtype, up)

    for i, c in enumerate("qkvg"):
        check(name, f"dp_{c}", p[i].grad, p64[i].grad, pn[i].grad, atol)
        check(name, f"danchor_{c}", anchors[i].grad, a64[i].grad, an[i].grad, atol)
        check_param(f"dgamma_anchor_{c}", gains[i], g64[i], gn[i], i)
        check_param(f"dlambda1_{c}", l1[i], l1_64[i], l1n[i], i)
        check_param(f"dlambda2_{c}", l2[i], l2_64[i], l2n[i], i)
    check_param("dgamma_q", gq, gq64, gqn, 0)
    check_param("dgamma_k", gk, gk64, gkn, 1)
    if s is not None:
        ref_s = torch.stack([t.grad.sum(dim=(-2, -1)) for t in s64], dim=-1)
        sumsq = torch.stack([t.grad.pow(2).sum(dim=(-2, -1)) for t in s64], dim=-1)
        c2 = torch.stack([coef2[id(t)].sum(dim=(-2, -1)) for t in s64], dim=-1)
        scale = torch.tensor([G[j // 2] for j in range(8)], dtype=torch.float64)
        check_sum(name, "ds", s.grad, ref_s, sn.grad, sumsq, dtype, (scale, c2))


# b, s, h, h_k, d, dtype, lambda granularity, dynamic, rope, causal
CASES = [
    (2, 24, 4, 2, 64, bf16, "elementwise", True, True, True),
    (1, 33, 2, 1, 128, fp16, "headwise", False, True, False),
    (1, 17, 2, 2, 96, bf16, "scalar", True, False, True),
    (1, 1, 2, 2, 64, bf16, "elementwise", True, True, True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_s{}_h{}_{}_d{}_{}_{}_{}_{}_{}".format(
    *c[:5], str(c[5])[6:], c[6], "dynamic" if c[7] else "static", "rope" if c[8] else "norope",
    "causal" if c[9] else "full"))
def test_exoformer_matches_reference(case):
    b, s, h, hk, d, dtype, gran, dynamic, rope, causal = case
    inputs = make_inputs((b, s, h, d), (b, s, hk, d), d, dtype, gran, dynamic)
    run("exoformer", inputs, torch.arange(s), rope=rope, causal=causal)


def test_exoformer_varlen_positions_restart():
    cu = torch.tensor([0, 5, 5, 21], dtype=torch.int32)
    inputs = make_inputs((21, 2, 64), (21, 1, 64), 64, bf16, "headwise", True)
    positions = torch.cat([torch.arange(5), torch.arange(16)])
    run("exoformer_varlen", inputs, positions, cu, 16)


def test_exoformer_anchor_gradient_sums_over_layers():
    """Two layers reading the same anchors: autograd sums the layers' anchor gradients (each
    layer's pass finalizes its own through the anchor RMSNorm, which is linear in dA^)."""
    d = 64
    one = make_inputs((1, 12, 2, d), (1, 12, 2, d), d, bf16, "scalar", False)
    two = make_inputs((1, 12, 2, d), (1, 12, 2, d), d, bf16, "scalar", False)
    anchors, gains = one[1], one[2]
    y = st.exoformer(one[0], anchors, gains, *one[3:7], causal=True)
    y = y + st.exoformer(two[0], anchors, gains, *two[3:7], causal=True)
    dout = rand(*y.shape, requires_grad=False)
    y.backward(dout)
    a64 = [t.detach().double().requires_grad_() for t in anchors]
    g64 = [t.detach().double().requires_grad_() for t in gains]

    def layer(inp, a, g, dtype=torch.float64):
        cast = [[t.detach().to(dtype) for t in inp[i]] for i in (0, 3, 4)]
        return ref.exoformer_layer(cast[0], a, g, cast[1], cast[2], inp[5].detach().to(dtype),
                                   inp[6].detach().to(dtype), None, torch.arange(12))

    (layer(one, a64, g64) + layer(two, a64, g64)).backward(dout.double())
    an = [leaf_same(t) for t in anchors]
    gn = [leaf_same(t) for t in gains]
    (layer(one, an, gn, bf16) + layer(two, an, gn, bf16)).backward(dout)
    atol = grad_atol(bf16, *(t.grad for t in a64))
    for i, c in enumerate("qkvg"):
        check("exoformer_stack", f"danchor_{c}", anchors[i].grad, a64[i].grad, an[i].grad, atol)


def test_exoformer_bad_arguments():
    d = 64
    p, anchors, gains, l1, l2, gq, gk, s = make_inputs((1, 8, 2, d), (1, 8, 2, d), d, bf16,
                                                       "elementwise", True)
    with pytest.raises(st.StrataError, match=r"^lambda2_q: every lambda of a layer has one granularity"):
        st.exoformer(p, anchors, gains, l1, [torch.ones(())] * 4, gq, gk, s)
    with pytest.raises(st.StrataError, match=r"^anchors: expected 4 tensors"):
        st.exoformer(p, anchors[:3], gains, l1, l2, gq, gk, s)
    with pytest.raises(st.StrataError, match=r"^s: expected fp32 \[batch, seqlen, 8\]"):
        st.exoformer(p, anchors, gains, l1, l2, gq, gk, s[..., :6].contiguous())
    with pytest.raises(st.StrataError, match=r"^gamma_anchor_k: 32 elements, expected 64"):
        st.exoformer(p, anchors, [gains[0], gains[1][:32], gains[2], gains[3]], l1, l2, gq, gk, s)
    with pytest.raises(st.StrataError, match=r"^anchor_v: shape"):
        st.exoformer(p, [anchors[0], anchors[1], anchors[2][:, :4].contiguous(), anchors[3]],
                     gains, l1, l2, gq, gk, s)
