"""strata_torch.mea (one fused MEA layer: head-level composition, head GroupNorm at either site,
RoPE, attention) on CPU tensors against the float64 transcription (reference.mea_layer): the
output, dq, dK_c, dV_c (FlashAttention's rule) and the composition matrices' and GroupNorm
affines' gradients (per entry, with the rounding scale of their sums)."""
from __future__ import annotations

import pytest
import torch

import strata_torch as st
from conftest import check, check_sum, grad_atol, leaf64, leaf_same, rand
import reference as ref

bf16, fp16 = torch.bfloat16, torch.float16


def run(name, lead, h, h_c, h_kv, d, dtype, site, causal, rope=True, cu=None, max_seqlen=0):
    q = rand(*lead, h, d, dtype=dtype)
    kc, vc = rand(*lead, h_c, d, dtype=dtype), rand(*lead, h_c, d, dtype=dtype)
    a_k = (torch.randn(h_c, h_kv) / h_c ** 0.5).requires_grad_()
    a_v = (torch.randn(h_c, h_kv) / h_c ** 0.5).requires_grad_()
    gh = h_kv if site == "kv" else h
    n_aff = 4 if site == "kv" else 2
    gn = [((1 + 0.1 * torch.randn(gh, d)) if i % 2 == 0 else 0.1 * torch.randn(gh, d))
          .requires_grad_() for i in range(n_aff)]
    names = ("gamma_k", "beta_k", "gamma_v", "beta_v") if site == "kv" else ("gamma_o", "beta_o")
    kw = dict(zip(names, gn), site=site, rope=rope, causal=causal)
    if cu is None:
        out = st.mea(q, kc, vc, a_k, a_v, **kw)
        positions = torch.arange(lead[1])
    else:
        out = st.mea_varlen(q, kc, vc, a_k, a_v, cu, max_seqlen, **kw)
        positions = torch.cat([torch.arange(int(cu[i + 1] - cu[i])) for i in range(len(cu) - 1)])

    def attend(a, b, c):
        if cu is None:
            return ref.attention(a, b, c, None, causal)
        return ref.attention_varlen(a, b, c, cu, cu, None, causal)

    def model(q, kc, vc, a_k, a_v, gn):
        return ref.mea_layer(q, kc, vc, a_k, a_v, gn, site, positions, rope, attend=attend)

    x64 = [leaf64(t) for t in (q, kc, vc, a_k, a_v)]
    gn64 = [leaf64(t) for t in gn]
    xn = [leaf_same(t) for t in (q, kc, vc, a_k, a_v)]
    gnn = [leaf_same(t) for t in gn]
    o64, on = model(*x64, gn64), model(*xn, gnn)
    check(name, "out", out, o64, on)
    dout = rand(*out.shape, dtype=dtype, requires_grad=False)
    out.backward(dout)
    o64.backward(dout.double())
    on.backward(dout)
    atol = grad_atol(dtype, *(t.grad for t in x64[:3]))
    for what, t, t64, tn in zip(("dq", "dkc", "dvc"), (q, kc, vc), x64, xn):
        check(name, what, t.grad, t64.grad, tn.grad, atol)
    # the parameters' gradients sum unit-scale coefficients times upstream gradients: tokens x d
    # terms for A, tokens for an affine entry; upstream error ~u of the largest gradient
    tokens = q.shape[:-2].numel()
    G = max(t.grad.abs().max().item() for t in x64[:3])
    for what, t, t64, tn, n in (("da_k", a_k, x64[3], xn[3], tokens * d),
                                ("da_v", a_v, x64[4], xn[4], tokens * d),
                                *((f"d{nm}", g, g64, gn_, tokens) for nm, g, g64, gn_ in
                                  zip(names, gn, gn64, gnn))):
        check_sum(name, what, t.grad, t64.grad, tn.grad, torch.zeros_like(t64.grad), dtype,
                  (G, torch.full_like(t64.grad, float(n))))


# b, s, h, H_c, H_kv, d, dtype, site, causal
CASES = [
    (2, 20, 4, 2, 4, 64, bf16, "kv", True),       # virtual heads: H_kv > H_c
    (1, 33, 2, 2, 2, 128, fp16, "output", False),
    (1, 17, 4, 3, 2, 96, bf16, "output", True),   # GQA over composed heads
    (1, 1, 2, 1, 2, 64, bf16, "kv", True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}_s{}_h{}_c{}_kv{}_d{}_{}_{}_{}".format(
    *c[:6], str(c[6])[6:], c[7], "causal" if c[8] else "full"))
def test_mea_matches_reference(case):
    b, s, h, h_c, h_kv, d, dtype, site, causal = case
    run("mea", (b, s), h, h_c, h_kv, d, dtype, site, causal)


def test_mea_varlen():
    cu = torch.tensor([0, 5, 5, 21], dtype=torch.int32)
    run("mea_varlen", (21,), 4, 1, 2, 64, bf16, "kv", True, cu=cu, max_seqlen=16)


def test_mea_bad_arguments():
    q, kc, vc = rand(1, 8, 2, 64), rand(1, 8, 2, 64), rand(1, 8, 2, 64)
    a = torch.ones(2, 2)
    g = torch.ones(2, 64)
    with pytest.raises(st.StrataError, match=r"^site = 'middle'"):
        st.mea(q, kc, vc, a, a, site="middle")
    with pytest.raises(st.StrataError, match=r"^gamma_o: not used at site 'kv'"):
        st.mea(q, kc, vc, a, a, g, g, g, g, gamma_o=g)
    with pytest.raises(st.StrataError, match=r"^a_v: expected fp32 \[2, 2\]"):
        st.mea(q, kc, vc, a, torch.ones(2, 3), g, g, g, g)
    with pytest.raises(st.StrataError, match=r"^beta_v: expected fp32 \[2, 64\]"):
        st.mea(q, kc, vc, a, a, g, g, g, g[:, :32].contiguous())
    with pytest.raises(st.StrataError, match=r"^gamma_k: expected a torch.Tensor, got NoneType"):
        st.mea(q, kc, vc, a, a)
