"""torch.compile(fullgraph=True) of small models built on each op (the fake kernels give shapes,
the registered autograd the backward graph), and torch.library.opcheck of every op: schema,
fake kernel, autograd registration and AOT dispatch checked by PyTorch's own test utility."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import strata_torch as st
from strata_torch import ops
from conftest import rand


class Block(nn.Module):
    """One attention block: projections around one Strata op."""

    def __init__(self, method: str, dim: int = 128, heads: int = 2):
        super().__init__()
        self.method, self.heads, self.d = method, heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False, dtype=torch.bfloat16)
        self.gate = nn.Linear(dim, dim, bias=False, dtype=torch.bfloat16)
        self.out = nn.Linear(dim, dim, bias=False, dtype=torch.bfloat16)
        self.lambdas = nn.Parameter(torch.tensor([0.5, 0.5]))
        self.anchor = nn.Linear(dim, 4 * dim, bias=False, dtype=torch.bfloat16)
        self.exo_lambda = nn.Parameter(torch.full((2, 4, heads), 0.5))
        self.exo_gains = nn.Parameter(torch.ones(6, self.d))
        self.mea_a = nn.Parameter(torch.eye(heads).repeat(2, 1, 1))
        self.mea_gn = nn.Parameter(torch.ones(4, heads, self.d))

    def forward(self, x, v_first):
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, self.d).unbind(dim=2)
        if self.method == "flash":
            y = st.flash_attn_func(q, k, v, causal=True)
        elif self.method == "resformer":
            y = st.value_residual(q, k, v, v_first, self.lambdas[0], self.lambdas[1], causal=True)
        elif self.method == "svformer":
            y = st.value_residual(q, k, None, v_first, kind="svformer", causal=True)
        elif self.method == "depth":
            first, src = st.depth_attention(q.contiguous(), k.contiguous(), v.contiguous(),
                                            gamma_q=self.exo_gains[4], gamma_k=self.exo_gains[5],
                                            causal=True)
            y, _ = st.depth_attention(k.contiguous(), q.contiguous(), v.contiguous(),
                                      sources=[src], causal=True)
            y = y + first
        elif self.method == "mea":
            q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # MEA reads dense rows
            y = st.mea(q, k, v, self.mea_a[0], self.mea_a[1], *self.mea_gn.unbind(0), causal=True)
        elif self.method == "gated":
            g = self.gate(x).view(b, s, self.heads, self.d)
            y = st.gated_attention(q, k, v, g, causal=True)
        else:
            g = self.gate(x).view(b, s, self.heads, self.d)
            anchors = list(self.anchor(x).view(b, s, 4, self.heads, self.d).unbind(dim=2))
            gains = list(self.exo_gains.unbind(0))
            y = st.exoformer([q, k, v, g], anchors, gains[:4], list(self.exo_lambda[0]),
                             list(self.exo_lambda[1]), gains[4], gains[5], causal=True)
        return self.out(y.reshape(b, s, -1))


@pytest.mark.parametrize("method",
                         ["flash", "resformer", "svformer", "gated", "exoformer", "depth", "mea"])
def test_compile_fullgraph(method):
    torch.manual_seed(0)
    model = Block(method)
    x = rand(2, 24, 128, requires_grad=False)
    v_first = rand(2, 24, 2, 64)
    eager = model(x, v_first)
    eager.float().square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    v_first.grad = None
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x, v_first)
    out.float().square().mean().backward()
    assert torch.equal(out, eager)
    assert all(torch.equal(a, p.grad) for a, p in
               zip(grads, [p for p in model.parameters() if p.grad is not None]))


def _opcheck_args():
    q, k, v = rand(1, 20, 4, 64), rand(1, 20, 2, 64), rand(1, 20, 2, 64)
    v0 = rand(1, 20, 2, 64)
    ls, lf = torch.tensor(0.6, requires_grad=True), torch.tensor(0.4, requires_grad=True)
    gate = rand(1, 20, 4, 64)
    mask = (None, None, 0, 0, 0.125, True, -1, True)
    d = 64
    exo = ([rand(1, 20, n, d) for n in (4, 2, 2, 4)], [rand(1, 20, n, d) for n in (4, 2, 2, 4)],
           [torch.ones(d, requires_grad=True) for _ in range(4)],
           [torch.full((n,), 0.5, requires_grad=True) for n in (4, 2, 2, 4)],
           [torch.full((n,), 0.7, requires_grad=True) for n in (4, 2, 2, 4)],
           torch.ones(d, requires_grad=True), torch.ones(d, requires_grad=True),
           torch.rand(1, 20, 8, requires_grad=True))
    src = (rand(1, 20, 2, d), rand(1, 20, 2, d))
    gn = [torch.ones(4, d, requires_grad=True) for _ in range(2)]
    return {
        "mea_fwd": (ops.mea_fwd, (q, rand(1, 20, 2, d), rand(1, 20, 2, d),
                                  torch.ones(2, 4, requires_grad=True),
                                  torch.ones(2, 4, requires_grad=True), gn, None, 0, 0.125, True,
                                  -1, True, True, True, 1e4, 1e-5)),
        "depth_attn_fwd": (ops.depth_attn_fwd, (q, k, v, [src[0]], [src[1]],
                                                torch.ones(d, requires_grad=True),
                                                torch.ones(d, requires_grad=True), None, 0, 0.125,
                                                True, -1, True, True, 1e4, 1e-6)),
        "exoformer_fwd": (ops.exoformer_fwd, (*exo, None, 0, 0.125, True, -1, True, True, 5e5,
                                              1e-6, 1e-6)),
        "flash_attn_fwd": (ops.flash_attn_fwd, (q, k, v, *mask)),
        "resformer_attn_fwd": (ops.resformer_attn_fwd, (q, k, v, v0, ls, lf, *mask)),
        "gated_attn_fwd": (ops.gated_attn_fwd, (q, k, v, gate, *mask)),
    }


@pytest.mark.parametrize("name", ["flash_attn_fwd", "resformer_attn_fwd", "gated_attn_fwd",
                                  "exoformer_fwd", "depth_attn_fwd", "mea_fwd"])
def test_opcheck(name):
    op, args = _opcheck_args()[name]
    torch.library.opcheck(op, args)


def test_opcheck_varlen():
    cu = torch.tensor([0, 5, 13], dtype=torch.int32)
    q, k, v = rand(13, 2, 64), rand(13, 2, 64), rand(13, 2, 64)
    torch.library.opcheck(ops.flash_attn_fwd, (q, k, v, cu, cu, 8, 8, 0.125, False, -1, True))
