"""Train a tiny ResFormer (Zhou et al., value residual learning): layer 0 attends with its own
values V_0; every later layer attends with V' = lambda_self * V + lambda_first * V_0, mixed inside
the kernel. The lambdas are learnable (fp32, one pair per layer, initialised to 0.5 as in the
learnable variant); autograd sums V_0's gradient over the layers. kind="svformer" instead reads
V_0 in every layer (SVFormer: no V projection after layer 0)."""
import sys

import torch
from torch import nn

import strata_torch as st
from tiny_lm import DIM, HEADS, HEAD_DIM, train

KIND = "svformer" if "--svformer" in sys.argv else "resformer"


class ValueResidualAttention(nn.Module):
    def __init__(self, layer: int):
        super().__init__()
        self.layer = layer
        self.qkv = nn.Linear(DIM, 3 * DIM, bias=False, dtype=torch.bfloat16)
        self.out = nn.Linear(DIM, DIM, bias=False, dtype=torch.bfloat16)
        self.lambda_self = nn.Parameter(torch.tensor(0.5))
        self.lambda_first = nn.Parameter(torch.tensor(0.5))

    def forward(self, x, state):
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, HEADS, HEAD_DIM).unbind(dim=2)
        if self.layer == 0:
            state["v_first"] = v  # V_0, read by every later layer
            y = st.flash_attn_func(q, k, v, causal=True)
        else:
            y = st.value_residual(q, k, v, state["v_first"], self.lambda_self, self.lambda_first,
                                  kind=KIND, causal=True)
        return self.out(y.reshape(b, s, DIM))


if __name__ == "__main__":
    train(ValueResidualAttention, KIND, [a for a in sys.argv[1:] if a != "--svformer"])
