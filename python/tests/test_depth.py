"""strata_torch.depth_attention (one fused Depth-Attention layer; stacks pass each layer's
(k^, v^) to later layers as sources) on CPU tensors against the float64 transcription
(reference.depth_layer): every layer's output and every gradient of a stack — the raw q, k, v
of each layer, whose k^ / v^ gradients come back from the later layers through autograd — and
the QK-norm gains (per entry, with the rounding scale of their sums)."""
from __future__ import annotations

import pytest
import torch

import strata_torch as st
from conftest import check, check_sum, grad_atol, leaf64, leaf_same, rand
import reference as ref

bf16, fp16 = torch.bfloat16, torch.float16


def run_stack(name, shape_q, shape_k, dtype, sources, norm, rope, causal, cu=None,
              max_seqlen=0):
    L, d = len(sources), shape_q[-1]
    qs = [rand(*shape_q, dtype=dtype) for _ in range(L)]
    ks = [rand(*shape_k, dtype=dtype) for _ in range(L)]
    vs = [rand(*shape_k, dtype=dtype) for _ in range(L)]
    gammas = [((1 + 0.1 * torch.randn(d)).requires_grad_(),
               (1 + 0.1 * torch.randn(d)).requires_grad_()) if norm else (None, None)
              for _ in range(L)]
    if cu is None:
        positions = torch.arange(shape_q[1])
    else:
        positions = torch.cat([torch.arange(int(cu[i + 1] - cu[i])) for i in range(len(cu) - 1)])

    def strata_stack():
        outs, srcs = [], []
        for l in range(L):
            kw = dict(sources=[srcs[j] for j in sources[l]], gamma_q=gammas[l][0],
                      gamma_k=gammas[l][1], rope=rope, causal=causal)
            if cu is None:
                out, src = st.depth_attention(qs[l], ks[l], vs[l], **kw)
            else:
                out, src = st.depth_attention_varlen(qs[l], ks[l], vs[l], cu, max_seqlen, **kw)
            outs.append(out)
            srcs.append(src)
        return outs

    def attend(a, b, c):
        if cu is None:
            return ref.attention(a, b, c, None, causal)
        return ref.attention_varlen(a, b, c, cu, cu, None, causal)

    def ref_stack(q, k, v, g):
        outs, srcs = [], []
        for l in range(L):
            out, src = ref.depth_layer(q[l], k[l], v[l], [srcs[j] for j in sources[l]], g[l][0],
                                       g[l][1], positions, rope, attend=attend)
            outs.append(out)
            srcs.append(src)
        return outs

    outs = strata_stack()
    x64 = [[leaf64(t) for t in group] for group in (qs, ks, vs)]
    g64 = [tuple(leaf64(t) if t is not None else None for t in pair) for pair in gammas]
    xn = [[leaf_same(t) for t in group] for group in (qs, ks, vs)]
    gn = [tuple(leaf_same(t) if t is not None else None for t in pair) for pair in gammas]
    o64, on = ref_stack(*x64, g64), ref_stack(*xn, gn)
    for l in range(L):
        check(name, "out", outs[l], o64[l], on[l])
    douts = [rand(*o.shape, dtype=dtype, requires_grad=False) for o in outs]
    torch.autograd.backward(outs, douts)
    torch.autograd.backward(o64, [g.double() for g in douts])
    torch.autograd.backward(on, douts)
    atol = grad_atol(dtype, *(t.grad for group in x64 for t in group))
    for l in range(L):
        for what, i in (("dq", 0), ("dk", 1), ("dv", 2)):
            check(name, what, (qs, ks, vs)[i][l].grad, x64[i][l].grad, xn[i][l].grad, atol)
        if norm:
            # a gain sums tokens x heads terms x^_i dy_i; x^ has unit RMS, so sum c_i^2 is about
            # the number of terms, and the upstream gradients' error is ~u of the largest
            G = max(t.grad.abs().max().item() for group in x64 for t in group)
            for i, what in enumerate(("dgamma_q", "dgamma_k")):
                heads = (shape_q if i == 0 else shape_k)[-2]
                n = torch.full((d,), float(len(positions) * heads * (1 if cu is not None
                                                                      else shape_q[0])))
                check_sum(name, what, gammas[l][i].grad, g64[l][i].grad, gn[l][i].grad,
                          torch.zeros(d, dtype=torch.float64), dtype, (G, n))


# (b, s, h, h_k, d, dtype, sources per layer, QK-norm, RoPE, causal)
CASES = [
    (2, 24, 4, 2, 64, bf16, [[], [0], [0, 1]], True, True, True),
    (1, 33, 2, 1, 128, fp16, [[], [0]], False, False, False),
    (1, 17, 2, 2, 96, bf16, [[], [0], [1], [0, 1, 2]], True, True, True),
    (1, 1, 2, 1, 64, bf16, [[], [0]], True, True, True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_s{}_h{}_{}_d{}_{}_L{}_{}_{}_{}".format(
    *c[:5], str(c[5])[6:], len(c[6]), "norm" if c[7] else "nonorm", "rope" if c[8] else "norope",
    "causal" if c[9] else "full"))
def test_depth_stack_matches_reference(case):
    b, s, h, hk, d, dtype, sources, norm, rope, causal = case
    run_stack("depth_attention", (b, s, h, d), (b, s, hk, d), dtype, sources, norm, rope, causal)


def test_depth_varlen_stack():
    cu = torch.tensor([0, 5, 5, 21], dtype=torch.int32)
    run_stack("depth_attention_varlen", (21, 4, 64), (21, 2, 64), bf16, [[], [0], [0, 1]], True,
              True, True, cu, 16)


def test_depth_bad_arguments():
    q, k, v = rand(1, 8, 2, 64), rand(1, 8, 2, 64), rand(1, 8, 2, 64)
    _, src = st.depth_attention(q, k, v)
    with pytest.raises(st.StrataError, match=r"^q must be contiguous"):
        st.depth_attention(q.transpose(1, 2).contiguous().transpose(1, 2), k, v)
    with pytest.raises(st.StrataError, match=r"^sources: 9 k\^ and 9 v\^, expected"):
        st.depth_attention(q, k, v, sources=[src] * 9)
    with pytest.raises(st.StrataError, match=r"^gamma_q, gamma_k: give both"):
        st.depth_attention(q, k, v, gamma_q=torch.ones(64))
    with pytest.raises(st.StrataError, match=r"^sources\[0\]: expected a \(khat, vhat\) pair"):
        st.depth_attention(q, k, v, sources=[src[0]])
    with pytest.raises(st.StrataError, match=r"^sources\[0\].khat: shape"):
        st.depth_attention(q, k, v, sources=[(src[0][:, :4].contiguous(), src[1])])
