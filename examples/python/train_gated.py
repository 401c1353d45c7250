"""Train a tiny model with Gated Attention (Qiu et al.): the attention output times
sigmoid(x W_g), an elementwise gate after SDPA, fused into the kernel's epilogue (forward) and
its backward's preprocess."""
import torch
from torch import nn

import strata_torch as st
from tiny_lm import DIM, HEADS, HEAD_DIM, train


class GatedAttention(nn.Module):
    def __init__(self, layer: int):
        super().__init__()
        self.qkvg = nn.Linear(DIM, 4 * DIM, bias=False, dtype=torch.bfloat16)
        self.out = nn.Linear(DIM, DIM, bias=False, dtype=torch.bfloat16)

    def forward(self, x, state):
        b, s, _ = x.shape
        q, k, v, gate = self.qkvg(x).view(b, s, 4, HEADS, HEAD_DIM).unbind(dim=2)
        y = st.gated_attention(q, k, v, gate, causal=True)  # gate: logits, [b, s, heads, d]
        return self.out(y.reshape(b, s, DIM))


if __name__ == "__main__":
    train(GatedAttention, "gated")
